"""The incident DAG's task callables: each loads the run's incident, calls one library entry point and
returns a brief for XCom (the full result is stored by the library). The DAG file only wires them."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from airflow.sdk import get_current_context, task

from diagnostics.incident import task_ids as T
from triage24_airflow import notifiers, runs
from triage24_airflow.connections import secret

notifiers.install()  # notifications find their channels' secrets in Airflow Connections first


def _ctx() -> Any:
    return get_current_context()


def _brief(result: Any) -> dict[str, Any]:
    return {"status": result.status.value, "summary": result.summary}


@task(task_id=T.OPEN_INCIDENT)
def open_incident() -> dict[str, Any]:
    """Store the incident (target, window, grade); a bad conf fails here, naming the field."""
    from diagnostics.golden_window.phase import store_incident

    incident = runs.incident(_ctx())
    # the check pods (kubernetes mode) rebuild the same incident from this (base64: stays a string
    # under render_template_as_native_obj)
    encoded = base64.b64encode(incident.model_dump_json().encode()).decode("ascii")
    _ctx()["ti"].xcom_push(key="incident_b64", value=encoded)
    return store_incident(incident)


@task
def phase1_check(check: str) -> dict[str, Any]:
    """A phase-1 check; each starts with the run, not after open_incident (first evidence sooner)."""
    from diagnostics.golden_window.phase import run_and_store

    incident = runs.incident(_ctx())
    return run_and_store(check, incident, runs.sources(incident))


@task(trigger_rule="all_done")
def phase_summary(briefs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank every finding of the phase; the canary gate verdict goes on to the decision."""
    from diagnostics.golden_window.phase import summarize_and_store

    return summarize_and_store(runs.incident(_ctx()), [b for b in briefs if b])


@task.branch(task_id=T.in_group(T.FAST_GATE))
def fast_gate() -> str:
    """Decide on phase-1 evidence alone; an automatic rollback happens now, before phase 2."""
    from diagnostics.decision.phase import decide_and_store

    decision = decide_and_store(runs.incident(_ctx()), fast=True)
    _ctx()["ti"].xcom_push(key="brief", value=decision.summary)
    return T.ROLLBACK_NOW if decision.rolls_back_without_human else T.NO_FAST_PATH


@task(trigger_rule="none_failed_min_one_success", on_failure_callback=notifiers.IncidentEscalation())
def rollback() -> dict[str, Any]:
    """Roll the canary back with the target's method (idempotent per incident, rate-limited, audited);
    a dry run only reads. A rollback that fails fails this task: it escalates (a page, once its
    retries are spent)."""
    from diagnostics.response.phase import act_and_store

    result = act_and_store(runs.incident(_ctx()), "rollback", decided_by=runs.decided_by(_ctx()))
    if result.status.value == "failed":
        raise RuntimeError(f"rollback failed: {result.summary}")
    return {**_brief(result), "changed": result.changed}


@task
def verify(action: dict[str, Any]) -> dict[str, Any]:
    """Poll health, the gateway weight and stable's metrics until recovered. Not recovered is a
    result (stored, paged, what stays bad named), not a failure: a retry would only wait the whole
    window again while phases 2 and 3, the engineer's diagnosis and report, are held up."""
    from diagnostics.response.phase import verify_and_store

    incident = runs.incident(_ctx())
    if not action.get("changed") and incident.dry_run:
        return {"status": "ok", "summary": "dry run: nothing was changed, nothing to verify"}
    result = verify_and_store(incident, runs.sources(incident))
    return {**_brief(result), "recovered": result.recovered, "verdict": result.verdict}


@task(execution_timeout=timedelta(hours=2), trigger_rule="all_done")
def deep_check(check: str) -> dict[str, Any]:
    """A phase-2 check on this worker (reference models loaded once per worker process)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from diagnostics.deep_diagnosis.phase import run_and_store

    chosen = _ctx()["params"].get("deep_checks")
    if isinstance(chosen, list) and check not in chosen:
        raise AirflowSkipException(f"{check} not chosen in the trigger form (deep_checks)")
    incident = runs.incident(_ctx())
    return run_and_store(check, incident, runs.sources(incident))


@task(trigger_rule="all_done")
def deep_summary(returned: list[Any]) -> dict[str, Any]:
    """Rank phase 2's findings; both versions' drift levels and check statuses, and whether the canary
    is worse than stable by each check's own measure, go to the decision."""
    from diagnostics.deep_diagnosis.phase import adopt_pod_results, summarize_and_store

    incident = runs.incident(_ctx())
    adopt_pod_results(incident, [r for r in returned if r])
    return summarize_and_store(incident)


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


@task(trigger_rule="none_failed_min_one_success")
def continue_release() -> dict[str, Any]:
    """The canary goes on; promoted to the next stage only when the decision says so."""
    from diagnostics.decision.phase import stored_decision
    from diagnostics.response.phase import act_and_store

    incident = runs.incident(_ctx())
    decision = stored_decision(incident)
    if decision is None or decision.promote_to is None:
        return {"status": "ok", "summary": "canary continues at its current stage"}
    if runs.superseded(_ctx()):  # a re-evaluation on newer evidence decides; never promote past it
        return {"status": "ok", "summary": "not promoted: a re-evaluation run of this incident decides now"}
    by = runs.decided_by(_ctx())
    return _brief(act_and_store(incident, "promote", promote_to=decision.promote_to, decided_by=by))


@task
def hold() -> dict[str, Any]:
    """Keep the canary as it is and escalate (the human gate's choice, or its timeout)."""
    from diagnostics.response.phase import hold_and_store

    by = runs.decided_by(_ctx())
    return _brief(hold_and_store(runs.incident(_ctx()), decided_by=by, escalate=True))


@task
def superseded() -> dict[str, Any]:
    """A re-evaluation run on newer evidence took over (the intake answered the gate so): the canary
    stays as it is here, nobody is paged; the record names the run that decides and why."""
    from diagnostics.response.phase import supersede_and_store

    found = runs.gate_answer(_ctx())
    params = (found[1].get("params") or {}) if found else {}
    result = supersede_and_store(
        runs.incident(_ctx()),
        by_run=str(params.get("superseded_by") or "") or None,
        reason=str(params.get("reason") or ""),
        decided_by=runs.decided_by(_ctx()),
    )
    return _brief(result)


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
