"""Recovery verification with a fake clock and scripted probes, and the metric part of the probe over a
fake Prometheus reader."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from diagnostics.incident.results import Status
from diagnostics.response.verify import (
    ProbePart,
    RecoveryProbe,
    gateway_probe,
    stable_metrics_parts,
    verify_recovery,
)
from diagnostics.runbooks import load_runbooks
from diagnostics.sources.prometheus import PrometheusUnavailable, Sample
from tests.conftest import free_port
from tests.diagnostics.golden_window.test_metrics_sla import FakeReader
from tests.diagnostics.response.rollback.conftest import TOKEN_ENV, make_target

BOOKS = load_runbooks(environ={})
TESTBED = BOOKS.targets.get("testbed")
END = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
GOOD = RecoveryProbe(
    parts=[ProbePart(name="stable_health", state="ok"), ProbePart(name="canary_weight", state="ok")]
)
BAD = RecoveryProbe(
    parts=[ProbePart(name="stable_health", state="ok"), ProbePart(name="canary_weight", state="bad")]
)
UNKNOWN = RecoveryProbe(parts=[ProbePart(name="stable_metrics", state="unknown", detail="Prometheus down")])


class FakeClock:
    def __init__(self, probe_cost_s: float = 0.5) -> None:
        self.t = 1000.0
        self.probe_cost_s = probe_cost_s
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def scripted(
        self, *script: RecoveryProbe, then: RecoveryProbe | None = None
    ) -> Callable[[], RecoveryProbe]:
        queue = list(script)

        def probe() -> RecoveryProbe:
            self.t += self.probe_cost_s  # a probe takes time too
            if queue:
                return queue.pop(0)
            assert then is not None, "probe called more often than scripted"
            return then

        return probe


def test_recovers_after_k_samples() -> None:
    clock = FakeClock()
    probe = clock.scripted(BAD, BAD, GOOD, GOOD, GOOD)
    result = verify_recovery(
        probe, timeout_s=60, interval_s=5, required_consecutive=3, clock=clock, sleep=clock.sleep
    )
    assert (result.status, result.recovered, result.escalate) == (Status.OK, True, False)
    assert result.samples_total == 5 and [s.recovered for s in result.samples] == [
        False,
        False,
        True,
        True,
        True,
    ]
    # each round: 0.5 s probe + 5 s sleep; the streak starts with the 3rd sample
    assert result.time_to_recover_s == pytest.approx(2 * 5.5 + 0.5)
    assert result.confirmed_after_s == pytest.approx(4 * 5.5 + 0.5)
    assert clock.sleeps == [5, 5, 5, 5]
    assert result.check == "recovery_verification"
    assert result.summary.startswith("recovered after 11.5 s (3 good samples in a row")


def test_a_broken_streak_starts_over() -> None:
    clock = FakeClock(probe_cost_s=0)
    probe = clock.scripted(GOOD, GOOD, BAD, GOOD, GOOD, GOOD)
    result = verify_recovery(
        probe, timeout_s=60, interval_s=1, required_consecutive=3, clock=clock, sleep=clock.sleep
    )
    assert result.recovered and result.samples_total == 6
    assert result.time_to_recover_s == pytest.approx(3.0)  # the 4th sample, not the first


def test_never_recovering_escalates_at_the_timeout() -> None:
    clock = FakeClock(probe_cost_s=0)
    result = verify_recovery(
        clock.scripted(then=BAD),
        timeout_s=300,
        interval_s=7,
        required_consecutive=3,
        clock=clock,
        sleep=clock.sleep,
        max_samples=10,
    )
    assert (result.status, result.recovered, result.escalate) == (Status.FAILED, False, True)
    assert result.time_to_recover_s is None
    assert result.elapsed_s == pytest.approx(300)
    assert result.samples_total == 44  # t = 0, 7, ..., 294, then the shortened last sleep to 300
    assert clock.sleeps[-1] == pytest.approx(6)
    # bounded: the first and the latest samples are kept
    assert len(result.samples) == 10
    assert [s.index for s in result.samples] == [0, 1, 2, 3, 4, 39, 40, 41, 42, 43]
    assert "not recovered within 300 s" in result.summary and "escalate" in result.summary


def test_unknown_is_never_recovered() -> None:
    clock = FakeClock(probe_cost_s=0)
    result = verify_recovery(
        clock.scripted(then=UNKNOWN), timeout_s=10, interval_s=2, clock=clock, sleep=clock.sleep
    )
    assert result.escalate and not result.recovered
    assert "stable_metrics unknown (Prometheus down)" in result.summary
    assert not RecoveryProbe(parts=[]).recovered  # nothing checked is not a recovery


def test_a_crashing_probe_is_an_unknown_sample() -> None:
    clock = FakeClock(probe_cost_s=0)
    calls = iter([RuntimeError("boom"), GOOD, GOOD])

    def probe() -> RecoveryProbe:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    result = verify_recovery(
        probe, timeout_s=10, interval_s=1, required_consecutive=2, clock=clock, sleep=clock.sleep
    )
    assert result.recovered
    assert (
        result.samples[0].parts[0].state == "unknown"
        and "RuntimeError: boom" in result.samples[0].parts[0].detail
    )


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        verify_recovery(lambda: GOOD, timeout_s=0, interval_s=1)


# --- the metric part over a fake Prometheus -----------------------------------------------------------


def _reader(requests: float, errors: float, errors_5xx: float, p99_s: float | None) -> FakeReader:
    sel = re.escape('{job="testbed",version=~"canary|stable"}')
    table = {
        (
            rf"^sum by \(version, channel\) \(increase\(testbed_requests_total{sel}",
            "stable",
            "text",
        ): requests,
        (r"increase\(testbed_request_errors_total", "stable", "text"): errors,
        (r'code=~"5\.\."', "stable", "text"): errors_5xx,
    }
    if p99_s is not None:
        table[(r"histogram_quantile\(0\.99,", "stable", "text")] = p99_s
    return FakeReader(table)


def test_stable_traffic_under_the_gates_is_ok() -> None:
    parts = stable_metrics_parts(TESTBED, BOOKS.thresholds, _reader(200, 2, 0, 0.3), END, 60, 10)
    assert {p.name: p.state for p in parts} == {
        "stable_error_rate": "ok",
        "stable_5xx_rate": "ok",
        "stable_p99_text": "ok",
    }
    assert parts[0].value == pytest.approx(0.01) and parts[2].value == pytest.approx(300)


def test_stable_errors_or_latency_over_the_gates_are_bad() -> None:
    parts = stable_metrics_parts(TESTBED, BOOKS.thresholds, _reader(200, 20, 4, 2.0), END, 60, 10)
    states = {p.name: p.state for p in parts}
    assert states == {"stable_error_rate": "bad", "stable_5xx_rate": "bad", "stable_p99_text": "bad"}
    assert "10.00% of 200 requests (limit 5.00%)" in parts[0].detail
    assert "2000 ms (gate 1200 ms)" in parts[2].detail


def test_no_traffic_or_no_prometheus_is_unknown() -> None:
    [quiet] = stable_metrics_parts(TESTBED, BOOKS.thresholds, _reader(3, 0, 0, None), END, 60, 10)
    assert quiet.state == "unknown" and "nothing to judge" in quiet.detail

    class Down:
        def query(self, promql: str, at: datetime) -> list[Sample]:
            raise PrometheusUnavailable("cannot reach Prometheus at http://127.0.0.1:9: Connection refused")

    [down] = stable_metrics_parts(TESTBED, BOOKS.thresholds, Down(), END, 60, 10)
    assert down.state == "unknown" and "Connection refused" in down.detail


def test_gateway_probe_with_everything_unreachable_is_bad_or_unknown_never_a_crash() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    target = make_target(
        {"method": "gateway_weight", "admin_token_env": TOKEN_ENV, "timeout_s": 1},
        gateway_url=dead,
        stable_url=dead,
    )

    class Down:
        def query(self, promql: str, at: datetime) -> list[Sample]:
            raise PrometheusUnavailable("Prometheus did not answer within 1 s")

    probe = gateway_probe(
        target, BOOKS.thresholds, Down(), timeout_s=1, environ={TOKEN_ENV: "t"}, now=lambda: END
    )()
    assert not probe.recovered
    assert {p.name: p.state for p in probe.parts} == {
        "stable_health": "bad",
        "canary_weight": "unknown",
        "stable_metrics": "unknown",
    }
    assert "cannot reach the gateway" in probe.parts[1].detail
