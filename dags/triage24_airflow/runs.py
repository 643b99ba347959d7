"""A DAG run, as the library sees it: the runbooks (loaded once per process), the incident from the
run's conf merged with the trigger form's Params, the evidence sources, who decided a step."""

from __future__ import annotations

from typing import Any

from diagnostics.golden_window.phase import EvidenceSources, open_incident
from diagnostics.incident import task_ids
from diagnostics.incident.model import Incident
from diagnostics.intake.reevaluate import later_run_ids
from diagnostics.runbooks import Runbooks, load_runbooks
from triage24_airflow.connections import evidence_sources

# What the trigger form (Params) adds to the conf the intake wrote; the form's target is the default.
FORM_KEYS = ("window_minutes", "dry_run")


def books() -> Runbooks:
    """The runbooks: read and validated once per process while their files and the environment stay
    the same (load_runbooks keeps the load), so a changed runbook is seen at the next parse."""
    return load_runbooks()


def merged_conf(conf: dict[str, Any] | None, params: dict[str, Any]) -> dict[str, Any]:
    """The run's conf with the form's Params over it (the form wins for the window and the dry run)."""
    merged = {**(conf or {}), **{k: params[k] for k in FORM_KEYS if k in params}}
    merged["target"] = merged.get("target") or params.get("target")
    return merged


def incident(context: Any) -> Incident:
    """The run's incident. Each task parses the conf itself (no hand-off task to wait for, so the first
    evidence is one task start away); the window ends at the run's start for all of them."""
    run = context["dag_run"]
    conf = merged_conf(run.conf, context["params"])
    return open_incident(run.run_id, conf, now=run.start_date or run.queued_at, books=books())


def sources(inc: Incident) -> EvidenceSources:
    return evidence_sources(books(), inc.target)


def grades() -> list[str]:
    """The human gates' grades (decision.yaml ``human_gate``), and ``ungraded``."""
    gate = books().decision.human_gate
    return [g.value for g in sorted(gate.grades)] + ["ungraded"]


def gate_answer(context: Any) -> tuple[str, dict[str, Any]] | None:
    """The human gate that answered in this run: (its grade, its answer), None when none did."""
    ti = context["ti"]
    for grade in grades():
        answer = ti.xcom_pull(task_ids=task_ids.human_gate(grade), key="response")
        if isinstance(answer, dict):
            return grade, answer
    return None


def decided_by(context: Any) -> str:
    """Who chose the step now running: the decision itself, or the human gate (who, or the timeout)."""
    found = gate_answer(context)
    if found is None:
        return "decision"
    grade, answer = found
    who = answer.get("by")
    chosen = ", ".join(answer.get("chosen") or [])
    by = f"answered by {who}" if who else "by the timeout default"
    return f"human gate {grade}: {chosen!r} {by}"


def superseded(context: Any) -> bool:
    """Whether a re-evaluation run of this run's incident exists (the intake started one on new
    evidence): then this run must not move the canary forward any more. An unanswerable question
    counts as superseded: a promotion needs certainty, a missed one only waits for the next run."""
    run = context["dag_run"]
    if not (run.conf or {}).get("schema"):
        return False  # a manual investigation is never re-evaluated by the intake
    try:
        count = context["ti"].get_dr_count(dag_id=run.dag_id, run_ids=later_run_ids(run.run_id))
    except Exception:  # the execution API unreachable: see above
        return True
    return bool(count)
