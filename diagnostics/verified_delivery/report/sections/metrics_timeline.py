"""The report's "Metrics timeline" section: phase 1's metric timeline
(``golden_window/metric_timeline.json``, :mod:`diagnostics.golden_window.timeline`) as one table row
per channel and metric and one chart per channel that had samples: p99 latency and error rate over the
incident window, stable vs canary, each with its bound (the canary gate's p99, the SLA error rate) as
a dashed line. The artifact is read like every other (masked, never an exception); an absent one is
said, a malformed one is named.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from diagnostics.golden_window.timeline import Metric, MetricTimeline, TimelineSeries
from diagnostics.incident.results import Status
from diagnostics.pii import mask_pii
from diagnostics.verified_delivery.report import svg
from diagnostics.verified_delivery.report.load import Artifact
from diagnostics.verified_delivery.report.sections.formatting import (
    VERSION_ORDER,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_ts,
)

REL = "golden_window/metric_timeline.json"
CHARTED = (Metric.P99_LATENCY_MS, Metric.ERROR_RATE)


def _value(metric: Metric, value: float | None) -> str:
    if metric is Metric.P99_LATENCY_MS:
        return fmt_ms(value)
    if metric is Metric.ERROR_RATE:
        return fmt_pct(value)
    return "n/a" if value is None else f"{fmt_num(value)} req/s"


def _time(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S UTC") if value is not None else "never"


def _row(s: TimelineSeries) -> dict[str, str]:
    stats = {v: s.stats.get(v) for v in VERSION_ORDER}
    mean = {v: _value(s.metric, st.mean if st else None) for v, st in stats.items()}
    points = {v: str(st.points if st else 0) for v, st in stats.items()}
    return {
        "channel": s.channel.value,
        "metric": s.metric.value,
        "stable": f"{mean['stable']} ({points['stable']} pts)",
        "canary": f"{mean['canary']} ({points['canary']} pts)",
        "max_canary": _value(s.metric, stats["canary"].max if stats["canary"] else None),
        "ratio": "n/a" if s.ratio is None else f"×{fmt_num(s.ratio, 3)} over {s.common_points} pts",
        "bound": "none" if s.bound is None else f"{_value(s.metric, s.bound)} ({mask_pii(s.bound_name)})",
        "first_over": "n/a"
        if s.bound is None
        else (
            f"{_time(s.canary_first_over)} ({s.canary_points_over} pts over)"
            if s.canary_first_over
            else "never"
        ),
    }


def _panel(s: TimelineSeries) -> svg.Panel:
    """A chart panel; the error rate in percent (its bound too), the latency in ms."""
    scale = 100.0 if s.metric is Metric.ERROR_RATE else 1.0
    series = [(v, [None if x is None else x * scale for x in s.values[v]]) for v in VERSION_ORDER]
    is_error = s.metric is Metric.ERROR_RATE
    return svg.Panel(
        label="error rate" if is_error else "p99 latency",
        unit="%" if is_error else "ms",
        series=series,
        limit=None if s.bound is None else s.bound * scale,
        limit_label="SLA" if is_error else "gate",
    )


def _plot(tl: MetricTimeline, channel: str, panels: list[TimelineSeries]) -> dict[str, str]:
    labels = [t.strftime("%H:%M:%S") for t in tl.times]
    caption = "; ".join(
        f"{s.metric.value}: bound {_value(s.metric, s.bound)}, canary first over it "
        f"{_time(s.canary_first_over)}"
        for s in panels
    )
    return {
        "id": f"metrics-timeline-{channel}",
        "title": f"{channel}: p99 latency and error rate, stable vs canary",
        "caption": f"{caption}; steps of {tl.step_s:g} s (UTC), a gap is no data",
        "svg": svg.line_panels(
            labels,
            [_panel(s) for s in panels],
            title=f"{channel}: metrics over the incident window",
            name=f"metrics-timeline-{channel}",
        ),
    }


def _validated(art: Artifact) -> MetricTimeline | str:
    try:
        return MetricTimeline.model_validate(art.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(root)"
        return f"{art.rel} is malformed: {field}: {first['msg']}"


def metrics_timeline_view(art: Artifact) -> dict[str, Any]:
    """The section's template variables; ``state`` is ``none`` (nothing stored), ``malformed``,
    ``insufficient`` (stored without series) or ``present``."""
    view: dict[str, Any] = {"state": "none", "note": "", "summary": "", "window": "", "rows": [], "plots": []}
    if art.state == "missing":
        view["note"] = f"no metric timeline stored ({REL})"
        return view
    tl = _validated(art) if art.ok else art.note()
    if isinstance(tl, str):
        view.update(state="malformed", note=tl)
        return view
    view["summary"] = mask_pii(tl.summary)
    view["window"] = (
        f"{fmt_ts(tl.start)} to {fmt_ts(tl.end)}: {tl.points} steps of {tl.step_s:g} s, "
        f"each over the last {tl.lookback_s:g} s; {len(tl.queries)} range queries"
    )
    if tl.status is not Status.OK or not tl.series:
        view.update(state="insufficient", note=mask_pii(tl.reason or tl.summary))
        return view
    view["state"] = "present"
    view["rows"] = [_row(s) for s in tl.series]
    empty: list[str] = []
    for channel in dict.fromkeys(s.channel for s in tl.series):
        panels = [s for m in CHARTED if (s := tl.get(channel, m)) is not None]
        if any(st.points for s in panels for st in s.stats.values()):
            view["plots"].append(_plot(tl, channel.value, panels))
        else:
            empty.append(channel.value)
    if empty:
        view["note"] = f"no p99 or error-rate sample in the window on {', '.join(empty)}: not charted"
    return view
