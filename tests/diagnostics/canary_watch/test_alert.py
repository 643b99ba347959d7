"""A rejection as an alert: an Alertmanager v4 body the intake takes and grades like a canary gate
breach (L3, a re-evaluation of an open incident), whose evidence survives the intake, the run's conf
and the incident to be read back exactly; malformed or unconvincing evidence is ignored by name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from diagnostics.canary_watch import CountTestParams, CountWatch, WatchStatus
from diagnostics.canary_watch.alert import ALERTNAME, Rejection, alert_payload, read_rejection
from diagnostics.incident.conf import ConfAlert, IncidentConf
from diagnostics.incident.model import incident_from_conf
from diagnostics.intake import reevaluate
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.payload import validate
from diagnostics.runbooks.grading import GradeId
from tests.conftest import REPO
from tests.diagnostics.canary_watch.test_sequential import _cumulative

AT = datetime(2026, 11, 22, 3, 0, 5, tzinfo=UTC)
PARAMS = CountTestParams(alpha=0.005 / 12)


def rejection() -> Rejection:
    """A real rejection: the 5xx test on text, a canary at 10 % 5xx against stable's 0.5 %."""
    watch = CountWatch("errors_5xx", "text", "5xx", PARAMS)
    state = watch.start()
    for look in _cumulative([(20, 2, 380, 2)] * 60):
        step = watch.observe(state, look)
        state = step.state
        if step.result.status is WatchStatus.REJECT:
            return Rejection.from_result(step.result, "testbed", "v2.4.1", AT)
    raise AssertionError("a 10x canary was not rejected in 60 looks")


def test_the_alert_is_an_alertmanager_body_with_the_evidence() -> None:
    r = rejection()
    body = alert_payload(r)
    assert (body["version"], body["status"], body["receiver"]) == ("4", "firing", "triage24-canary-watch")
    (alert,) = body["alerts"]
    assert alert["labels"] == {
        "alertname": "CanaryWatchRejected",
        "target": "testbed",
        "version": "canary",
        "channel": "text",
        "severity": "critical",
        "problem": "http_5xx_burst",
        "gate": "canary_watch",
    }
    assert alert["startsAt"] == "2026-11-22T03:00:05Z"
    notes = alert["annotations"]
    assert notes["test"] == "errors_5xx" and notes["runbook"] == "runbooks/http_5xx_burst.md"
    assert float(notes["e_value"]) == r.e_value >= float(notes["threshold"]) == pytest.approx(2400)
    assert (float(notes["canary_events"]), float(notes["stable_events"])) == (
        r.counts.canary_events,
        r.counts.stable_events,
    )
    assert notes["evidence"] == r.evidence and r.evidence.startswith("text: canary 5xx ")
    payload = validate(body)  # what the intake's webhook accepts
    assert [a.labels["alertname"] for a in payload.firing] == [ALERTNAME]


def test_the_intake_grades_it_as_a_canary_gate_breach_that_reevaluates_an_open_incident() -> None:
    labels = rejection().labels()
    grader = Grader(load_grading(REPO / "runbooks" / "grading.yaml"))
    graded = grader.grade_alert(labels)
    assert (graded.grade, graded.rule) == (GradeId.L3, "canary_gate_breach")
    call = reevaluate.called_for(GradeId.L2, "service_degraded", GradeId.L3, [(ALERTNAME, graded.rule)], [])
    assert call is not None and "gate:CanaryWatchRejected" in call.keys


def _through_the_intake(body: dict[str, Any]) -> Any:
    """The incident a run of this alert group sees: payload -> conf -> incident."""
    payload = validate(body)
    conf = IncidentConf(
        target="testbed",
        version="canary",
        alerts=[ConfAlert.model_validate(a.as_conf()) for a in payload.alerts],
    )
    return incident_from_conf("incident__testbed__x", conf.as_conf(), now=AT)


def test_the_evidence_reads_back_exactly_after_the_intake_and_the_incident() -> None:
    r = rejection()
    inc = _through_the_intake(alert_payload(r))
    (gate,) = inc.gate_alerts
    back = read_rejection(gate.labels, gate.annotations)
    assert back == r
    assert isinstance(back, Rejection) and back.not_evidence() is None
    assert back.reason().startswith("canary watch rejection (fast path): text errors_5xx: canary ")
    assert "≥ 2,400 = 1/alpha (alpha 0.000417 per test)" in back.reason()


@pytest.mark.parametrize(
    ("labels", "annotations", "why"),
    [
        ({"version": "stable"}, {}, "names version 'stable': the watch only ever accuses the canary"),
        ({}, {"e_value": "lots"}, "annotation e_value: expected a number, got 'lots'"),
        ({}, {"threshold": "inf"}, "annotation threshold: 'inf' is not a finite number"),
        ({}, {"canary_events": None}, "annotation canary_events: expected a number, got None"),
        ({}, {"canary_events": "99"}, "annotations: canary_events above canary_requests"),
        ({}, {"test": "gpu_memory"}, "annotation test: Input should be 'errors', 'errors_5xx' or 'sla_slow'"),
        ({"channel": "video"}, {}, "annotation channel: Input should be"),
        ({}, {"rejected_at": "yesterday"}, "annotation rejected_at: Input should be a valid datetime"),
    ],
)
def test_malformed_annotations_are_a_reason_never_a_crash(
    labels: dict[str, str], annotations: dict[str, Any], why: str
) -> None:
    r = rejection()
    read = read_rejection({**r.labels(), **labels}, {**r.annotations(), **annotations})
    assert isinstance(read, str) and read.startswith(why)


@pytest.mark.parametrize(
    ("annotations", "why"),
    [
        ({"e_value": "2399.0"}, "e-value 2.4e+03 under its bound 2400: not a rejection"),
        ({"threshold": "1.0", "e_value": "5.0"}, "threshold 1 is no bound"),
        ({"canary_events": "0.0"}, "no canary event counted"),
        (
            {"stable_events": "3000.0", "stable_requests": "3000.0"},
            "the canary's rate 10.000% is not above stable's 100.000%: a finding both versions share",
        ),
    ],
)
def test_a_rejection_that_does_not_show_the_canary_worse_is_no_evidence(
    annotations: dict[str, str], why: str
) -> None:
    r = rejection()
    read = read_rejection(r.labels(), {**r.annotations(), **annotations})
    assert isinstance(read, Rejection)
    assert (read.not_evidence() or "").startswith(why)
