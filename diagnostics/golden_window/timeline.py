"""Phase-1 evidence ``metric_timeline``: how request rate, error rate and p99 latency moved over the
incident window, stable against canary, per channel - the report's "Metrics timeline".

It is evidence, not a check: no findings, no verdict, nothing the decision reads; it is stored as
``golden_window/metric_timeline.json`` beside the checks' results. Status ``ok`` when at least one
series had a value; ``insufficient_evidence`` when Prometheus could not answer (the reason is kept) or
had no sample in the window. It never raises for Prometheus trouble.

Window: the one ``metrics_sla`` reads, ``[end - window_s, end]`` (``end`` = the incident's
``analysed_at``), cut to whole seconds. Step: the smallest whole number of seconds that keeps the
window to :data:`MAX_POINTS` points; every point looks back ``max(step, MIN_LOOKBACK_S)`` (a rate
needs two scrapes). Series, by version and channel, from ``metrics_sla``'s PromQL
(:class:`~diagnostics.sources.prometheus.PromQL`):

- ``request_rate``: requests per second, ``increase(requests_total[L]) / L``;
- ``error_rate``: errors over requests in ``L`` (a version/channel without an error series counts 0
  errors, as in ``metrics_sla``), at most 1; 0/0 (no requests) is NaN: no data;
- ``p99_latency_ms``: ``histogram_quantile(0.99, rate(bucket[L]))`` in milliseconds.

Each matrix becomes a pandas frame (:func:`~diagnostics.sources.prometheus.range_frame`), pivoted to
one column per version and aligned on the window's time index (a sample goes to the nearest step
within half a step; NaN and ±Inf are no data). Per channel and metric: points, min, max and mean per
version; the bound from ``runbooks/thresholds.yaml`` - the channel's SLA error rate, the canary gate's
p99 for the channel (``p99_gate_ms``: the thresholds' own p99 bound; the SLA latency is a higher
quantile's); the first time the canary was strictly above it and how many points were; and the
canary/stable ratio of the means over the times where both had a value.

Cost: 3 range queries per incident (one per metric; every channel and version in one answer through
``by (version, channel)``), each at most 120 points x 8 series = 960 samples.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from diagnostics.incident.results import Status
from diagnostics.runbooks.schemas import Channel, Target, Thresholds
from diagnostics.sources.prometheus import PrometheusError, PromQL, range_frame

NAME = "metric_timeline"
#: the most points a series has (the step grows with the window)
MAX_POINTS = 120
#: the shortest look-back of a point: a rate over less than a few scrapes is noise or nothing
MIN_LOOKBACK_S = 60.0
VERSIONS = ("stable", "canary")


class Metric(StrEnum):
    REQUEST_RATE = "request_rate"
    ERROR_RATE = "error_rate"
    P99_LATENCY_MS = "p99_latency_ms"


UNITS = {Metric.REQUEST_RATE: "req/s", Metric.ERROR_RATE: "share", Metric.P99_LATENCY_MS: "ms"}


class RangeReader(Protocol):
    """What the timeline needs from Prometheus: a range query's raw matrix (tests pass fakes)."""

    def query_range(self, expr: str, start: datetime, end: datetime, step: float) -> list[dict[str, Any]]: ...


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionStats(_Model):
    """One version's series: its finite values only (no data is neither zero nor a point)."""

    points: int = Field(description="steps with a finite value")
    min: float | None = None
    max: float | None = None
    mean: float | None = None


class TimelineSeries(_Model):
    """One metric on one channel, every version on the timeline's index."""

    channel: Channel
    metric: Metric
    unit: str
    bound: float | None = Field(description="the thresholds' bound for the metric; None: it has none")
    bound_name: str = ""
    stats: dict[str, VersionStats] = Field(description="by version")
    values: dict[str, list[float | None]] = Field(
        description="by version, one per step of the index (None: no data)"
    )
    canary_first_over: datetime | None = Field(
        default=None, description="the first step at which the canary was strictly above the bound"
    )
    canary_points_over: int = 0
    ratio: float | None = Field(
        default=None,
        description="canary mean / stable mean over the common_points steps where both had a value",
    )
    common_points: int = 0


class MetricTimeline(_Model):
    """The stored result: the window's index, the queries and one series per channel and metric."""

    check: Literal["metric_timeline"] = "metric_timeline"
    status: Status = Field(description="ok or insufficient_evidence; never a verdict")
    summary: str
    target: str
    start: datetime = Field(description="the first step")
    end: datetime = Field(description="the last step")
    step_s: float
    points: int = Field(description="steps on the index, start to end")
    lookback_s: float = Field(description="the range each point's rate/quantile looks back over")
    queries: dict[str, str] = Field(default_factory=dict, description="metric -> PromQL")
    series: list[TimelineSeries] = Field(default_factory=list)
    reason: str = Field(default="", description="why there is no timeline, when there is none")
    elapsed_s: float = Field(default=0.0, description="time spent querying and computing")

    @model_validator(mode="after")
    def _on_the_index(self) -> MetricTimeline:
        if self.status not in (Status.OK, Status.INSUFFICIENT_EVIDENCE):
            raise ValueError(f"status {self.status.value!r}: a timeline is evidence, never a verdict")
        for s in self.series:
            for version in VERSIONS:
                if len(s.values.get(version, ())) != self.points:
                    raise ValueError(
                        f"series {s.channel.value} {s.metric.value}: {version} has "
                        f"{len(s.values.get(version, ()))} values for {self.points} steps"
                    )
        return self

    @property
    def times(self) -> list[datetime]:
        return [self.start + timedelta(seconds=i * self.step_s) for i in range(self.points)]

    def get(self, channel: Channel, metric: Metric) -> TimelineSeries | None:
        return next((s for s in self.series if s.channel == channel and s.metric == metric), None)


def grid(end: datetime, window_s: float) -> tuple[datetime, float, int]:
    """``(start, step_s, points)``: whole-second steps, at most :data:`MAX_POINTS` of them, ending at
    ``end`` cut to the second and covering as much of ``window_s`` as whole steps do."""
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    end_s = math.floor(end.timestamp())
    step = max(1, math.ceil(window_s / (MAX_POINTS - 1)))
    points = min(MAX_POINTS, math.floor(window_s / step) + 1)
    start = datetime.fromtimestamp(end_s - (points - 1) * step, UTC)
    return start, float(step), points


def queries(target: Target, lookback_s: float) -> dict[Metric, str]:
    """The three range queries, every version and channel at once (``by (version, channel)``)."""
    q = PromQL.for_target(target)
    requests, errors = q.requests(lookback_s), q.errors(lookback_s)
    return {
        Metric.REQUEST_RATE: f"{requests} / {lookback_s:g}",
        Metric.ERROR_RATE: f"clamp_max(({errors} or 0 * {requests}) / {requests}, 1)",
        Metric.P99_LATENCY_MS: q.quantile(0.99, lookback_s),
    }


def bound_of(
    metric: Metric, channel: Channel, target: str, thresholds: Thresholds
) -> tuple[float | None, str]:
    """The bound the canary is held to on a metric and channel, and its name in the thresholds."""
    if metric is Metric.ERROR_RATE:
        return thresholds.sla_for(target, channel).error_rate, f"SLA error rate ({channel.value})"
    if metric is Metric.P99_LATENCY_MS:
        return thresholds.gates_for(target).p99_gate_ms(channel), f"canary gate p99 ({channel.value})"
    return None, ""


def aligned(
    frame: pd.DataFrame, channel: str, labels: tuple[str, str], index: pd.DatetimeIndex
) -> pd.DataFrame:
    """One channel of a long range frame as one column per version on ``index`` (evenly spaced):
    each sample goes to its nearest step (samples outside the index are dropped), several samples of
    a version at one step are averaged; NaN and ±Inf are no data (NaN)."""
    version_label, channel_label = labels
    if frame.empty or channel_label not in frame or version_label not in frame:
        return pd.DataFrame(index=index)
    rows = frame[frame[channel_label] == channel]
    step = index[1] - index[0] if len(index) > 1 else pd.Timedelta(seconds=1)
    slot = np.asarray(((rows.index - index[0]) / step).round(), dtype=float)
    keep = (slot >= 0) & (slot < len(index))
    rows = rows[keep]
    values = rows["value"].where(np.isfinite(rows["value"]))
    at = index[slot[keep].astype(int)]
    wide = values.groupby([at, rows[version_label].to_numpy()]).mean().unstack()
    return wide.reindex(index)


def _stats(column: pd.Series) -> VersionStats:
    finite = column.dropna()
    if finite.empty:
        return VersionStats(points=0)
    return VersionStats(
        points=len(finite), min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean())
    )


def series_of(
    wide: pd.DataFrame, channel: Channel, metric: Metric, bound: tuple[float | None, str]
) -> TimelineSeries:
    """The figures of one channel and metric from its aligned frame (:func:`aligned`)."""
    columns = {v: wide[v] if v in wide else pd.Series(np.nan, index=wide.index) for v in VERSIONS}
    canary, stable = columns["canary"], columns["stable"]
    limit, limit_name = bound
    first_over, over_points = None, 0
    if limit is not None:
        over = canary > limit  # NaN compares False: no data is never over
        over_points = int(over.sum())
        if over_points:
            first_over = pd.Timestamp(over.idxmax()).to_pydatetime()
    both = pd.DataFrame({"stable": stable, "canary": canary}).dropna()
    ratio = None
    if not both.empty and float(both["stable"].mean()) > 0:
        ratio = float(both["canary"].mean()) / float(both["stable"].mean())
    return TimelineSeries(
        channel=channel,
        metric=metric,
        unit=UNITS[metric],
        bound=limit,
        bound_name=limit_name,
        stats={v: _stats(c) for v, c in columns.items()},
        values={v: [None if pd.isna(x) else float(x) for x in c] for v, c in columns.items()},
        canary_first_over=first_over,
        canary_points_over=over_points,
        ratio=ratio,
        common_points=len(both),
    )


def unavailable(target: str, end: datetime, window_s: float, reason: str) -> MetricTimeline:
    """The timeline when there is none to read: insufficient evidence, with the reason."""
    start, step, points = grid(end, window_s)
    return MetricTimeline(
        status=Status.INSUFFICIENT_EVIDENCE,
        summary=f"{target}: no metric timeline: {reason}",
        target=target,
        start=start,
        end=start + timedelta(seconds=(points - 1) * step),
        step_s=step,
        points=points,
        lookback_s=max(step, MIN_LOOKBACK_S),
        reason=reason,
    )


def _summary(target: str, series: list[TimelineSeries], step: float, points: int) -> str:
    over = [
        f"{s.channel.value} {s.metric.value} from {s.canary_first_over:%H:%M:%S}"
        for s in series
        if s.canary_first_over is not None
    ]
    where = "canary over its bound: " + ", ".join(over) if over else "canary never over a bound"
    return f"{target}: {points} steps of {step:g} s per series; {where}"


def metric_timeline(
    reader: RangeReader, target: Target, thresholds: Thresholds, end: datetime, window_s: float
) -> MetricTimeline:
    """The incident window's timeline of ``target`` (module docstring): 3 range queries."""
    started = time.monotonic()
    start, step, points = grid(end, window_s)
    last = start + timedelta(seconds=(points - 1) * step)
    lookback = max(step, MIN_LOOKBACK_S)
    promql = queries(target, lookback)
    texts = {m.value: q for m, q in promql.items()}
    index = pd.DatetimeIndex([start + timedelta(seconds=i * step) for i in range(points)])
    labels = (target.metrics.version_label, target.metrics.channel_label)
    series: list[TimelineSeries] = []
    try:
        for metric, expr in promql.items():
            frame = range_frame(reader.query_range(expr, start, last, step))
            if metric is Metric.P99_LATENCY_MS:
                frame["value"] = frame["value"] * 1000.0
            for channel in Channel:
                wide = aligned(frame, channel.value, labels, index)
                bound = bound_of(metric, channel, target.name, thresholds)
                series.append(series_of(wide, channel, metric, bound))
    except PrometheusError as exc:
        result = unavailable(target.name, end, window_s, exc.reason)
        spent = time.monotonic() - started
        return result.model_copy(update={"queries": texts, "elapsed_s": spent})
    seen = any(st.points for s in series for st in s.stats.values())
    return MetricTimeline(
        status=Status.OK if seen else Status.INSUFFICIENT_EVIDENCE,
        summary=_summary(target.name, series, step, points)
        if seen
        else f"{target.name}: no sample of any series in the window",
        target=target.name,
        start=start,
        end=last,
        step_s=step,
        points=points,
        lookback_s=lookback,
        queries=texts,
        series=series,
        reason="" if seen else "Prometheus had no sample in the window",
        elapsed_s=time.monotonic() - started,
    )
