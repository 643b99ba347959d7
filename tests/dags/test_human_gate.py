"""The human gate keeps a human's answer: stored the moment it arrives, reused by a retried gate.

Seen under load: the on-call answered "hold", the gate then failed while skipping the other branches
(the API server answered 404 "Task Instance not found"), Airflow retried it and the retry asked again,
so the run waited out the 30-minute timeout with the answer already given. Here the skipping fails
once after the answer; the retry must branch by the stored answer without asking.

The first tests drive the operator's own methods with a task context (no Airflow DB); the last runs
the incident DAG with ``dag.test()`` and answers its gate as an on-call engineer would
(tests/support/hitl.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.standard.operators.hitl import HITLBranchOperator
from triage24_airflow import runs
from triage24_airflow.gate import HumanAnswer, HumanGate, human_gates

from diagnostics.runbooks.decision import SUPERSEDED_OPTION, HumanChoice, HumanGateDefault
from tests.conftest import REPO
from tests.support.hitl import Responder

HOLD, ROLLBACK = "Hold and escalate", "Roll back the canary"
RUN_ID = "manual__2026-12-01T11:07:30+00:00"
RESPONDED_AT = datetime(2026, 12, 1, 11, 20, 5, tzinfo=UTC)
NOT_FOUND = (
    "Server error '404 Not Found': {'detail': {'reason': 'not_found', 'message': 'Task Instance not found'}}"
)


@dataclass
class FakeTI:
    try_number: int
    xcom: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        return self.xcom.get(key) if task_ids == "decision.human_gate_L3" else None


@dataclass
class FakeRun:
    run_id: str = RUN_ID
    dag_id: str = "incident_response"
    conf: dict[str, Any] = field(default_factory=lambda: {"target": "testbed"})
    start_date: datetime = RESPONDED_AT - timedelta(minutes=13)
    queued_at: datetime = RESPONDED_AT - timedelta(minutes=13)


def context(try_number: int) -> dict[str, Any]:
    return {"ti": FakeTI(try_number), "dag_run": FakeRun(), "params": {}}


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRIAGE24_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


@pytest.fixture
def gate() -> HumanGate:
    [l3] = human_gates({"L3": HumanGateDefault(choice=HumanChoice.HOLD, timeout_s=900)})
    l3.task_id = "decision.human_gate_L3"  # as inside the DAG's decision TaskGroup
    return l3


@dataclass
class Branching:
    """``do_branch`` that fails as the API server did, ``failures`` times, then records its branches."""

    failures: int = 0
    branched: list[list[str]] = field(default_factory=list)

    def __call__(self, context: Any, branches_to_execute: list[str]) -> list[str]:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError(NOT_FOUND)
        self.branched.append(list(branches_to_execute))
        return branches_to_execute


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The tries that asked a human (the HITL request written and the task parked)."""
    tries: list[int] = []

    def ask(self: HITLBranchOperator, context: Any) -> None:
        tries.append(context["ti"].try_number)

    monkeypatch.setattr(HITLBranchOperator, "execute", ask)
    return tries


def answer_event(option: str, user: str | None = "oncall-ana") -> dict[str, Any]:
    return {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": RESPONDED_AT,
        "responded_by_user": {"id": user, "name": user} if user else None,
    }


def test_a_retried_gate_branches_by_the_stored_answer_without_asking_again(
    gate: HumanGate, artifacts: Path, asked: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    branching = Branching(failures=1)
    monkeypatch.setattr(gate, "do_branch", branching)
    # try 1: asked, answered "hold", then skipping the other branches fails
    first = context(1)
    gate.execute(first)
    assert asked == [1]
    with pytest.raises(RuntimeError, match="Task Instance not found"):
        gate.execute_complete(first, answer_event(HOLD))
    record = json.loads((artifacts / RUN_ID / "decision" / "human_gate_L3.json").read_text())
    assert record == {
        "task_id": "decision.human_gate_L3",
        "chosen": [HOLD],
        "by": "oncall-ana",
        "at": "2026-12-01 11:20:05+00:00",
        "try_number": 1,
        "params": {},
    }
    assert branching.branched == []  # the failure came before any branch was taken

    # try 2 (Airflow's retry): not asked again, routed by the stored answer, who answered kept
    second = context(2)
    assert gate.execute(second) == ["decision.human_hold"]
    assert asked == [1]
    assert branching.branched == [["decision.human_hold"]]
    assert second["ti"].xcom["response"] == {
        "chosen": [HOLD],
        "by": "oncall-ana",
        "at": "2026-12-01 11:20:05+00:00",
        "params": {},
    }
    assert runs.decided_by(second) == "human gate L3: 'Hold and escalate' answered by oncall-ana"


def test_the_timeout_default_is_kept_as_well(
    gate: HumanGate, artifacts: Path, asked: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate, "do_branch", Branching(failures=1))
    with pytest.raises(RuntimeError):
        gate.execute_complete(context(1), answer_event(HOLD, user=None))
    retry = context(2)
    assert gate.execute(retry) == ["decision.human_hold"]
    assert asked == []
    assert runs.decided_by(retry) == "human gate L3: 'Hold and escalate' by the timeout default"


def test_without_a_stored_answer_or_with_a_foreign_one_the_gate_asks(
    gate: HumanGate, artifacts: Path, asked: list[int]
) -> None:
    gate.execute(context(1))
    assert asked == [1]
    # an answer that is not one of this gate's options (a hand-edited file, an older DAG) is not used
    path = artifacts / RUN_ID / "decision" / "human_gate_L3.json"
    path.parent.mkdir(parents=True)
    stale = HumanAnswer(task_id=gate.task_id, chosen=["Ship it"], by="x", at="t", try_number=1)
    path.write_text(stale.model_dump_json())
    gate.execute(context(2))
    path.write_text("{not json")
    gate.execute(context(3))
    assert asked == [1, 2, 3]


def test_an_answer_outside_the_options_is_refused_and_not_stored(gate: HumanGate, artifacts: Path) -> None:
    with pytest.raises(ValueError, match="not in"):
        gate.execute_complete(context(1), answer_event("Ship it"))
    assert not (artifacts / RUN_ID / "decision" / "human_gate_L3.json").exists()


@dataclass
class CountingTI:
    """The Task SDK's ``get_dr_count`` (runs of the DAG among ``run_ids``), recorded."""

    count: int | None  # None: the execution API cannot answer
    asked: list[list[str]] = field(default_factory=list)

    def get_dr_count(self, dag_id: str, run_ids: list[str]) -> int:
        self.asked.append(run_ids)
        if self.count is None:
            raise RuntimeError("execution API unreachable")
        return self.count


def test_a_run_knows_when_a_re_evaluation_superseded_it_so_it_promotes_nothing() -> None:
    intake = {"schema": "triage24.intake/v1", "target": "testbed"}
    first = CountingTI(1)
    assert runs.superseded({"dag_run": FakeRun("incident__t__ab12", conf=intake), "ti": first})
    assert first.asked[0][:2] == ["incident__t__ab12__r2", "incident__t__ab12__r3"]
    second = CountingTI(0)
    assert not runs.superseded({"dag_run": FakeRun("incident__t__ab12__r2", conf=intake), "ti": second})
    assert second.asked[0][0] == "incident__t__ab12__r3"
    # unanswerable: no promotion on a maybe; a manual investigation is never re-evaluated
    assert runs.superseded({"dag_run": FakeRun("incident__t__ab12", conf=intake), "ti": CountingTI(None)})
    manual = CountingTI(1)
    assert not runs.superseded({"dag_run": FakeRun(), "ti": manual}) and manual.asked == []


# --- the incident DAG with dag.test(): the gate answered once, its skipping failing once ----------------


@dataclass
class SameRun(Responder):
    """A responder for one run's gates only, until stopped."""

    run_id: str | None = None
    stopped: bool = False

    def _find(self) -> tuple[str, str] | None:
        found = None if self.stopped else super()._find()
        return found if found is not None and found[0] == self.run_id else None


@pytest.fixture
def incident_dag(airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("TRIAGE24_DEADLINE_ALERTS", "0")  # dag.test() cannot run a DAG with deadlines (3.3)
    monkeypatch.setenv("TRIAGE24_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TRIAGE24_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("TRIAGE24_NOTIFY_WEBHOOK_URL", raising=False)
    bag = DagBag(dag_folder=str(REPO / "dags" / "incident_response.py"))
    assert bag.import_errors == {}
    dag = bag.dags["incident_response"]
    dag.task_dict["decision.human_gate_ungraded"].retry_delay = timedelta(seconds=1)
    yield dag


@pytest.mark.timeout(300)  # dag.test() waits for an answer for ever: a hang fails here
def test_dag_run_a_failed_gate_is_retried_without_asking_again(
    incident_dag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    branching = Branching(failures=1)
    real_do_branch = HumanGate.do_branch

    def do_branch(self: HumanGate, context: Any, branches_to_execute: list[str]) -> Any:
        branching(context, branches_to_execute)  # fails the first time, as the API server did
        return real_do_branch(self, context, branches_to_execute)

    monkeypatch.setattr(HumanGate, "do_branch", do_branch)
    oncall = Responder("incident_response", HOLD).start()
    # Were the retry to ask again, this one would answer "roll back" (the run ends either way, and
    # the assertions below say what happened).
    second = SameRun("incident_response", ROLLBACK, timeout_s=120)

    def after_the_first_answer() -> None:
        while not oncall.answered and oncall.error is None:
            time.sleep(0.2)
        if oncall.answered:
            second.run_id = oncall.answered[0][0]
            second.start()

    threading.Thread(target=after_the_first_answer, daemon=True).start()
    # Only the decision and the response run; the phases' own tasks are marked done (no services here):
    # with no evidence stored the decision needs a human, the manual incident's gate is "ungraded".
    try:
        run = incident_dag.test(
            run_conf={"target": "testbed"},
            mark_success_pattern=r"(?!decision\.|response\.hold$).*",
        )
    finally:
        second.stopped = True  # it must not answer another test's gate
    oncall.join()
    assert oncall.error is None
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    gate = next(ti for ti in run.get_task_instances() if ti.task_id == "decision.human_gate_ungraded")
    assert gate.state == "success" and gate.try_number == 2
    assert [task for _, task in oncall.answered] == ["decision.human_gate_ungraded"]
    assert second.answered == []  # the retry did not ask
    assert branching.branched == [["decision.human_hold"]]
    assert states["decision.human_hold"] == "success" and states["response.hold"] == "success"
    assert states["decision.human_rollback"] == "skipped" and states["decision.human_continue"] == "skipped"
    home = tmp_path / "home" / "artifacts" / run.run_id
    record = json.loads((home / "decision" / "human_gate_ungraded.json").read_text())
    assert (record["chosen"], record["by"], record["try_number"]) == ([HOLD], "oncall-test", 1)
    hold = json.loads((home / "response" / "hold.json").read_text())
    assert hold["details"]["decided_by"] == "human gate ungraded: 'Hold and escalate' answered by oncall-test"


@pytest.mark.timeout(300)
def test_dag_run_a_superseded_gate_holds_without_escalating_and_names_the_new_run(
    incident_dag: Any, tmp_path: Path
) -> None:
    """Issue 19: the intake started a re-evaluation run on new evidence and answers the waiting gate
    "Superseded by new evidence": the run leaves the canary as it is, pages nobody, and records which
    run decides now and why."""
    why = {"superseded_by": "incident__testbed-canary__ab12__r2", "reason": "CanaryGate5xx raised L2 -> L3"}
    intake = Responder("incident_response", SUPERSEDED_OPTION, params=why).start()
    run = incident_dag.test(
        run_conf={"target": "testbed"},
        mark_success_pattern=r"(?!decision\.|response\.superseded$).*",
    )
    intake.join()
    assert intake.error is None and [t for _, t in intake.answered] == ["decision.human_gate_ungraded"]
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states["decision.human_superseded"] == "success" and states["response.superseded"] == "success"
    for choice in ("hold", "rollback", "continue"):  # routed like hold, but hold (which pages) skipped
        assert states[f"decision.human_{choice}"] == "skipped"
    assert states["response.hold"] == "skipped"
    home = tmp_path / "home" / "artifacts" / run.run_id
    answer = json.loads((home / "decision" / "human_gate_ungraded.json").read_text())
    assert (answer["chosen"], answer["params"]) == ([SUPERSEDED_OPTION], why)
    record = json.loads((home / "response" / "superseded.json").read_text())
    assert record["status"] == "ok" and record["details"]["escalate"] is False
    assert record["summary"].startswith(
        "superseded by incident__testbed-canary__ab12__r2: CanaryGate5xx raised L2 -> L3"
    )
    assert record["details"]["decided_by"] == (
        f"human gate ungraded: {SUPERSEDED_OPTION!r} answered by oncall-test"
    )
    assert not (home / "response" / "hold.json").exists()
