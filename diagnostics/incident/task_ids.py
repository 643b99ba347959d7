"""The incident DAG's task ids: one definition for the DAG that creates the tasks and for the UI and the
harness that read their states (plain strings: no Airflow import)."""

from __future__ import annotations

DAG_ID = "incident_response"

OPEN_INCIDENT = "open_incident"

# TaskGroups, named like the SOP phases of runbooks/sop.yaml where they are one
GOLDEN_WINDOW = "golden_window"
FAST_PATH = "fast_path"
DEEP_DIAGNOSIS = "deep_diagnosis"
DECISION = "decision"
RESPONSE = "response"
VERIFIED_DELIVERY = "verified_delivery"

FAST_GATE = f"{FAST_PATH}.fast_gate"
ROLLBACK_NOW = f"{FAST_PATH}.rollback_now"
NO_FAST_PATH = f"{FAST_PATH}.no_fast_path"
DECIDE = f"{DECISION}.decide"
GO_ROLLBACK = f"{DECISION}.go_rollback"
GO_CONTINUE = f"{DECISION}.go_continue"
DONE_BY_FAST_PATH = f"{DECISION}.done_by_fast_path"
HUMAN_GATE_PREFIX = f"{DECISION}.human_gate_"


def in_group(task_id: str) -> str:
    """The task's id inside its TaskGroup (what ``@task(task_id=...)`` takes)."""
    return task_id.split(".", 1)[-1]


def human_gate(grade: str) -> str:
    """The human gate of one grade (L1-L4, or ``ungraded``)."""
    return f"{HUMAN_GATE_PREFIX}{grade}"


def human_choice(choice: str) -> str:
    """The empty task a gate's answer (rollback / continue / hold) leads to."""
    return f"{DECISION}.human_{choice}"
