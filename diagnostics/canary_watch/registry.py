"""The watch's tests, declared once (the way Evidently registers its stattests): each is the count
test of :mod:`diagnostics.canary_watch.sequential` fed by a different pair of counters. A runbook
names tests by these keys (``runbooks/canary_watch.yaml`` ``tests``); :func:`build_watches` makes one
:class:`~diagnostics.canary_watch.sequential.CountWatch` per (channel, test).

Latency is tested as the **SLA-slow share** (requests slower than the channel's SLA bound, from the
latency histogram's bucket at that bound), not with a quantile confidence sequence, because:

- Prometheus keeps bucket counts, not latencies: a quantile test would run on interpolated
  ``histogram_quantile`` values whose error is the bucket width, while the count of requests above a
  bucket bound is exact;
- the slow count is the same two-sample count problem as errors (events with requests as exposure), so
  it gets the same e-process, the same guarantee and the same tests, and a shared load change still
  cancels out (only the canary's share of the slow requests is tested);
- it measures what the SLA is about (how many requests miss it).

Its blind spot: a slowdown that stays under the bound is not seen (phase 1's p99 gate and phase 2's
drift check cover that), and the bound must be a bucket bound of the histogram.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from diagnostics.canary_watch.sequential import CountTestParams, CountWatch, WatchResult, WatchStatus
from diagnostics.runbooks.canary_watch import TEST_NAMES, CanaryWatchRunbook, ChannelWatch


@dataclass(frozen=True)
class WatchTest:
    name: str
    label: str  # the events, in evidence lines; {slow_above_ms} is the channel's bound
    events: str  # what one event is
    counters: str  # the two counters of a look, per channel and version (PromQL, target's metric names)
    description: str

    def label_for(self, channel: ChannelWatch) -> str:
        return self.label.format(slow_above_ms=f"{channel.slow_above_ms:g}")


REGISTRY: dict[str, WatchTest] = {
    t.name: t
    for t in (
        WatchTest(
            name="errors",
            label="errors",
            events="a request answered with an error (HTTP >= 400)",
            counters="<service>_request_errors_total; <service>_requests_total",
            description="the canary's error rate per request against stable's",
        ),
        WatchTest(
            name="errors_5xx",
            label="5xx",
            events="a request answered with a server error (HTTP 5xx)",
            counters='<service>_requests_total{code=~"5.."}; <service>_requests_total',
            description="the canary's 5xx rate per request against stable's (a crash, a bad build)",
        ),
        WatchTest(
            name="sla_slow",
            label="slow (> {slow_above_ms} ms)",
            events="a request slower than the channel's SLA bound",
            counters="<service>_request_duration_seconds_count; "
            "<service>_request_duration_seconds_bucket{le=<SLA bound in s>}",
            description="the canary's share of SLA-slow requests against stable's (latency)",
        ),
    )
}
assert tuple(REGISTRY) == TEST_NAMES, "the registry and the runbook schema must name the same tests"


def build_watches(
    book: CanaryWatchRunbook, target: str | None = None, channels: int | None = None
) -> dict[tuple[str, str], CountWatch]:
    """One test per (channel, test name) of the runbook, for ``target`` (its overrides applied), each
    at ``alpha / (channels × tests)`` (``channels`` default: the runbook's)."""
    params = CountTestParams.from_runbook(book, channels)
    settings = book.channels_for(target) if target else dict(book.channels)
    return {
        (channel.value, name): CountWatch(name, channel.value, REGISTRY[name].label_for(cfg), params)
        for channel, cfg in settings.items()
        for name in book.tests
    }


def overall(results: Iterable[WatchResult]) -> WatchStatus:
    """One status for a look over every test: ``reject`` if any test rejects, else ``paused`` if every
    test paused, else ``continue``."""
    statuses = [r.status for r in results]
    if WatchStatus.REJECT in statuses:
        return WatchStatus.REJECT
    if statuses and all(s is WatchStatus.PAUSED for s in statuses):
        return WatchStatus.PAUSED
    return WatchStatus.CONTINUE
