"""Triage24 incident response: the 24-hour SOP for one alert group (or one manual investigation).

Triggered by the Alertmanager intake (conf = the alert group, graded L1-L4) or by hand from the
"Trigger" form (target, window, dry run). Every check's full result is written as JSON under the
artifact root, ``<root>/<run id>/<phase>/<check>.json``; XCom carries only summaries. An unreachable
dependency never fails the run: its check reports ``insufficient_evidence`` and the run goes on. A
rollback that does not recover the service is a result too: stored, paged, and phases 2 and 3 go on.
A human gate's answer is stored as it arrives, so a retried gate does not ask again.
This file only wires the SOP's phases and branches: the task callables are in
``triage24_airflow.tasks``, the work in ``diagnostics``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import TaskGroup, dag
from triage24_airflow import tasks
from triage24_airflow.gate import human_gates
from triage24_airflow.sop import SopLayout

from diagnostics.incident import task_ids as T
from diagnostics.runbooks.decision import GATE_OPTIONS, SUPERSEDED

SOP = SopLayout.load(deadline_alerts=os.environ.get("TRIAGE24_DEADLINE_ALERTS", "1") != "0")


def _group(phase: str) -> TaskGroup:
    return TaskGroup(phase, tooltip=SOP.title(phase), doc_md=SOP.title(phase))


def golden_window() -> Any:
    """Phase 1 (0-2 h): every check at once, then one ranked summary."""
    with _group(T.GOLDEN_WINDOW):
        checks = [tasks.phase1_check.override(task_id=n, doc_md=d)(n) for n, d in SOP.phase1_checks.items()]
        return tasks.phase_summary(checks)


@dataclass
class FastPath:
    rollback_now: Any
    no_fast_path: Any
    verified_now: Any


def fast_path(phase1_done: Any) -> FastPath:
    """Stop the bleeding first: phase 1 alone already rolls back -> do it now, explain later."""
    with TaskGroup(T.FAST_PATH, tooltip="Stop the bleeding first: roll back on phase-1 evidence alone"):
        gate = tasks.fast_gate()
        phase1_done >> gate
        rollback_now = tasks.rollback.override(task_id=T.in_group(T.ROLLBACK_NOW))()
        no_fast_path = EmptyOperator(
            task_id=T.in_group(T.NO_FAST_PATH), doc_md="Phase 1 alone does not roll back."
        )
        gate >> [rollback_now, no_fast_path]
        return FastPath(rollback_now, no_fast_path, tasks.verify.override(task_id="verify_now")(rollback_now))


def deep_diagnosis(opened: Any, fast: FastPath) -> Any:
    """Phase 2 (2-12 h): one task (or GPU pod) per check of runbooks/sop.yaml. It starts once the fast
    path is through: its golden probes load the services, and recovery is judged on stable's traffic."""
    with _group(T.DEEP_DIAGNOSIS):
        deep = [
            SOP.deep_pod(name, opened)
            if mode == "kubernetes"
            else tasks.deep_check.override(task_id=name)(name)
            for name, mode in SOP.deep_checks.items()
        ]
        for t in deep:
            [fast.verified_now, fast.no_fast_path] >> t
        return tasks.deep_summary(deep)


@dataclass
class Decided:
    go_rollback: Any
    go_continue: Any
    done_by_fast_path: Any
    approved: dict[str, Any]  # a human's (or the timeout's) choice -> its task


def decision(phase2_done: Any, fast: FastPath) -> Decided:
    """Rollback / continue / insufficient evidence (runbooks/decision.yaml); a human gate per grade."""
    with _group(T.DECISION):
        branch = tasks.decide()
        [phase2_done, fast.rollback_now, fast.no_fast_path] >> branch
        decided = Decided(
            EmptyOperator(task_id=T.in_group(T.GO_ROLLBACK), doc_md="Rolls back without a human."),
            EmptyOperator(task_id=T.in_group(T.GO_CONTINUE), doc_md="The canary goes on."),
            EmptyOperator(
                task_id=T.in_group(T.DONE_BY_FAST_PATH), doc_md="The fast path already rolled back."
            ),
            {  # one grade's gate answered; the other grades' gates were skipped
                choice: EmptyOperator(
                    task_id=T.in_group(T.human_choice(choice)),
                    trigger_rule="none_failed_min_one_success",
                    doc_md=f"The gate's answer (a human, the timeout, or the intake superseding): {label}",
                )
                for choice, label in GATE_OPTIONS.items()
            },
        )
        branch >> [decided.go_rollback, decided.go_continue, decided.done_by_fast_path]
        for gate in human_gates(SOP.human_gates):
            branch >> gate >> list(decided.approved.values())
        return decided


def response(decided: Decided) -> list[Any]:
    """Apply what was decided, then verify it: roll back, continue (or promote), hold, or leave it to
    the re-evaluation run that superseded this one."""
    with TaskGroup(T.RESPONSE, tooltip="Apply what was decided, then verify it"):
        rolled_back = tasks.rollback.override(task_id="rollback")()
        [decided.go_rollback, decided.approved["rollback"]] >> rolled_back
        continued = tasks.continue_release()
        [decided.go_continue, decided.approved["continue"]] >> continued
        held = tasks.hold()
        decided.approved["hold"] >> held
        superseded = tasks.superseded()
        decided.approved[SUPERSEDED] >> superseded
        return [tasks.verify.override(task_id="verify_recovery")(rolled_back), continued, held, superseded]


def verified_delivery(after: list[Any]) -> None:
    """Phase 3 (12-24 h): the regression suite, the diff report, the sealed audit bundle."""
    with _group(T.VERIFIED_DELIVERY):
        regression = tasks.regression_suite()
        after >> regression
        tasks.audit_bundle(tasks.diff_report(regression))


@dag(
    dag_id=T.DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=16,
    tags=["triage24", "incident"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=20)},
    doc_md=(__doc__ or "") + "\n\n" + SOP.doc,
    params=SOP.params(),
    render_template_as_native_obj=True,
    # Deadline Alerts for the SOP's windows: while the run is open, the triggerer calls
    # deadline_missed, which marks the phase overdue (if it is) and notifies.
    deadline=SOP.deadline_alerts("diagnostics.verified_delivery.deadlines.deadline_missed"),
)
def incident_response() -> None:
    opened = tasks.open_incident()
    phase1_done = golden_window()
    fast = fast_path(phase1_done)
    phase2_done = deep_diagnosis(opened, fast)
    decided = decision(phase2_done, fast)
    responded = response(decided)
    verified_delivery([fast.verified_now, decided.done_by_fast_path, *responded])


incident_response()
