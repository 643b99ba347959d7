"""Trend section of the report: the regression history (``<root>/regression/history.jsonl``) per version,
channel and case over the last runs (:mod:`diagnostics.verified_delivery.regression.history`), as two
tables and one chart per version of the failing cases per run and channel.

Every string shown is PII-masked here (the history holds incident ids and case ids, which the report
treats as it treats artifacts); the chart is built from the masked values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from diagnostics.pii import mask_pii
from diagnostics.verified_delivery.regression.history import (
    DEFAULT_LAST,
    History,
    case_trends,
    channel_trends,
    read_history,
)
from diagnostics.verified_delivery.report import svg
from diagnostics.verified_delivery.report.sections.formatting import (
    VERSION_ORDER,
    channel_key,
    fmt_num,
    fmt_ts,
    ordered,
)

#: skipped lines named in the report (the rest are counted)
SHOWN_SKIPPED = 5


def _signed(value: float | None) -> str:
    if value is None:
        return "n/a"
    return ("+" if value > 0 else "") + fmt_num(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _version_key(version: str) -> tuple[int, str]:
    return (VERSION_ORDER.index(version) if version in VERSION_ORDER else 99, version)


def _plot(history: History, version: str, last: int) -> dict[str, str] | None:
    """Failing cases per run (x: the version's last judged runs) and channel (one series each)."""
    rows = history.channels[history.channels["version"] == version].sort_values(["at", "line"], kind="stable")
    runs = rows.drop_duplicates("line").tail(last)
    if runs.empty:
        return None
    grid = rows[rows["line"].isin(runs["line"])].pivot(index="line", columns="channel", values="failing")
    grid = grid.reindex(index=list(runs["line"]))
    labels = [mask_pii(pd.Timestamp(at).strftime("%m-%d %H:%M")) for at in runs["at"]]
    channels = sorted((str(c) for c in grid.columns), key=channel_key)
    series: list[tuple[str, list[float | None]]] = [
        (mask_pii(c), [None if pd.isna(v) else float(v) for v in grid[c]]) for c in channels
    ]
    total = int(sum(v or 0 for _, values in series for v in values))
    masked = mask_pii(version)
    return {
        "id": f"trend-{masked}",
        "title": f"{masked}: failing regression cases per run, last {len(labels)} run(s)",
        "caption": f"{total} failing case result(s) over the runs from {labels[0]} to {labels[-1]} (UTC); "
        "a missing bar (n/a) is a channel the run did not judge",
        "marks": str(sum(1 for _, values in series for v in values if v is not None)),
        "svg": svg.grouped_bars(
            labels,
            series,
            title=f"{masked}: failing cases per run",
            unit="cases",
            name=f"trend-{masked}",
            width=max(560, 68 + 80 * len(labels)),
        ),
    }


def trends_view(path: Path, target: str | None, rel: str, last: int = DEFAULT_LAST) -> dict[str, Any]:
    """The section's template variables; ``state`` is ``none`` when there is no run to show."""
    history = read_history(path, target)
    skipped = [mask_pii(s) for s in history.skipped]
    view: dict[str, Any] = {
        "rel": rel,
        "last": last,
        "runs": history.runs,
        "skipped": len(skipped),
        "skipped_shown": skipped[:SHOWN_SKIPPED],
        "channels": [],
        "cases": [],
        "plots": [],
    }
    if history.channels.empty:
        view["state"] = "none"
        view["note"] = f"no judged regression run of {target or 'any target'} in {rel}"
        return view
    view["state"] = "present"
    view["note"] = ""
    trends = sorted(
        channel_trends(history, last), key=lambda t: (_version_key(t.version), channel_key(t.channel))
    )
    view["channels"] = [
        {
            "version": mask_pii(t.version),
            "channel": mask_pii(t.channel),
            "runs": f"{t.runs} ({t.judged} judged)",
            "pass_rate": _pct(t.pass_rate),
            "latest": t.latest_status.value,
            "previous": t.previous_status.value if t.previous_status else "n/a",
            "failing": str(t.failing_latest),
            "vs_previous": _signed(t.change_vs_previous),
            "median": fmt_num(t.failing_median),
            "vs_median": _signed(t.change_vs_median),
            "latest_at": fmt_ts(t.latest_at),
        }
        for t in trends
    ]
    view["cases"] = [
        {
            "version": mask_pii(t.version),
            "case": mask_pii(t.case),
            "channel": mask_pii(t.channel),
            "failed": f"{t.failed} of {t.runs}",
            "fail_rate": _pct(t.fail_rate),
            "latest": "failing" if t.failing_latest else "not failing",
            "streak": str(t.streak),
            "last_failed_at": fmt_ts(t.last_failed_at),
        }
        for t in case_trends(history, last)
    ]
    versions = ordered({str(v) for v in history.channels["version"]}, VERSION_ORDER)
    view["plots"] = [p for v in versions if (p := _plot(history, v, last)) is not None]
    return view


def skipped_problem(view: dict[str, Any]) -> str:
    """The report's problem line for the history's malformed lines (empty when there are none)."""
    if not view["skipped"]:
        return ""
    more = view["skipped"] - len(view["skipped_shown"])
    return (
        f"{view['rel']}: {view['skipped']} malformed line(s) skipped ("
        + "; ".join(view["skipped_shown"])
        + (f"; {more} more" if more > 0 else "")
        + ")"
    )
