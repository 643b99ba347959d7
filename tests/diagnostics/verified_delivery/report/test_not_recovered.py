"""A rollback that did not recover the service: the report says "not recovered", escalated, and why.

The real rolled-back incident (``report_rollback``) with its recovery verification replaced by what
the verification now stores when stable's audio p99 stays over its gate after it took the canary's
traffic: built by the verification code itself from the live probe parts and the incident's own
phase-1 ``metrics_sla`` (stable audio p99 5935 ms before, 7956 ms after, gate 6000 ms).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from diagnostics.response.verify import (
    Phase1Metrics,
    ProbePart,
    RecoveryProbe,
    explain_recovery,
    verify_recovery,
)
from diagnostics.verified_delivery.report import build_report
from tests.diagnostics.verified_delivery.report.conftest import (
    ROLLBACK,
    ROLLBACK_ALERT,
    ROLLBACK_TIMES,
    copy_incident,
    edit_json,
    load,
    text_of,
)

AFTER = RecoveryProbe(
    parts=[
        ProbePart(name="stable_health", state="ok", detail="ready"),
        ProbePart(name="canary_weight", state="ok", detail="0", value=0),
        ProbePart(
            name="stable_p99_audio",
            state="bad",
            detail="7956 ms (gate 6000 ms) at 0.22 req/s",
            value=7956,
            version="stable",
            channel="audio",
            gate="p99_latency_ms",
            limit=6000,
            rate_rps=13.1 / 60,
        ),
    ]
)
CAPACITY = (
    "stable audio p99_latency_ms 7956 ms > gate 6000 ms; within it before the rollback (5935 ms at "
    "0.11 req/s), now 0.22 req/s after taking the canary's 0.11 req/s: a capacity problem"
)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@pytest.fixture
def not_recovered(tmp_path: Path) -> tuple[Path, Any, str, str]:
    incident = copy_incident(ROLLBACK, tmp_path, ROLLBACK_ALERT, ROLLBACK_TIMES)
    clock = Clock()
    result = verify_recovery(lambda: AFTER, timeout_s=300, interval_s=5, clock=clock, sleep=clock.sleep)
    before = Phase1Metrics.model_validate(load(incident, "golden_window/metrics_sla.json"))
    stored = explain_recovery(result, before).model_dump(mode="json")
    edit_json(incident / "response" / "recovery_verification.json", lambda _: stored)
    report = build_report(incident, now=ROLLBACK_ALERT + timedelta(hours=30))
    html = report.html.read_text(encoding="utf-8")
    return incident, report, " ".join(text_of(html).split()), report.markdown.read_text(encoding="utf-8")


def test_the_headline_says_not_recovered_escalated_and_why(not_recovered: Any) -> None:
    incident, report, text, md = not_recovered
    assert load(incident, "response/recovery_verification.json")["verdict"] == "capacity"
    assert report.time_to_recover_s is None
    headline = f"not recovered (escalated) — {CAPACITY}"
    assert f"time to recover: {headline}" in text
    assert f"- time to recover: {headline}" in md
    assert "rollback: already_applied" in text  # the action itself is still shown as it was


def test_the_verification_facts_name_what_stays_bad_with_both_values(not_recovered: Any) -> None:
    _, _, text, md = not_recovered
    assert "recovered no verdict capacity time to recover n/a" in text and "escalate yes" in text
    assert "samples 61 taken, 0 good, 3 good in a row needed, every 5.0 s (timeout 5 min 00 s)" in text
    assert f"still bad: stable_p99_audio capacity: {CAPACITY}" in text
    assert "stable_p99_audio bad (7956 ms (gate 6000 ms) at 0.22 req/s)" in text  # the last sample
    assert "- `recovery_verification`: failed, not recovered within 300 s (61 samples, 0 good" in md
    assert f"Verdict capacity: {CAPACITY}" in md
