"""Triage24 incident response: the 24-hour SOP for one alert group (or one manual investigation).

Triggered by the Alertmanager intake (conf = the alert group, graded L1-L4) or by hand from the
"Trigger" form (target, window, dry run). Every check's full result is written as JSON under the
artifact root, ``<root>/<run id>/<phase>/<check>.json``; XCom carries only summaries. An unreachable
dependency never fails the run: its check reports ``insufficient_evidence`` and the run goes on.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import HITLBranchOperator
from airflow.sdk import (
    AsyncCallback,
    DeadlineAlert,
    DeadlineReference,
    Param,
    TaskGroup,
    dag,
    get_current_context,
    task,
)

from diagnostics.golden_window.phase import PHASE, PHASE_CHECKS
from diagnostics.runbooks import RunbookError, load_runbooks
from diagnostics.runbooks.decision import HUMAN_OPTIONS, HumanGateDefault
from diagnostics.runbooks.schemas import Phase2Execution

log = logging.getLogger(__name__)

try:  # docs and choices come from runbooks/; a broken runbook must not hide the DAG (selfcheck names it)
    _BOOKS = load_runbooks()
    _DOC = _BOOKS.markdown("sop.md")
    _TARGETS = [t.name for t in _BOOKS.targets.targets]
    _PHASE_TITLE = _BOOKS.sop.phase(PHASE).title
    _DEEP_TITLE = _BOOKS.sop.phase("deep_diagnosis").title
    _DELIVERY_TITLE = _BOOKS.sop.phase("verified_delivery").title
    # one Deadline Alert per phase with a deadline (2 h, 12 h, 24 h), measured from the run's queue time
    _DEADLINES = {p.id: p.deadline_h for p in _BOOKS.sop.phases if p.deadline_h is not None}
    # Off only where runs go through dag.test(): on Airflow 3.3 dag.test() fails to create a run of a
    # DAG with deadlines (a query of deadline_alert by a dict id); the scheduler path is unaffected.
    if os.environ.get("TRIAGE24_DEADLINE_ALERTS", "1") == "0":
        _DEADLINES = {}
    _EXECUTION = _BOOKS.targets.phase2_execution
    _DECISION_TITLE = _BOOKS.sop.phase("decision").title
    # One human gate per grade: its default choice and timeout are the grade's (decision.yaml).
    _HUMAN_GATES: dict[str, HumanGateDefault] = {
        **{g.value: d for g, d in sorted(_BOOKS.decision.human_gate.grades.items())},
        "ungraded": _BOOKS.decision.human_gate.ungraded,
    }
    from diagnostics.deep_diagnosis.phase import phase_checks

    _DEEP_CHECKS = {name: _EXECUTION.mode_of(name) for name in phase_checks(_BOOKS)}
except (RunbookError, OSError, KeyError, ValueError) as exc:
    _DOC, _TARGETS, _PHASE_TITLE = f"Runbooks could not be loaded: {exc}", ["testbed"], PHASE
    _DECISION_TITLE, _HUMAN_GATES, _DEEP_TITLE = "decision", {}, "deep_diagnosis"
    _DELIVERY_TITLE, _DEADLINES = "verified_delivery", {}
    _EXECUTION, _DEEP_CHECKS = Phase2Execution(), {}


def _connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # not defined (the usual case on the local stack): use the settings
        log.info("connection %s not used: %s", conn_id, type(exc).__name__)
        return None


def _sources(target: str) -> Any:
    """Evidence sources from the Airflow Connections ``triage24_prometheus`` and the target's log
    connection (``logs.connection_id`` in targets.yaml, default ``triage24_elasticsearch``) where they
    exist, else the local stack's settings. Credentials stay in the Connection."""
    from diagnostics.golden_window.phase import EvidenceSources

    logs = load_runbooks().targets.get(target).logs
    sources = EvidenceSources.from_settings()
    overrides: dict[str, Any] = {}
    prom = _connection("triage24_prometheus")
    if prom is not None and prom.host:  # built by hand: get_uri() would carry the password into logs
        overrides["prometheus_url"] = f"{prom.schema or 'http'}://{prom.host}:{prom.port or 9090}"
        if prom.password:
            overrides["prometheus_headers"] = {"Authorization": f"Bearer {prom.password}"}
    es = _connection(logs.connection_id) if logs.source == "elasticsearch" else None
    if es is not None and es.host:
        cfg: dict[str, Any] = {"hosts": [f"{es.schema or 'https'}://{es.host}:{es.port or 9200}"]}
        if es.extra_dejson.get("api_key"):
            cfg["api_key"] = es.extra_dejson["api_key"]
        elif es.login:
            cfg["basic_auth"] = (es.login, es.password or "")
        overrides["elasticsearch"] = cfg
    return EvidenceSources(**{**sources.__dict__, **overrides})


class HumanGate(HITLBranchOperator):
    """The standard HITL branch, plus who answered (or that the timeout chose) as XCom ``response``:
    the branch's return value is only the chosen task ids, and the response steps record who decided."""

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        user = event.get("responded_by_user") or {}
        context["ti"].xcom_push(
            key="response",
            value={
                "chosen": list(event.get("chosen_options") or []),
                "by": user.get("name") if isinstance(user, dict) else None,
                "at": str(event.get("responded_at")),
            },
        )
        return super().execute_complete(context, event)


@task(trigger_rule="none_failed_min_one_success")
def _rollback() -> dict[str, Any]:
    """Roll the canary back with the target's method (idempotent per incident, rate-limited, audited);
    a dry run only reads. A rollback that fails fails this task: it escalates."""
    from diagnostics.response.phase import act_and_store

    result = act_and_store(_incident(), "rollback", decided_by=_decided_by())
    if result.status.value == "failed":
        raise RuntimeError(f"rollback failed: {result.summary}")
    return {"status": result.status.value, "summary": result.summary, "changed": result.changed}


@task
def _verify(action: dict[str, Any]) -> dict[str, Any]:
    """Poll health, the gateway weight and stable's metrics until recovered, or escalate."""
    from diagnostics.response.phase import verify_and_store

    if not action.get("changed") and _incident().dry_run:
        return {"status": "ok", "summary": "dry run: nothing was changed, nothing to verify"}
    incident = _incident()
    result = verify_and_store(incident, _sources(incident.target))
    if result.status.value != "ok":
        raise RuntimeError(f"not recovered: {result.summary}")
    return {"status": result.status.value, "summary": result.summary}


@task(execution_timeout=timedelta(hours=2))
def _deep_task(check: str) -> dict[str, Any]:
    """A phase-2 check on this worker (reference models loaded once per worker process)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from diagnostics.deep_diagnosis.phase import run_and_store

    chosen = get_current_context()["params"].get("deep_checks")
    if isinstance(chosen, list) and check not in chosen:
        raise AirflowSkipException(f"{check} not chosen in the trigger form (deep_checks)")
    incident = _incident()
    return run_and_store(check, incident, _sources(incident.target))


def _deep_pod(check: str, opened: Any) -> Any:
    """A phase-2 check as a KubernetesPodOperator pod on a GPU node (runbooks/targets.yaml
    ``phase2_execution.kubernetes``): ``python -m diagnostics check <name>``; the full result comes back
    through XCom (/airflow/xcom/return.json) and the phase summary stores it."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from diagnostics.deep_diagnosis.kubernetes import pod_operator_kwargs
    from diagnostics.deep_diagnosis.registry import resolve

    assert _EXECUTION.kubernetes is not None  # the schema requires it in kubernetes mode
    op = KubernetesPodOperator(
        **pod_operator_kwargs(
            check,
            _EXECUTION.kubernetes,
            incident_b64="{{ ti.xcom_pull(task_ids='open_incident', key='incident_b64') }}",
            gpu=resolve(check).gpu,
        )
    )
    opened >> op
    return op.output


def _incident() -> Any:
    """The run's incident. Each task parses the conf itself (no hand-off task to wait for, so the first
    evidence is one task start away); the window ends at the run's start for all of them."""
    from diagnostics.golden_window.phase import open_incident

    ctx = get_current_context()
    run = ctx["dag_run"]
    conf = {**(run.conf or {}), **{k: ctx["params"][k] for k in ("window_minutes", "dry_run")}}
    conf["target"] = conf.get("target") or ctx["params"]["target"]
    return open_incident(run.run_id, conf, now=run.start_date or run.queued_at)


@dag(
    dag_id="incident_response",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=16,
    tags=["triage24", "incident"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=20)},
    doc_md=(__doc__ or "") + "\n\n" + _DOC,
    params={
        "target": Param(
            _TARGETS[0],
            type="string",
            title="Target service",
            description="The watched service (runbooks/targets.yaml). An alert's `target` label sets it.",
            examples=_TARGETS,
        ),
        "window_minutes": Param(
            15,
            type="number",
            minimum=1,
            maximum=120,
            title="Alert window (minutes)",
            description="How far back phase 1 reads metrics and logs; it always covers the alert's start.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Collect evidence and decide, but change nothing (no rollback).",
        ),
        "deep_checks": Param(
            list(_DEEP_CHECKS),
            type="array",
            items={"type": "string", "enum": list(_DEEP_CHECKS)},
            title="Phase-2 checks",
            description="Which deep-diagnosis checks to run (runbooks/sop.yaml). A check left out is "
            "recorded as not measured: it never counts as a pass.",
        ),
    },
    render_template_as_native_obj=True,
    # Deadline Alerts for the SOP's windows: when the run is still open, the triggerer calls
    # diagnostics.verified_delivery.deadlines.deadline_missed, which marks the phase overdue (if it
    # is) and notifies.
    deadline=[
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(hours=hours),
            callback=AsyncCallback(
                "diagnostics.verified_delivery.deadlines.deadline_missed", kwargs={"phase": phase}
            ),
            name=f"{phase}_deadline",
        )
        for phase, hours in _DEADLINES.items()
    ],
)
def incident_response() -> None:
    @task
    def open_incident() -> dict[str, Any]:
        """Store the incident (target, window, grade); a bad conf fails here, naming the field."""
        import base64

        from diagnostics.golden_window.phase import store_incident

        incident = _incident()
        # the check pods (kubernetes mode) rebuild the same incident from this (base64: stays a string
        # under render_template_as_native_obj)
        encoded = base64.b64encode(incident.model_dump_json().encode()).decode("ascii")
        get_current_context()["ti"].xcom_push(key="incident_b64", value=encoded)
        return store_incident(incident)

    opened = open_incident()

    with TaskGroup("golden_window", tooltip=_PHASE_TITLE, doc_md=_PHASE_TITLE):
        results = []
        for name in PHASE_CHECKS:

            @task(task_id=name, doc_md=PHASE_CHECKS[name].__doc__)
            def run_check(check: str = name) -> dict[str, Any]:
                from diagnostics.golden_window.phase import run_and_store

                incident = _incident()
                return run_and_store(check, incident, _sources(incident.target))

            results.append(run_check())

        @task(trigger_rule="all_done")
        def phase_summary(briefs: list[dict[str, Any]]) -> dict[str, Any]:
            """Rank every finding of the phase; the canary gate verdict goes on to the decision."""
            from diagnostics.golden_window.phase import summarize_and_store

            return summarize_and_store(_incident(), [b for b in briefs if b])

        phase1_done = phase_summary(results)

    # --- fast path: phase 1 alone already rolls back -> do it now, explain later --------------------
    with TaskGroup("fast_path", tooltip="Stop the bleeding first: roll back on phase-1 evidence alone"):

        @task.branch
        def fast_gate() -> str:
            """Decide on phase-1 evidence alone; an automatic rollback happens now, before phase 2."""
            from diagnostics.response.phase import decide_and_store, takes_fast_path

            decision = decide_and_store(_incident(), fast=True)
            get_current_context()["ti"].xcom_push(key="brief", value=decision.summary)
            return "fast_path.rollback_now" if takes_fast_path(decision) else "fast_path.no_fast_path"

        gate = fast_gate()
        phase1_done >> gate
        rollback_now = _rollback.override(task_id="rollback_now")()
        no_fast_path = EmptyOperator(task_id="no_fast_path", doc_md="Phase 1 alone does not roll back.")
        gate >> [rollback_now, no_fast_path]
        verified_now = _verify.override(task_id="verify_now")(rollback_now)

    # --- phase 2: deep diagnosis, one task (or GPU pod) per check of runbooks/sop.yaml ---------------
    # It starts once the fast path is through (a rollback applied and verified, or none needed): its
    # golden probes load the services, and recovery is judged on the stable version's own traffic.
    with TaskGroup("deep_diagnosis", tooltip=_DEEP_TITLE, doc_md=_DEEP_TITLE):
        deep = [
            _deep_pod(name, opened)
            if mode == "kubernetes"
            else _deep_task.override(task_id=name, trigger_rule="all_done")(name)
            for name, mode in _DEEP_CHECKS.items()
        ]
        for t in deep:
            [verified_now, no_fast_path] >> t

        @task(trigger_rule="all_done")
        def deep_summary(returned: list[Any]) -> dict[str, Any]:
            """Rank phase 2's findings; the canary's drift levels and check statuses go to the decision."""
            from diagnostics.deep_diagnosis.phase import adopt_pod_results, summarize_and_store

            adopt_pod_results(_incident(), [r for r in returned if r])
            return summarize_and_store(_incident())

        phase2_done = deep_summary(deep)

    # --- decision: rollback / continue / insufficient evidence (runbooks/decision.yaml) -------------
    with TaskGroup("decision", tooltip=_DECISION_TITLE, doc_md=_DECISION_TITLE):

        @task.branch(trigger_rule="all_done")
        def decide() -> str:
            """Bayesian canary risk + gates + phase-1 and phase-2 evidence -> the next step. Missing
            evidence asks a human; a rollback the fast path already applied is not applied again."""
            from diagnostics.response.phase import decide_and_store, decision_markdown, fast_path_taken

            incident = _incident()
            decision = decide_and_store(incident)
            ti = get_current_context()["ti"]
            ti.xcom_push(key="brief", value=decision.summary)
            ti.xcom_push(key="markdown", value=decision_markdown(decision))
            if fast_path_taken(incident):
                return "decision.done_by_fast_path"
            if decision.needs_human:
                grade = decision.inputs.grade.value if decision.inputs.grade else "ungraded"
                return f"decision.human_gate_{grade}"
            return "decision.go_rollback" if decision.outcome.value == "rollback" else "decision.go_continue"

        branch = decide()
        [phase2_done, rollback_now, no_fast_path] >> branch
        go_rollback = EmptyOperator(task_id="go_rollback", doc_md="The decision rolls back without a human.")
        go_continue = EmptyOperator(task_id="go_continue", doc_md="The decision lets the canary go on.")
        done_by_fast_path = EmptyOperator(
            task_id="done_by_fast_path",
            doc_md="The fast path already rolled back; recorded, nothing to apply.",
        )
        branch >> [go_rollback, go_continue, done_by_fast_path]
        approved = {
            # one grade's gate answered; the other grades' gates were skipped
            choice: EmptyOperator(
                task_id=f"human_{choice}",
                trigger_rule="none_failed_min_one_success",
                doc_md=f"A human (or the timeout) chose: {label}",
            )
            for choice, label in HUMAN_OPTIONS.items()
        }
        for grade, default in _HUMAN_GATES.items():
            gate = HumanGate(
                task_id=f"human_gate_{grade}",
                subject=f"Incident {{{{ run_id }}}}: the canary decision needs you ({grade})",
                body="{{ ti.xcom_pull(task_ids='decision.decide', key='markdown') }}",
                options=list(HUMAN_OPTIONS.values()),
                defaults=HUMAN_OPTIONS[default.choice.value],
                options_mapping={label: f"decision.human_{c}" for c, label in HUMAN_OPTIONS.items()},
                response_timeout=timedelta(seconds=default.timeout_s),
                doc_md=f"{grade}: nobody answering within {default.timeout_s:g} s means "
                f"'{HUMAN_OPTIONS[default.choice.value]}'.",
            )
            branch >> gate >> list(approved.values())

    # --- the response: act, verify, or hold --------------------------------------------------------
    with TaskGroup("response", tooltip="Apply what was decided, then verify it"):

        @task(trigger_rule="none_failed_min_one_success")
        def continue_release() -> dict[str, Any]:
            """The canary goes on; promoted to the next stage only when the decision says so."""
            from diagnostics.config import Settings
            from diagnostics.incident.store import read_result
            from diagnostics.response.phase import DECISION_PHASE, act_and_store

            incident = _incident()
            decision = read_result(Settings().artifacts, incident.incident_id, DECISION_PHASE, "decision")
            promote_to = decision.get("promote_to")
            if promote_to is None:
                return {"status": "ok", "summary": "canary continues at its current stage"}
            result = act_and_store(incident, "promote", promote_to=promote_to, decided_by=_decided_by())
            return {"status": result.status.value, "summary": result.summary}

        @task
        def hold() -> dict[str, Any]:
            """Keep the canary as it is and escalate (the human gate's choice, or its timeout)."""
            from diagnostics.response.phase import hold_and_store

            result = hold_and_store(_incident(), decided_by=_decided_by(), escalate=True)
            return {"status": result.status.value, "summary": result.summary}

        rolled_back = _rollback.override(task_id="rollback")()
        [go_rollback, approved["rollback"]] >> rolled_back
        verified = _verify.override(task_id="verify_recovery")(rolled_back)
        continued = continue_release()
        [go_continue, approved["continue"]] >> continued
        held = hold()
        approved["hold"] >> held

    # --- phase 3: verified delivery --------------------------------------------------------------
    with TaskGroup("verified_delivery", tooltip=_DELIVERY_TITLE, doc_md=_DELIVERY_TITLE):

        @task(trigger_rule="all_done")
        def regression_suite() -> dict[str, Any]:
            """The golden regression suite on the version serving now (stable after a rollback, else
            the canary), against the stored baseline; kept in the regression history."""
            from diagnostics.verified_delivery.phase import regression_and_store

            return regression_and_store(_incident())

        @task(trigger_rule="all_done")
        def diff_report(regression: Any) -> dict[str, Any]:
            """Phase summary with the deadlines, then the HTML + Markdown diff report of the incident."""
            from diagnostics.verified_delivery.phase import report_and_store, summarize_and_store

            summary = summarize_and_store(_incident())
            return {
                "summary": summary.summary,
                "status": summary.status.value,
                **report_and_store(_incident()),
            }

        @task(trigger_rule="all_done")
        def audit_bundle(report: Any) -> dict[str, Any]:
            """PII-masked evidence, decision snapshot, manifest, hash chain, signature (key: Connection
            ``triage24_audit`` password, else TRIAGE24_AUDIT_KEY). No key fails this task."""
            import os

            from diagnostics.verified_delivery.phase import close_and_notify, seal_and_store

            conn = _connection("triage24_audit")
            if conn is not None and conn.password:
                secret, source = conn.password, "Connection triage24_audit"
            else:
                secret, source = os.environ.get("TRIAGE24_AUDIT_KEY"), "TRIAGE24_AUDIT_KEY"
            info = seal_and_store(_incident(), secret, source)
            close_and_notify(_incident(), f"evidence sealed: bundle {info.get('bundle_digest', '')[:12]}")
            return info

        reg = regression_suite()
        [verified_now, done_by_fast_path, verified, continued, held] >> reg
        audit_bundle(diff_report(reg))


def _decided_by() -> str:
    """Who chose the step now running: the decision itself, or the human gate (who, or the timeout)."""
    ti = get_current_context()["ti"]
    for grade in _HUMAN_GATES:
        answer = ti.xcom_pull(task_ids=f"decision.human_gate_{grade}", key="response")
        if isinstance(answer, dict):
            who = answer.get("by")
            chosen = ", ".join(answer.get("chosen") or [])
            by = f"answered by {who}" if who else "by the timeout default"
            return f"human gate {grade}: {chosen!r} {by}"
    return "decision"


incident_response()
