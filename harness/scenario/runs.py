"""The scenario runner's incident runs in Airflow: listing them, answering their human gate, failing them."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx

from diagnostics.incident import task_ids
from diagnostics.intake.airflow_api import TERMINAL_RUN_STATES, AirflowApi, AirflowApiError
from diagnostics.runbooks.decision import HUMAN_OPTIONS
from harness.scenario.control import Say
from harness.scenario.schema import Scenario

DAG_ID = task_ids.DAG_ID
REGRESSION_DAG_ID = "triage24_regression"


@dataclass
class Tracked:
    """An incident run the scenario follows, with what the runner did to it."""

    run_id: str
    kind: Literal["alert", "manual"]
    run: dict[str, Any]
    asked_at: float | None = None
    answered: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return str(self.run.get("state")) in TERMINAL_RUN_STATES


def incident_runs(api: AirflowApi, since: float) -> list[dict[str, Any]]:
    """The alert-driven incident runs queued at or after ``since`` (newest first, at most 50)."""
    resp = api.request(
        "GET",
        f"/dags/{DAG_ID}/dagRuns",
        params={"order_by": "-id", "limit": 50, "run_id_prefix_pattern": "incident__"},
    )
    if resp.status_code != 200:
        raise AirflowApiError(f"list runs of {DAG_ID}: HTTP {resp.status_code}: {resp.text[:200]}")
    out = []
    for run in resp.json().get("dag_runs", []):
        queued = run.get("queued_at") or run.get("run_after")
        if queued and datetime.fromisoformat(str(queued).replace("Z", "+00:00")).timestamp() >= since - 1:
            out.append(dict(run))
    return out


def answer_human(api: AirflowApi, tr: Tracked, sc: Scenario, say: Say) -> None:
    """Answer the run's human gate as the scenario's on-call engineer does."""
    if tr.answered is not None or sc.human.answer == "none":
        return
    resp = api.request("GET", f"/dags/{DAG_ID}/dagRuns/{tr.run_id}/taskInstances")
    if resp.status_code != 200:
        return
    waiting = [t for t in resp.json().get("task_instances", []) if t.get("state") == "awaiting_input"]
    if not waiting:
        return
    now = time.time()
    if tr.asked_at is None:
        tr.asked_at = now
        say(f"{tr.run_id} asks a human ({waiting[0]['task_id']}); answering {sc.human.answer!r}")
    # An answer within the ~0.2 s the worker needs to park the task was seen to be lost (Airflow 3.3).
    if now - tr.asked_at < max(sc.human.after_s, 2.0):
        return
    option = HUMAN_OPTIONS[sc.human.answer]
    task_id = waiting[0]["task_id"]
    answer = api.request(
        "PATCH",
        f"/dags/{DAG_ID}/dagRuns/{tr.run_id}/taskInstances/{task_id}/-1/hitlDetails",
        json={"chosen_options": [option]},
    )
    if answer.status_code == 200:
        tr.answered = sc.human.answer
        tr.notes.append(f"human gate {task_id} answered {option!r} {now - tr.asked_at:.0f} s after it asked")
    else:
        tr.notes.append(f"answering {task_id} failed: HTTP {answer.status_code} {answer.text[:200]}")
        tr.answered = f"failed ({answer.status_code})"


def give_up(api: AirflowApi, tr: Tracked, say: Say, when: str = "at the scenario's timeout") -> None:
    """Mark an unfinished run failed, so its alert group's next incident can open."""
    resp = api.request("PATCH", f"/dags/{DAG_ID}/dagRuns/{tr.run_id}", json={"state": "failed"})
    tr.notes.append(
        f"still {tr.run.get('state')} {when}: the runner marked it failed (HTTP {resp.status_code})"
    )
    say(f"{tr.run_id} still {tr.run.get('state')} {when}: marked failed")
    with contextlib.suppress(AirflowApiError, httpx.HTTPError):
        tr.run = api.run(DAG_ID, tr.run_id)


__all__ = ["DAG_ID", "REGRESSION_DAG_ID", "Tracked", "answer_human", "give_up", "incident_runs"]
