"""Issue 19 §3: new evidence at an incident that waits is evaluated at once.

An incident waited at the human gate (insufficient evidence: its window held no requests) when a hard
canary-gate breach for the same group arrived two minutes later. It was journaled as an ``update``
(L2 -> L3) and nothing else happened. Now an update that raises the grade or carries a gate alert
starts a re-evaluation run of the incident on fresh evidence and answers the waiting gate "Superseded
by new evidence"; each grade level and gate once; never while the run already rolls back; journaled
and retried while Airflow is down.
"""

from __future__ import annotations

from typing import Any

import pytest

from diagnostics.incident import task_ids as T
from diagnostics.intake import decide, reevaluate
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.payload import validate
from diagnostics.intake.reevaluate import RunFacts
from diagnostics.intake.service import IntakeService, Outcome
from diagnostics.runbooks.decision import SUPERSEDED_OPTION
from diagnostics.runbooks.grading import GradeId
from tests.conftest import REPO
from tests.diagnostics.intake.conftest import Clock, MemoryBackend, alert, body, delivery
from tests.diagnostics.intake.test_decide import open_incident, snapshot

GROUP = {"target": "testbed", "version": "canary"}
GATE_L2 = T.human_gate("L2")


def latency(starts: float) -> dict[str, Any]:
    """LatencySLABreach on the canary's text channel (warning: L2)."""
    return alert("1a7e", starts, channel="text", severity="warning", problem="latency_sla_breach", **GROUP)


def gate_5xx(starts: float) -> dict[str, Any]:
    """The hard canary gate: CanaryGate5xx (L3, rule canary_gate_breach)."""
    a = alert("5c5c", starts, severity="critical", gate="rate_5xx", problem="http_5xx_burst", **GROUP)
    a["labels"]["alertname"] = "CanaryGate5xx"
    return a


def error_rate(starts: float) -> dict[str, Any]:
    a = alert("e7e7", starts, channel="text", severity="warning", **GROUP)
    a["labels"]["alertname"] = "ErrorRateHigh"
    return a


def send(service: IntakeService, alerts: list[dict[str, Any]]) -> Outcome:
    payload = delivery(alerts, GROUP)
    return service.handle(validate(payload), body(payload))


WAITING = {T.FAST_GATE: "success", T.ROLLBACK_NOW: "skipped", T.NO_FAST_PATH: "success",
           T.DECIDE: "success", T.GO_ROLLBACK: "skipped", GATE_L2: "awaiting_input"}  # fmt: skip


# --- the pure rule ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grader() -> Grader:
    return Grader(load_grading(REPO / "runbooks" / "grading.yaml"))


NOW = 1_800_000_000.0


def decided(grader: Grader, alerts: list[dict[str, Any]], **kw: Any) -> decide.Decision:
    payload = delivery(alerts, GROUP)
    d = decide.incoming(validate(payload), body(payload), NOW, grader)
    incident = open_incident(None, NOW - 120, grade="L2", rule="service_degraded")
    s = snapshot(open_incident=incident, runs={d.firing[0]: incident.run_id}, **kw)
    return decide.decide(d, s, grader, "incident_response", lambda g, e: {"grade": g.grade.value})


def test_a_grade_raise_with_a_gate_breach_calls_for_one_re_evaluation(grader: Grader) -> None:
    out = decided(grader, [latency(NOW - 150), gate_5xx(NOW - 60), error_rate(NOW - 50)])
    again = out.record.incident.reevaluate
    assert again is not None and out.plan.outcome == "update"
    assert again.keys == ("grade:L3", "gate:CanaryGate5xx")
    assert again.reason == "CanaryGate5xx, ErrorRateHigh raised L2 -> L3"
    assert again.run_id.endswith("__r2") and again.previous_run_id == again.incident_run_id
    assert again.conf["reevaluates"] == again.previous_run_id and again.conf["grade"] == "L3"
    assert f"re-evaluation {again.run_id} of {again.previous_run_id}: " in out.plan.detail


def test_a_gate_alert_without_a_grade_raise_calls_for_one_too() -> None:
    call = reevaluate.called_for(GradeId.L3, "critical_severity", GradeId.L3,
                                 [("CanaryGateP99Latency", "canary_gate_breach")], done=())  # fmt: skip
    assert call == reevaluate.Call(
        ("gate:CanaryGateP99Latency",), "CanaryGateP99Latency: hard canary gate breached (L3)"
    )


def test_the_same_reasons_again_call_for_no_second_one(grader: Grader) -> None:
    first = decided(grader, [latency(NOW - 150), gate_5xx(NOW - 60)])
    assert first.record.incident.reevaluate is not None
    # the incident as the journal has it then: L3 by the gate, re-evaluated for grade:L3 and the gate
    assert reevaluate.called_for(GradeId.L2, "service_degraded", GradeId.L3,
                                 [("CanaryGate5xx", "canary_gate_breach")],
                                 done=("grade:L3", "gate:CanaryGate5xx")) is None  # fmt: skip
    # an incident graded by a gate breach was told of one: another gate alert adds nothing
    gate = [("CanaryGateErrorRate", "canary_gate_breach")]
    assert reevaluate.called_for(GradeId.L3, "canary_gate_breach", GradeId.L3, gate, done=()) is None
    # a higher grade is news again
    l4 = reevaluate.called_for(GradeId.L3, "canary_gate_breach", GradeId.L4, [("ModelNotLoaded", "x")],
                               done=("grade:L3",))  # fmt: skip
    assert l4 is not None and l4.keys == ("grade:L4",)


def test_news_without_a_raise_or_a_gate_calls_for_none(grader: Grader) -> None:
    out = decided(grader, [latency(NOW - 150), error_rate(NOW - 50)])
    assert out.plan.outcome == "update" and out.record.incident.reevaluate is None


def test_the_previous_run_decides_whether_to_act() -> None:
    judge = reevaluate.judge
    waiting = judge(RunFacts("r1", "running", WAITING))
    assert (waiting.kind, waiting.gate) == ("act", GATE_L2)
    phase2 = judge(RunFacts("r1", "running", {T.FAST_GATE: "success", T.ROLLBACK_NOW: "skipped"}))
    assert phase2.kind == "act" and "phase 2" in phase2.why
    assert judge(RunFacts("r1", "success", {T.FAST_GATE: "success", T.ROLLBACK_NOW: "skipped"})).kind == "act"
    assert judge(RunFacts("r1", "running", {T.FAST_GATE: "running"})).kind == "wait"
    assert judge(RunFacts("r1", None, {}, not_created=True)).kind == "wait"
    # already rolling back: the fast gate chose it, or the response's rollback runs
    for tasks in (
        {T.FAST_GATE: "success", T.ROLLBACK_NOW: None},
        {T.FAST_GATE: "success", T.ROLLBACK_NOW: "running"},
        {T.DECIDE: "success", T.GO_ROLLBACK: "success", f"{T.RESPONSE}.rollback": "running"},
    ):
        verdict = judge(RunFacts("r1", "running", tasks))
        assert verdict.kind == "skip" and "already rolls back" in verdict.why, tasks


# --- the service, on an in-memory Airflow ------------------------------------------------------------


def waiting_incident(service: IntakeService, backend: MemoryBackend, clock: Clock) -> str:
    """An L2 incident whose run waits at its human gate (insufficient evidence)."""
    first = send(service, [latency(clock.now - 200)])
    assert first.outcome == "created" and first.grade == "L2" and first.run_id
    backend.runs[first.run_id].state = "running"
    backend.runs[first.run_id].tasks = dict(WAITING)
    clock.advance(120)
    return first.run_id


def test_a_gate_breach_at_a_waiting_incident_starts_a_new_run_then_answers_the_gate(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    r1 = waiting_incident(service, backend, clock)
    mark = len(backend.calls)
    out = send(service, [latency(clock.now - 320), gate_5xx(clock.now - 60), error_rate(clock.now - 50)])
    r2 = f"{r1}__r2"
    assert (out.outcome, out.run_id, out.grade, out.reevaluation) == ("update", r1, "L3", r2)
    assert out.http_status == 200
    # in order: the previous run read, the new run created, the previous run read again, its gate answered
    calls = [c for c in backend.calls[mark:] if c != "set_note"]
    assert calls[-6:] == [
        "run_state", "task_states", "create_run", "run_state", "task_states", "answer_gate"
    ], calls  # fmt: skip
    conf = backend.runs[r2].conf
    why = "CanaryGate5xx, ErrorRateHigh raised L2 -> L3"
    assert (conf["reevaluates"], conf["reevaluation_reason"], conf["grade"]) == (r1, why, "L3")
    assert conf["delivery_id"] == out.delivery_id and conf["grade_rule"] == "canary_gate_breach"
    assert backend.runs[r2].note.startswith(f"**re-evaluation** of {r1} (delivery {out.delivery_id}): {why}")
    assert backend.answers == [(r1, GATE_L2, SUPERSEDED_OPTION, {"superseded_by": r2, "reason": why})]
    (again,) = service.journal.reevaluations(r1)
    assert (again.run_id, again.state, again.superseded_gate, again.keys) == (
        r2, "done", GATE_L2, ("grade:L3", "gate:CanaryGate5xx")
    )  # fmt: skip
    assert f"answered {GATE_L2} of {r1}" in again.detail and f"run {r1} waits at {GATE_L2}" in again.detail
    (d, *_) = service.journal.deliveries()
    assert d.outcome == "update" and f"re-evaluation {r2} of {r1}: {why} (done: " in d.detail
    # the incident now follows the new run; its note names the re-evaluation
    assert service.journal.latest_run(r1) == r2
    assert f"re-evaluation {r2} (done, delivery {out.delivery_id}): {why}" in backend.runs[r1].note


def test_the_same_gate_re_notified_starts_nothing_more(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    r1 = waiting_incident(service, backend, clock)
    alerts = [latency(clock.now - 320), gate_5xx(clock.now - 60)]
    assert send(service, alerts).reevaluation == f"{r1}__r2"
    clock.advance(60)
    again = send(service, [*alerts, error_rate(clock.now - 5)])  # news, but no new reason
    assert again.outcome == "update" and again.reevaluation is None
    assert sorted(backend.runs) == [r1, f"{r1}__r2"] and len(service.journal.reevaluations(r1)) == 1


def test_a_run_that_already_rolls_back_is_not_re_evaluated(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    first = send(service, [latency(clock.now - 200)])
    r1 = first.run_id or ""
    backend.runs[r1].tasks = {T.FAST_GATE: "success", T.ROLLBACK_NOW: "running"}
    out = send(service, [latency(clock.now - 200), gate_5xx(clock.now - 30)])
    assert out.reevaluation == f"{r1}__r2" and "(skipped: not needed: run " in out.detail
    assert list(backend.runs) == [r1] and backend.answers == []
    (again,) = service.journal.reevaluations(r1)
    assert again.state == "skipped" and "already rolls back (fast_path.rollback_now running)" in again.detail


def test_airflow_down_keeps_it_journaled_and_the_reconciler_completes_it(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    r1 = waiting_incident(service, backend, clock)
    backend.down = "Airflow API unreachable"
    out = send(service, [latency(clock.now - 320), gate_5xx(clock.now - 60)])
    r2 = f"{r1}__r2"
    assert (out.outcome, out.http_status, out.reevaluation) == ("update", 200, r2)
    (again,) = service.journal.reevaluations(r1)
    assert (again.state, again.attempts, again.last_error) == ("pending", 1, "Airflow API unreachable")
    assert list(backend.runs) == [r1]
    still = service.reconcile()
    assert still.still_pending == {r2: "re-evaluation pending: Airflow API unreachable"}
    backend.down = None
    report = service.reconcile()
    assert report.still_pending == {} and report.reevaluations[r2].startswith("done: run created")
    assert r2 in backend.runs and [a[:3] for a in backend.answers] == [(r1, GATE_L2, SUPERSEDED_OPTION)]


def test_a_run_still_in_phase_1_is_waited_for_and_its_gate_answered_once_it_asks(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    first = send(service, [latency(clock.now - 200)])
    r1, r2 = first.run_id or "", f"{first.run_id}__r2"
    backend.runs[r1].tasks = {T.FAST_GATE: "running"}
    out = send(service, [latency(clock.now - 200), gate_5xx(clock.now - 30)])
    assert "(pending: waiting: run " in out.detail and list(backend.runs) == [r1]
    # its fast path ends at insufficient evidence: the re-evaluation starts, phase 2 goes on
    backend.runs[r1].tasks = {T.FAST_GATE: "success", T.ROLLBACK_NOW: "skipped"}
    assert service.reconcile().reevaluations[r2].startswith("triggered: run created")
    assert r2 in backend.runs and backend.answers == []
    backend.runs[r1].tasks = dict(WAITING)  # phase 2 over: it asks a human
    assert service.reconcile().reevaluations[r2].startswith("done: ")
    assert [a[:2] for a in backend.answers] == [(r1, GATE_L2)]
    assert service.reconcile().reevaluations == {}, "nothing left to do"
