"""Triage24 incident response: the 24-hour SOP for one alert group (or one manual investigation).

Triggered by the Alertmanager intake (conf = the alert group, graded L1-L4) or by hand from the
"Trigger" form (target, window, dry run). Every check's full result is written as JSON under the
artifact root, ``<root>/<run id>/<phase>/<check>.json``; XCom carries only summaries. An unreachable
dependency never fails the run: its check reports ``insufficient_evidence`` and the run goes on.
This file only wires the SOP's phases and branches; the work is in ``diagnostics`` and the Airflow
glue (Connections, conf + Params, the human gate) in ``triage24_airflow``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import TaskGroup, dag, get_current_context, task
from triage24_airflow import runs
from triage24_airflow.connections import secret
from triage24_airflow.gate import human_gates
from triage24_airflow.sop import SopLayout

from diagnostics.incident import task_ids as T
from diagnostics.runbooks.decision import HUMAN_OPTIONS

SOP = SopLayout.load(deadline_alerts=os.environ.get("TRIAGE24_DEADLINE_ALERTS", "1") != "0")


def _ctx() -> Any:
    return get_current_context()


def _brief(result: Any) -> dict[str, Any]:
    return {"status": result.status.value, "summary": result.summary}


@task(trigger_rule="none_failed_min_one_success")
def _rollback() -> dict[str, Any]:
    """Roll the canary back with the target's method (idempotent per incident, rate-limited, audited);
    a dry run only reads. A rollback that fails fails this task: it escalates."""
    from diagnostics.response.phase import act_and_store

    result = act_and_store(runs.incident(_ctx()), "rollback", decided_by=runs.decided_by(_ctx(), SOP.grades))
    if result.status.value == "failed":
        raise RuntimeError(f"rollback failed: {result.summary}")
    return {**_brief(result), "changed": result.changed}


@task
def _verify(action: dict[str, Any]) -> dict[str, Any]:
    """Poll health, the gateway weight and stable's metrics until recovered, or escalate."""
    from diagnostics.response.phase import verify_and_store

    incident = runs.incident(_ctx())
    if not action.get("changed") and incident.dry_run:
        return {"status": "ok", "summary": "dry run: nothing was changed, nothing to verify"}
    result = verify_and_store(incident, runs.sources(incident))
    if result.status.value != "ok":
        raise RuntimeError(f"not recovered: {result.summary}")
    return _brief(result)


@task(execution_timeout=timedelta(hours=2))
def _deep_task(check: str) -> dict[str, Any]:
    """A phase-2 check on this worker (reference models loaded once per worker process)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from diagnostics.deep_diagnosis.phase import run_and_store

    chosen = _ctx()["params"].get("deep_checks")
    if isinstance(chosen, list) and check not in chosen:
        raise AirflowSkipException(f"{check} not chosen in the trigger form (deep_checks)")
    incident = runs.incident(_ctx())
    return run_and_store(check, incident, runs.sources(incident))


@task
def _phase1_check(check: str) -> dict[str, Any]:
    """A phase-1 check; each starts with the run, not after open_incident (first evidence sooner)."""
    from diagnostics.golden_window.phase import run_and_store

    incident = runs.incident(_ctx())
    return run_and_store(check, incident, runs.sources(incident))


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
    deadline=SOP.deadline_alerts("diagnostics.verified_delivery.deadlines.deadline_missed"),
)
def incident_response() -> None:
    @task(task_id=T.OPEN_INCIDENT)
    def open_incident() -> dict[str, Any]:
        """Store the incident (target, window, grade); a bad conf fails here, naming the field."""
        import base64

        from diagnostics.golden_window.phase import store_incident

        incident = runs.incident(_ctx())
        # the check pods (kubernetes mode) rebuild the same incident from this (base64: stays a string
        # under render_template_as_native_obj)
        encoded = base64.b64encode(incident.model_dump_json().encode()).decode("ascii")
        _ctx()["ti"].xcom_push(key="incident_b64", value=encoded)
        return store_incident(incident)

    opened = open_incident()

    with TaskGroup(T.GOLDEN_WINDOW, tooltip=SOP.title(T.GOLDEN_WINDOW), doc_md=SOP.title(T.GOLDEN_WINDOW)):
        results = [
            _phase1_check.override(task_id=name, doc_md=doc)(name) for name, doc in SOP.phase1_checks.items()
        ]

        @task(trigger_rule="all_done")
        def phase_summary(briefs: list[dict[str, Any]]) -> dict[str, Any]:
            """Rank every finding of the phase; the canary gate verdict goes on to the decision."""
            from diagnostics.golden_window.phase import summarize_and_store

            return summarize_and_store(runs.incident(_ctx()), [b for b in briefs if b])

        phase1_done = phase_summary(results)

    # --- fast path: phase 1 alone already rolls back -> do it now, explain later --------------------
    with TaskGroup(T.FAST_PATH, tooltip="Stop the bleeding first: roll back on phase-1 evidence alone"):

        @task.branch(task_id=T.in_group(T.FAST_GATE))
        def fast_gate() -> str:
            """Decide on phase-1 evidence alone; an automatic rollback happens now, before phase 2."""
            from diagnostics.decision.phase import decide_and_store

            decision = decide_and_store(runs.incident(_ctx()), fast=True)
            _ctx()["ti"].xcom_push(key="brief", value=decision.summary)
            return T.ROLLBACK_NOW if decision.rolls_back_without_human else T.NO_FAST_PATH

        gate = fast_gate()
        phase1_done >> gate
        rollback_now = _rollback.override(task_id=T.in_group(T.ROLLBACK_NOW))()
        no_fast_path = EmptyOperator(
            task_id=T.in_group(T.NO_FAST_PATH), doc_md="Phase 1 alone does not roll back."
        )
        gate >> [rollback_now, no_fast_path]
        verified_now = _verify.override(task_id="verify_now")(rollback_now)

    # --- phase 2: deep diagnosis, one task (or GPU pod) per check of runbooks/sop.yaml ---------------
    # It starts once the fast path is through (a rollback applied and verified, or none needed): its
    # golden probes load the services, and recovery is judged on the stable version's own traffic.
    with TaskGroup(T.DEEP_DIAGNOSIS, tooltip=SOP.title(T.DEEP_DIAGNOSIS), doc_md=SOP.title(T.DEEP_DIAGNOSIS)):
        deep = [
            SOP.deep_pod(name, opened)
            if mode == "kubernetes"
            else _deep_task.override(task_id=name, trigger_rule="all_done")(name)
            for name, mode in SOP.deep_checks.items()
        ]
        for t in deep:
            [verified_now, no_fast_path] >> t

        @task(trigger_rule="all_done")
        def deep_summary(returned: list[Any]) -> dict[str, Any]:
            """Rank phase 2's findings; the canary's drift levels and check statuses go to the decision."""
            from diagnostics.deep_diagnosis.phase import adopt_pod_results, summarize_and_store

            incident = runs.incident(_ctx())
            adopt_pod_results(incident, [r for r in returned if r])
            return summarize_and_store(incident)

        phase2_done = deep_summary(deep)

    # --- decision: rollback / continue / insufficient evidence (runbooks/decision.yaml) -------------
    with TaskGroup(T.DECISION, tooltip=SOP.title(T.DECISION), doc_md=SOP.title(T.DECISION)):

        @task.branch(task_id=T.in_group(T.DECIDE), trigger_rule="all_done")
        def decide() -> str:
            """Bayesian canary risk + gates + phase-1 and phase-2 evidence -> the next step. Missing
            evidence asks a human; a rollback the fast path already applied is not applied again."""
            from diagnostics.decision.phase import decide_and_store, decision_markdown, fast_path_taken

            incident = runs.incident(_ctx())
            decision = decide_and_store(incident)
            _ctx()["ti"].xcom_push(key="brief", value=decision.summary)
            _ctx()["ti"].xcom_push(key="markdown", value=decision_markdown(decision))
            if fast_path_taken(incident):
                return T.DONE_BY_FAST_PATH
            if decision.needs_human:
                return T.human_gate(decision.inputs.grade.value if decision.inputs.grade else "ungraded")
            return T.GO_ROLLBACK if decision.outcome.value == "rollback" else T.GO_CONTINUE

        branch = decide()
        [phase2_done, rollback_now, no_fast_path] >> branch
        go_rollback = EmptyOperator(task_id=T.in_group(T.GO_ROLLBACK), doc_md="Rolls back without a human.")
        go_continue = EmptyOperator(task_id=T.in_group(T.GO_CONTINUE), doc_md="The canary goes on.")
        done_by_fast_path = EmptyOperator(
            task_id=T.in_group(T.DONE_BY_FAST_PATH), doc_md="The fast path already rolled back."
        )
        branch >> [go_rollback, go_continue, done_by_fast_path]
        approved = {  # one grade's gate answered; the other grades' gates were skipped
            choice: EmptyOperator(
                task_id=T.in_group(T.human_choice(choice)),
                trigger_rule="none_failed_min_one_success",
                doc_md=f"A human (or the timeout) chose: {label}",
            )
            for choice, label in HUMAN_OPTIONS.items()
        }
        for gate in human_gates(SOP.human_gates):
            branch >> gate >> list(approved.values())

    # --- the response: act, verify, or hold --------------------------------------------------------
    with TaskGroup(T.RESPONSE, tooltip="Apply what was decided, then verify it"):

        @task(trigger_rule="none_failed_min_one_success")
        def continue_release() -> dict[str, Any]:
            """The canary goes on; promoted to the next stage only when the decision says so."""
            from diagnostics.decision.phase import stored_decision
            from diagnostics.response.phase import act_and_store

            incident = runs.incident(_ctx())
            decision = stored_decision(incident)
            if decision is None or decision.promote_to is None:
                return {"status": "ok", "summary": "canary continues at its current stage"}
            by = runs.decided_by(_ctx(), SOP.grades)
            return _brief(act_and_store(incident, "promote", promote_to=decision.promote_to, decided_by=by))

        @task
        def hold() -> dict[str, Any]:
            """Keep the canary as it is and escalate (the human gate's choice, or its timeout)."""
            from diagnostics.response.phase import hold_and_store

            by = runs.decided_by(_ctx(), SOP.grades)
            return _brief(hold_and_store(runs.incident(_ctx()), decided_by=by, escalate=True))

        rolled_back = _rollback.override(task_id="rollback")()
        [go_rollback, approved["rollback"]] >> rolled_back
        verified = _verify.override(task_id="verify_recovery")(rolled_back)
        continued = continue_release()
        [go_continue, approved["continue"]] >> continued
        held = hold()
        approved["hold"] >> held

    # --- phase 3: verified delivery --------------------------------------------------------------
    with TaskGroup(
        T.VERIFIED_DELIVERY, tooltip=SOP.title(T.VERIFIED_DELIVERY), doc_md=SOP.title(T.VERIFIED_DELIVERY)
    ):

        @task(trigger_rule="all_done")
        def regression_suite() -> dict[str, Any]:
            """The golden regression suite on the version serving now (stable after a rollback, else
            the canary), against the stored baseline; kept in the regression history."""
            from diagnostics.verified_delivery.phase import regression_and_store

            return regression_and_store(runs.incident(_ctx()))

        @task(trigger_rule="all_done")
        def diff_report(regression: Any) -> dict[str, Any]:
            """Phase summary with the deadlines, then the HTML + Markdown diff report of the incident."""
            from diagnostics.verified_delivery.phase import report_and_store, summarize_and_store

            incident = runs.incident(_ctx())
            return {**_brief(summarize_and_store(incident)), **report_and_store(incident)}

        @task(trigger_rule="all_done")
        def audit_bundle(report: Any) -> dict[str, Any]:
            """PII-masked evidence, decision snapshot, manifest, hash chain, signature (key: Connection
            ``triage24_audit`` password, else TRIAGE24_AUDIT_KEY). No key fails this task."""
            from diagnostics.verified_delivery.phase import close_and_notify, seal_and_store

            incident = runs.incident(_ctx())
            info = seal_and_store(incident, *secret("triage24_audit", "TRIAGE24_AUDIT_KEY"))
            close_and_notify(incident, f"evidence sealed: bundle {info.get('bundle_digest', '')[:12]}")
            return info

        reg = regression_suite()
        [verified_now, done_by_fast_path, verified, continued, held] >> reg
        audit_bundle(diff_report(reg))


incident_response()
