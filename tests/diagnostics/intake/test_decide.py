"""The pure intake decision (no journal, no Airflow): a Snapshot in, a Decision out; correlation
across alert groups and when an incident closes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from diagnostics.intake import decide
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.payload import validate
from diagnostics.intake.records import Incident, Snapshot
from tests.conftest import REPO
from tests.diagnostics.intake.conftest import alert, body, delivery, golden_regression, model_not_loaded

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


# --- correlation across alert groups (grading.yaml correlation) -------------------------------------

STABLE = {"alertname": "CanaryGate5xx", "target": "testbed", "version": "stable"}


def open_incident(key: str | None, last_delivery_at: float, **kw: Any) -> Incident:
    """An open incident record as the journal returns it."""
    base: dict[str, Any] = dict(
        run_id="incident__goldenregression-testbed__ab12", dag_id="incident_response",
        group_key='{}:{alertname="GoldenRegression", target="testbed"}', state="open", run_state="running",
        created_at=last_delivery_at - 60, opened_at=last_delivery_at - 59, closed_at=None, grade="L2",
        rule="service_degraded", escalated=False, escalation_rule="L2.never", escalation_reason="-",
        escalated_at=None, conf_json="{}", group_labels_json="{}", updates=0, resolved_at=None,
        last_delivery_at=last_delivery_at, note_dirty=0, note_written_at=None, state_checked_at=None,
        last_running_at=None, attempts=1, last_error="", correlation_key=key,
        correlation_rule="same_target_version",
    )  # fmt: skip
    return Incident(**{**base, **kw})


def of(grader: Grader, payload: dict[str, Any], at: float = NOW) -> decide.Incoming:
    return decide.incoming(validate(payload), body(payload), at, grader)


def test_the_regression_alert_and_model_not_loaded_share_one_key(grader: Grader) -> None:
    regression = of(grader, golden_regression(NOW - 300))
    prometheus = of(grader, model_not_loaded(NOW - 40))
    assert regression.group_key != prometheus.group_key, "two Alertmanager groups"
    assert regression.correlation is not None and prometheus.correlation is not None
    assert regression.correlation == prometheus.correlation
    assert regression.correlation.rule == "same_target_version"
    assert regression.correlation.text == "target=testbed, version=canary"
    assert regression.correlation.window_s == 1800
    # The first opens an incident that carries the key ...
    opened = decide.decide(regression, snapshot(), grader, "incident_response", lambda g, e: {})
    assert opened.plan.outcome == "pending" and opened.record.incident.insert is not None
    assert opened.record.incident.insert.correlation_key == regression.correlation.key
    # ... the second joins it: no new run, the group recorded, L2 raised to L4 (escalated at once).
    incident = open_incident(regression.correlation.key, NOW - 300)
    s = snapshot(correlated=incident)
    assert decide.escalation_lookup(prometheus, s, grader, 3600) is None  # L4: immediate, no count
    out = decide.decide(prometheus, s, grader, "incident_response", lambda g, e: {"grade": g.grade.value})
    plan, write = out.plan, out.record.incident
    assert (plan.outcome, plan.run_id, plan.create) == ("joined", incident.run_id, False)
    assert plan.detail.startswith(
        f"joined incident {incident.run_id} (rule same_target_version: target=testbed, version=canary; "
        "its last delivery 300 s ago); 1 new firing alert(s); grade raised L2 -> L4 (core_path_failing); "
        "escalated: L4 escalates at once"
    )
    # No new incident: a re-evaluation of this one, on fresh evidence (started after the commit).
    again = write.reevaluate
    assert again is not None and plan.reevaluate == again.run_id == f"{incident.run_id}__r2"
    assert (again.previous_run_id, again.keys) == (incident.run_id, ("grade:L4",))
    assert again.reason == "ModelNotLoaded raised L2 -> L4"
    assert again.conf == {
        "grade": "L4", "reevaluates": incident.run_id, "reevaluation_reason": "ModelNotLoaded raised L2 -> L4"
    }  # fmt: skip
    assert plan.graded is not None and plan.graded.grade.value == "L4" and plan.force_note
    assert write.insert is None and write.update_run == incident.run_id
    assert write.join is not None and (write.join.group_key, write.join.rule) == (
        prometheus.group_key,
        "same_target_version",
    )
    assert write.join.group_labels == {"target": "testbed", "version": "canary"}
    assert write.cover == prometheus.firing and write.cover_run == incident.run_id
    assert (write.update["grade"], write.update["escalated"], write.update["updates"]) == ("L4", 1, 1)
    assert out.record.outcome == "joined" and out.record.run_id == incident.run_id


@pytest.mark.parametrize(("ago", "joins"), [(1800, True), (1801, False)])
def test_a_group_joins_only_within_the_rules_window(grader: Grader, ago: float, joins: bool) -> None:
    d = of(grader, model_not_loaded(NOW - 40))
    assert d.correlation is not None
    s = snapshot(correlated=open_incident(d.correlation.key, NOW - ago))
    out = decide.decide(d, s, grader, "incident_response", lambda g, e: {})
    assert out.plan.outcome == ("joined" if joins else "pending")
    assert (out.record.incident.insert is None) is joins


def test_another_version_or_an_unkeyed_incident_is_not_joined(grader: Grader) -> None:
    canary = of(grader, delivery([alert("a1", NOW - 5, severity="critical", **CANARY)], CANARY))
    stable = of(grader, delivery([alert("b1", NOW - 5, severity="critical", **STABLE)], STABLE))
    assert canary.correlation is not None and stable.correlation is not None
    assert canary.correlation.key != stable.correlation.key
    for other in (open_incident(canary.correlation.key, NOW - 5), open_incident(None, NOW - 5)):
        out = decide.decide(stable, snapshot(correlated=other), grader, "incident_response", lambda g, e: {})
        assert out.plan.outcome == "pending" and out.record.incident.join is None


def test_an_alert_without_version_joins_only_target_wide_incidents(grader: Grader) -> None:
    """``optional: [version]``: a target-wide alert gets the key (target, version absent)."""
    wide = {"alertname": "TargetDown", "target": "testbed"}
    d = of(grader, delivery([alert("c1", NOW - 5, impact="core_path", **wide)], wide))
    assert d.correlation is not None and d.correlation.text == "target=testbed, version absent"
    versioned = of(grader, model_not_loaded(NOW - 5)).correlation
    assert versioned is not None and versioned.key != d.correlation.key
    # A group spanning two versions has no one version: target-wide too.
    mixed = [alert("d1", NOW, severity="critical", **CANARY), alert("d2", NOW, severity="critical", **STABLE)]
    spans = of(grader, delivery(mixed, {"target": "testbed"})).correlation
    assert spans is not None and spans.key == d.correlation.key


def test_a_rule_names_which_alerts_and_grades_correlate(tmp_path: Path) -> None:
    text = (REPO / "runbooks" / "grading.yaml").read_text()
    rule = (
        "    - id: same_target_version\n"
        "      description: one service version's alerts from any source are one incident for 30 min\n"
    )
    assert rule in text
    strict = text.replace(rule, rule + '      match: {alertname: "ModelNotLoaded|GoldenRegression"}\n'
                          "      grades: [L3, L4]\n")  # fmt: skip
    path = tmp_path / "grading.yaml"
    path.write_text(strict)
    g = Grader(load_grading(path))
    assert of(g, model_not_loaded(NOW)).correlation is not None  # L4, a named alert
    assert of(g, golden_regression(NOW)).correlation is None, "L2 is not in grades"
    assert of(g, delivery([alert("e1", NOW, severity="critical", **CANARY)], CANARY)).correlation is None


def test_an_incident_closes_only_when_its_run_ended_and_its_alerts_are_quiet() -> None:
    assert decide.closes("running", 0, NOW - 9999, NOW, 1800) == (False, "run running")
    assert decide.closes("success", 2, NOW - 9999, NOW, 1800) == (
        False,
        "run success, 2 alert(s) still firing",
    )
    assert decide.closes("success", 0, NOW - 60, NOW, 1800) == (
        False,
        "run success, nothing firing, quiet for 60 s (< 1800 s)",
    )
    assert decide.closes("failed", 0, NOW - 1800, NOW, 1800) == (
        True,
        "run failed, nothing firing, quiet for 1800 s",
    )
    assert decide.closes("missing", 0, NOW, NOW, 0)[0], "a run deleted from Airflow has ended too"
