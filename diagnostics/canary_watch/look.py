"""One look of the canary watch at Prometheus: the PromQL, the answers, and the :class:`Look` per
(channel, test) that :class:`~diagnostics.canary_watch.sequential.CountWatch` takes.

**The queries.** Four instant queries per look answer every channel, version and test of a target
(the cumulative counters as they are now, not ``increase()``: the watch takes deltas itself, so a
look costs Prometheus four index lookups and a sum, whatever the look interval):

- ``requests``: ``sum by (version, channel) (<requests_total>{sel})``, the exposure of ``errors`` and
  ``errors_5xx``;
- ``errors``: ``sum by (version, channel) (<errors_total>{sel})``;
- ``errors_5xx``: ``sum by (version, channel) (<requests_total>{sel, code=~"5.."})``;
- ``latency``: ``sum by (version, channel, le) (<histogram>_bucket{sel, le=~"<SLA bounds>|+Inf"})``:
  the ``+Inf`` bucket is the histogram's count, and both buckets come from the same scrape, as
  :func:`~diagnostics.canary_watch.sequential.slow_counters` needs.

``sel`` is the target's ``prometheus_selector`` with the two versions and the watched channels.

**What is missing.** A failed query (Prometheus down, a timeout, an error answer) leaves every test
it feeds without counters for either version: the look pauses those tests, it never rejects. So do a
version without a requests series (or without the histogram's ``+Inf`` bucket), a value that is NaN or
infinite, and a histogram without a bucket at the channel's SLA bound (the bound must be a bucket
bound; reading the neighbouring bucket would count the wrong requests). An *events* series that is
absent while the version's requests series is there counts 0: a labelled counter is born with its
first event, so "no 5xx series yet" means "no 5xx yet"; one that disappears after counting shows as a
counter that went down, which pauses the test as a reset.

:func:`read_answers` asks the four queries at once with ``httpx.AsyncClient`` (the trigger is async),
each with its own timeout, and never raises: a failure is the query's answer, as a reason.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import httpx
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.canary_watch.sequential import Counters, Look, slow_counters
from diagnostics.runbooks.canary_watch import CanaryWatchRunbook
from diagnostics.runbooks.schemas import Target
from diagnostics.sources.prometheus import matchers

QueryKind = Literal["requests", "errors", "errors_5xx", "latency"]
QUERY_KINDS: tuple[str, ...] = get_args(QueryKind)
VERSIONS = ("canary", "stable")
INF = "+Inf"
# test -> (the query that counts its events, the query that counts its requests)
SOURCES: dict[str, tuple[QueryKind, QueryKind]] = {
    "errors": ("errors", "requests"),
    "errors_5xx": ("errors_5xx", "requests"),
    "sla_slow": ("latency", "latency"),
}
MAX_REASON = 300


@dataclass(frozen=True)
class Series:
    """One series of an instant vector; ``value`` is None for NaN and ±Inf."""

    labels: Mapping[str, str]
    value: float | None


Answer = list[Series] | str  # the series, or why there are none (a failed query)


class LookSpec(BaseModel):
    """What one look of one target reads: the queries and the SLA bounds (JSON, so a trigger can carry
    it: the watch keeps the definition it started with even if the runbooks change under it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    queries: dict[QueryKind, str]
    version_label: str = "version"
    channel_label: str = "channel"
    slow_above_s: dict[str, float] = Field(description="channel -> SLA bound in seconds (a bucket bound)")

    @classmethod
    def for_target(cls, target: Target, book: CanaryWatchRunbook) -> LookSpec:
        names = target.metrics
        channels = {c.value: cfg for c, cfg in book.channels_for(target.name).items()}
        bounds = {c: cfg.slow_above_ms / 1000.0 for c, cfg in channels.items()}
        one_of = {names.version_label: list(VERSIONS), names.channel_label: sorted(channels)}
        sel = matchers(target.prometheus_selector, one_of=one_of)
        sel_5xx = matchers(target.prometheus_selector, regex={names.code_label: "5.."}, one_of=one_of)
        spellings = sorted({s for b in bounds.values() for s in le_spellings(b)})
        sel_le = matchers(target.prometheus_selector, one_of={**one_of, "le": [*spellings, INF]})
        by = f"{names.version_label}, {names.channel_label}"
        return cls(
            target=target.name,
            queries={
                "requests": f"sum by ({by}) ({names.requests_total}{sel})",
                "errors": f"sum by ({by}) ({names.errors_total}{sel})",
                "errors_5xx": f"sum by ({by}) ({names.requests_total}{sel_5xx})",
                "latency": f"sum by ({by}, le) ({names.request_duration_histogram}_bucket{sel_le})",
            },
            version_label=names.version_label,
            channel_label=names.channel_label,
            slow_above_s=bounds,
        )


def le_spellings(bound_s: float) -> list[str]:
    """How exporters write a bucket bound in ``le``: Go's shortest form (``6``, ``0.2``) and Python's
    client (``6.0``); Prometheus 3 normalises to the latter."""
    short = repr(float(bound_s))  # "0.2", "6.0"
    return sorted({short, short[:-2] if short.endswith(".0") else short})


# --- parsing ----------------------------------------------------------------------------------------


class LookError(ValueError):
    """An answer that is not a Prometheus instant vector; the message says what was wrong."""


def _value(raw: Any) -> float | None:
    try:
        value = float(raw[1])
    except (TypeError, ValueError, IndexError, KeyError):
        raise LookError(f"a sample's value is not [time, number]: {str(raw)[:60]!r}") from None
    return value if math.isfinite(value) else None


def parse_vector(body: Any) -> list[Series]:
    """The series of Prometheus' ``/api/v1/query`` JSON answer (``resultType: vector``)."""
    if not isinstance(body, dict):
        raise LookError(f"answer is {type(body).__name__}, not a JSON object")
    if body.get("status") != "success":
        why = body.get("error") or body.get("status")
        raise LookError(f"Prometheus answered {str(why)[:120]!r}")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise LookError(f"expected an instant vector, got {kind!r}")
    result = data.get("result")
    if not isinstance(result, list):
        raise LookError("data.result is not a list")
    out = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise LookError(f"a series without its labels: {str(item)[:60]!r}")
        labels = {str(k): str(v) for k, v in item["metric"].items()}
        out.append(Series(labels, _value(item.get("value"))))
    return out


def _index(spec: LookSpec, series: Sequence[Series], le: bool = False) -> dict[tuple[str, ...], float | None]:
    """(version, channel[, le]) -> value; a key seen twice (labels the sum left) is a LookError."""
    out: dict[tuple[str, ...], float | None] = {}
    for s in series:
        key: tuple[str, ...] = (s.labels.get(spec.version_label, ""), s.labels.get(spec.channel_label, ""))
        if le:
            key = (*key, s.labels.get("le", ""))
        if key in out:
            raise LookError(f"two series for {'/'.join(key)}: the query must sum by version and channel")
        out[key] = s.value
    return out


def _bucket(index: Mapping[tuple[str, ...], float | None], version: str, channel: str, bound: float) -> str:
    """The ``le`` of the bucket at ``bound`` as the index spells it ("" when there is none)."""
    for v, c, le in index:
        if v == version and c == channel and le != INF:
            try:
                if math.isclose(float(le), bound, rel_tol=1e-9):
                    return le
            except ValueError:
                continue
    return ""


def _counters(
    spec: LookSpec, test: str, channel: str, version: str, answers: Mapping[str, Answer]
) -> Counters | str:
    """One version's counters for one test, or why there are none."""
    events_kind, requests_kind = SOURCES[test]
    failed = [
        f"{k}: {a}" for k, a in answers.items() if k in (events_kind, requests_kind) and isinstance(a, str)
    ]
    if failed:
        return "; ".join(dict.fromkeys(failed))
    if test == "sla_slow":
        hist = _index(spec, _series(answers["latency"]), le=True)
        count = hist.get((version, channel, INF))
        if count is None:
            nan = (version, channel, INF) in hist
            return f"no {version} {channel} latency histogram (+Inf bucket)" + (" (NaN)" if nan else "")
        bound = spec.slow_above_s[channel]
        le = _bucket(hist, version, channel, bound)
        below = hist.get((version, channel, le)) if le else None
        if below is None:
            return f"no {version} {channel} bucket le={bound:g} s: the SLA bound must be a bucket bound"
        try:
            return slow_counters(count, below)
        except ValueError as exc:
            return str(exc)
    by_requests = _index(spec, _series(answers[requests_kind]))
    requests = by_requests.get((version, channel))
    if requests is None:
        nan = (version, channel) in by_requests
        return f"no {version} {channel} requests series" + (" (NaN)" if nan else "")
    by_events = _index(spec, _series(answers[events_kind]))
    if (version, channel) in by_events and by_events[(version, channel)] is None:
        return f"{version} {channel} {events_kind} is NaN"
    events = by_events.get((version, channel)) or 0.0  # no series yet: no event yet
    if requests < 0 or events < 0:
        return f"{version} {channel}: a negative counter"
    return Counters(requests=requests, events=events)


def _series(answer: Answer) -> list[Series]:
    assert not isinstance(answer, str)  # failed answers are handled before
    return answer


def build_looks(
    spec: LookSpec, keys: Sequence[tuple[str, str]], answers: Mapping[str, Answer]
) -> dict[tuple[str, str], Look]:
    """The look of every (channel, test) in ``keys`` from one set of answers (a missing or malformed
    answer pauses the tests it feeds)."""
    answers = {k: answers.get(k, "not asked") for k in QUERY_KINDS}
    looks: dict[tuple[str, str], Look] = {}
    for channel, test in keys:
        sides: dict[str, Counters | None] = {}
        why: list[str] = []
        for version in VERSIONS:
            try:
                got = _counters(spec, test, channel, version, answers)
            except LookError as exc:
                got = str(exc)
            if isinstance(got, str):
                sides[version] = None
                why.append(got)
            else:
                sides[version] = got
        reason = "; ".join(dict.fromkeys(why))[:MAX_REASON] or None
        looks[(channel, test)] = Look(canary=sides["canary"], stable=sides["stable"], reason=reason)
    return looks


# --- reading ----------------------------------------------------------------------------------------


async def _ask(client: httpx.AsyncClient, url: str, promql: str, at: float, timeout_s: float) -> Answer:
    try:
        resp = await client.get(
            f"{url.rstrip('/')}/api/v1/query",
            params={"query": promql, "time": f"{at:.3f}"},
            timeout=timeout_s,
        )
    except httpx.TimeoutException:
        return f"Prometheus did not answer within {timeout_s:g} s"
    except httpx.HTTPError as exc:
        return f"Prometheus unreachable ({type(exc).__name__})"
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}, not JSON"
    try:
        return parse_vector(body)
    except LookError as exc:
        return f"HTTP {resp.status_code}: {exc}"[:MAX_REASON]


async def read_answers(
    client: httpx.AsyncClient, url: str, spec: LookSpec, at: float, timeout_s: float
) -> dict[str, Answer]:
    """The four queries of one look at time ``at`` (epoch seconds), concurrently; each answer is its
    series or why there are none. Never raises for anything Prometheus does."""
    kinds = list(spec.queries)
    got = await asyncio.gather(*(_ask(client, url, spec.queries[k], at, timeout_s) for k in kinds))
    return dict(zip(kinds, got, strict=True))
