"""The verification task returns "not recovered" as its result: it does not raise, so Airflow does not
retry the whole polling window while the incident shows nothing (the outcome itself is tested in
tests/diagnostics/response/test_recovery_outcome.py)."""

from __future__ import annotations

from typing import Any

import pytest
from triage24_airflow import runs, tasks

from diagnostics.response.verify import ProbePart, RecoveryProbe, RecoveryResult, verify_recovery

BAD = RecoveryProbe(
    parts=[
        ProbePart(name="stable_health", state="ok"),
        ProbePart(
            name="stable_p99_audio",
            state="bad",
            detail="7956 ms (gate 6000 ms) at 0.22 req/s",
            value=7956,
            version="stable",
            channel="audio",
            gate="p99_latency_ms",
            limit=6000,
            rate_rps=0.22,
        ),
    ]
)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_not_recovered_is_returned_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import diagnostics.response.phase as phase

    calls: list[Any] = []

    def verify_and_store(incident: Any, sources: Any) -> RecoveryResult:
        calls.append(incident)
        clock = Clock()
        return verify_recovery(lambda: BAD, timeout_s=300, interval_s=5, clock=clock, sleep=clock.sleep)

    monkeypatch.setattr(phase, "verify_and_store", verify_and_store)
    monkeypatch.setattr(tasks, "_ctx", lambda: {})
    monkeypatch.setattr(runs, "incident", lambda ctx: type("Inc", (), {"dry_run": False})())
    monkeypatch.setattr(runs, "sources", lambda inc: None)
    brief = tasks.verify.function({"changed": True})
    assert len(calls) == 1
    assert brief["status"] == "failed" and brief["recovered"] is False
    assert brief["verdict"] == "not_recovered"
    assert brief["summary"].startswith("not recovered within 300 s (61 samples, 0 good, never 3 good")
