"""SLA-slow requests from histogram buckets: exact at a bucket bound, else bounded each way.

By hand on cumulative buckets, then end to end: a Prometheus HTTP API on loopback answers the check's
queries with a real-shaped histogram (``le`` labels as strings, ``+Inf``), read by the real reader.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from diagnostics.golden_window.metrics_sla import evaluate_channel
from diagnostics.golden_window.thresholds import requests_slower_than, slow_request_bounds
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import Channel, ChannelSla, LatencySla
from diagnostics.sources.prometheus import PrometheusReader, collect_window
from tests.support.http import Canned, Recorded, canned_server

END = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
BOOKS = load_runbooks()
# 100 requests: 50 <= 0.1 s, 30 in (0.1, 0.2], 15 in (0.2, 0.35], 5 above 0.35 s
BUCKETS = [(0.1, 50.0), (0.2, 80.0), (0.35, 95.0), (math.inf, 100.0)]


@pytest.mark.parametrize(
    ("latency_ms", "at_least", "at_most", "exact", "le"),
    [
        (200, 20, 20, True, (0.2, 0.2)),  # a bucket bound: exact
        (350, 5, 5, True, (0.35, 0.35)),
        (150, 20, 50, False, (0.1, 0.2)),  # > 0.2 s certainly slower, > 0.1 s maybe
        (50, 50, 100, False, (None, 0.1)),  # below the first bound: every request may be slower
        (6000, 0, 5, False, (0.35, None)),  # above the last bound: +Inf does not say how far
    ],
)
def test_bounds_by_hand(
    latency_ms: float, at_least: float, at_most: float, exact: bool, le: tuple[float | None, float | None]
) -> None:
    b = slow_request_bounds(BUCKETS, latency_ms)
    assert b is not None
    assert (b.at_least, b.at_most, b.exact, (b.le_below, b.le_above), b.total) == (
        at_least,
        at_most,
        exact,
        le,
        100.0,
    )


def test_the_note_says_exact_or_which_buckets_bound_it() -> None:
    exact, bounded = slow_request_bounds(BUCKETS, 200), slow_request_bounds(BUCKETS, 150)
    assert exact is not None and bounded is not None
    assert exact.note == "exact: 20 of 100 requests slower than 200 ms (le=0.2 is a bucket bound)"
    assert bounded.note == (
        "bounded by buckets le=0.1..0.2: 20 to 50 of 100 requests slower than 150 ms "
        "(at least 20 argues rollback, at most 50 argues promotion)"
    )
    below = slow_request_bounds(BUCKETS, 50)
    above = slow_request_bounds(BUCKETS, 6000)
    assert below is not None and below.note.startswith("bounded by buckets le=0..0.1: 50 to 100 of 100")
    assert above is not None and above.note.startswith("bounded by buckets le=0.35..+Inf: 0 to 5 of 100")


def test_the_upper_bound_is_the_legacy_count_and_noise_never_inverts_the_range() -> None:
    for latency_ms in (200, 350, 150, 6000):
        b = slow_request_bounds(BUCKETS, latency_ms)
        assert b is not None and b.at_most == requests_slower_than(BUCKETS, latency_ms)
    assert slow_request_bounds([], 200) is None
    # increase() extrapolation can leave a higher bound with a lower cumulative count: clipped
    noisy = slow_request_bounds([(0.1, 90.0), (0.2, 89.0), (math.inf, 100.0)], 150)
    assert noisy is not None and (noisy.at_least, noisy.at_most) == (10.0, 10.0)


# --- end to end through the Prometheus HTTP API ---------------------------------------------------

LE = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.2", "0.35", "0.5", "0.75", "1.0", "1.2", "1.5"]
LE += ["2.0", "3.0", "4.0", "6.0", "8.0", "10.0", "15.0", "20.0", "30.0", "+Inf"]
# canary text over the window: cumulative increase() per bucket of testbed_request_duration_seconds
CUMULATIVE = [0, 0, 5, 100, 500, 900, 960, 980, 990, 995, 997, 998, 999, 1000, 1000, 1000, 1000, 1000]
CUMULATIVE += [1000, 1000, 1000, 1000]


def _vector(result: list[dict[str, Any]]) -> Canned:
    return Canned(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


def _sample(value: float, **labels: str) -> dict[str, Any]:
    return {
        "metric": {"version": "canary", "channel": "text", **labels},
        "value": [END.timestamp(), str(value)],
    }


def _answer(req: Recorded) -> Canned:
    query = parse_qs(urlsplit(req.path).query)["query"][0]
    if "_bucket" in query and query.startswith("sum by (version, channel, le)"):
        return _vector([_sample(c, le=le) for le, c in zip(LE, CUMULATIVE, strict=True)])
    if query.startswith("histogram_quantile(0.9999,"):
        return _vector([_sample(0.9)])  # p99.99 900 ms
    if query.startswith("histogram_quantile("):
        return _vector([_sample(0.15)])
    if "testbed_requests_total" in query and "code=~" not in query:
        return _vector([_sample(1000.0)])
    return _vector([])  # no errors


def test_a_real_histogram_exact_at_a_bound_and_bounded_between_bounds() -> None:
    target = BOOKS.targets.get("testbed")
    with canned_server({("GET", "/api/v1/query"): _answer}) as prom:
        reader = PrometheusReader(prom.url)
        current = collect_window(reader, target, END, 300, (0.99, 0.9999))
        reference = collect_window(reader, target, END, 300, (0.99, 0.9999))
    stats = current[("canary", Channel.TEXT)]
    assert stats.requests == 1000 and len(stats.buckets) == 22

    sla = BOOKS.thresholds.sla_for("testbed", Channel.TEXT)  # P99.99 <= 200 ms: a bucket bound
    at_bound, findings = evaluate_channel(
        stats, reference[("canary", Channel.TEXT)], sla, BOOKS.thresholds.dynamic, BOOKS.priority_matrix
    )
    b = at_bound.slow_bounds
    assert b is not None and (b.exact, b.at_least, b.at_most) == (True, 100.0, 100.0)
    assert at_bound.slow_requests == 100.0
    [finding] = [f for f in findings if f.problem == "latency_sla_breach"]
    assert finding.evidence.endswith(
        "SLA-slow requests exact: 100 of 1000 requests slower than 200 ms (le=0.2 is a bucket bound)"
    )

    between = ChannelSla(latency=LatencySla(quantile=0.9999, latency_ms=300), error_rate=0.01)
    bounded, findings = evaluate_channel(
        stats, reference[("canary", Channel.TEXT)], between, BOOKS.thresholds.dynamic, BOOKS.priority_matrix
    )
    b = bounded.slow_bounds
    assert b is not None
    assert (b.exact, b.le_below, b.le_above, b.at_least, b.at_most) == (False, 0.2, 0.35, 40.0, 100.0)
    assert bounded.slow_requests == 100.0  # the legacy field keeps the upper bound
    [finding] = [f for f in findings if f.problem == "latency_sla_breach"]
    assert (
        "SLA-slow requests bounded by buckets le=0.2..0.35: 40 to 100 of 1000 requests slower than 300 ms "
        "(at least 40 argues rollback, at most 100 argues promotion)"
    ) in finding.evidence
    stored = json.loads(json.dumps(bounded.model_dump(mode="json")))
    assert stored["slow_bounds"]["at_least"] == 40.0 and stored["slow_bounds"]["at_most"] == 100.0
    assert stored["reference_slow_bounds"]["exact"] is False
