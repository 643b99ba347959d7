"""The pure intake decision (no journal, no Airflow): a Snapshot in, a Decision out."""

from __future__ import annotations

from typing import Any

import pytest

from diagnostics.intake import decide
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.payload import validate
from diagnostics.intake.records import Snapshot
from tests.conftest import REPO
from tests.diagnostics.intake.conftest import alert, body, delivery

CANARY = {"alertname": "CanaryGate5xx", "target": "testbed", "version": "canary"}
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def grader() -> Grader:
    return Grader(load_grading(REPO / "runbooks" / "grading.yaml"))


def snapshot(**kw: Any) -> Snapshot:
    base: dict[str, Any] = dict(
        delivery_id=7, known_resolved=frozenset(), runs={}, open_incident=None, latest_incident=None,
        run_id_taken=False, earlier_same_body=None,
    )  # fmt: skip
    return Snapshot(**{**base, **kw})


def incoming(grader: Grader, alerts: list[dict[str, Any]]) -> decide.Incoming:
    payload = delivery(alerts, CANARY)
    return decide.incoming(validate(payload), body(payload), NOW, grader)


def test_a_new_group_opens_a_pending_incident_covering_its_alerts(grader: Grader) -> None:
    d = incoming(grader, [alert("a1", NOW - 5, severity="critical", channel="image", **CANARY)])
    s = snapshot()
    assert decide.escalation_lookup(d, s, grader, 3600) is None  # L3 lasting 5 s: no count needed
    out = decide.decide(d, s, grader, "incident_response", lambda g, e: {"grade": g.grade.value})
    assert (out.plan.outcome, out.plan.create, out.plan.run_id) == ("pending", True, d.run_id)
    assert out.record.id == 7 and out.record.incident.insert is not None
    assert out.record.incident.insert.conf == {"grade": "L3"}
    assert out.record.incident.cover == (("a1", d.firing[0][1]),)


def test_covered_alerts_are_a_duplicate_naming_the_same_body(grader: Grader) -> None:
    d = incoming(grader, [alert("a1", NOW - 5, severity="critical", **CANARY)])
    s = snapshot(runs={d.firing[0]: "incident__x"}, earlier_same_body=3)
    out = decide.decide(d, s, grader, "incident_response", lambda g, e: {})
    assert (out.plan.outcome, out.plan.run_id) == ("duplicate", "incident__x")
    assert out.plan.detail.endswith("(same body as delivery 3)")
    assert out.record.incident.insert is None and out.record.incident.update_run is None


def test_after_creation(grader: Grader) -> None:
    plan = decide.Plan(1, "pending", "r", detail="new incident", create=True)
    assert decide.after_creation(plan, True, "created").outcome == "created"
    assert decide.after_creation(plan, False, "down").outcome == "pending"
