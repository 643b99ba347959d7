"""Where incident runs are created: the interface the intake needs, and its REST implementation.

Two implementations exist: the Airflow plugin's (``plugins/triage24_plugin.py``: direct
metadata-DB calls inside the api-server) and :class:`RestRunBackend` here (Airflow's REST API over
HTTP, used by the ``triage24 intake`` commands). Any failure to reach Airflow, a missing DAG, or a
refused conf raises :class:`BackendUnavailable`: the delivery stays pending in the journal and is
replayed later; it is never dropped.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from diagnostics.intake.airflow_api import AirflowApi, AirflowApiError

NOTE_MAX_CHARS = 1000  # Airflow's dag_run_note.content is String(1000)
TERMINAL_STATES = frozenset({"success", "failed"})


class BackendUnavailable(RuntimeError):
    """Airflow cannot create or read the run now (DB or API down, DAG not loaded, conf refused)."""


class RunBackend(Protocol):
    def create_run(self, dag_id: str, run_id: str, conf: dict[str, Any], note: str) -> bool:
        """Create the run; False when a run with this id already exists (nothing is changed)."""

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        """The run's state (queued, running, success, failed), or None when there is no such run."""

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        """Replace the run's note (Markdown, at most 1000 characters)."""

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None] | None:
        """Each task's state in the run (None: not scheduled yet); None when there is no such run."""

    def answer_gate(
        self, dag_id: str, run_id: str, task_id: str, option: str, params: dict[str, Any]
    ) -> bool:
        """Answer a human-in-the-loop task as the HITL REST API does (``PATCH .../hitlDetails``); False
        when it waits no longer (answered by a human or its timeout, or cleared)."""

    def ping(self, dag_id: str) -> str:
        """A one-line description when Airflow is reachable and ``dag_id`` is loaded; else
        BackendUnavailable saying which is not."""


class RestRunBackend:
    """Runs through Airflow's REST API (v2), as a user with permission to trigger the incident DAG."""

    def __init__(self, base_url: str, username: str, password: str, timeout_s: float = 10.0) -> None:
        self.api = AirflowApi(base_url, username, password, timeout_s=timeout_s)

    def close(self) -> None:
        self.api.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.api.request(method, path, **kwargs)
        except (httpx.HTTPError, AirflowApiError) as exc:
            raise BackendUnavailable(f"Airflow API at {self.api.base_url} unreachable: {exc}") from None

    def create_run(self, dag_id: str, run_id: str, conf: dict[str, Any], note: str) -> bool:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf, "note": note[:NOTE_MAX_CHARS]}
        resp = self._request("POST", f"/dags/{dag_id}/dagRuns", json=body)
        if resp.status_code == 409:
            return False
        if resp.status_code == 404:
            raise BackendUnavailable(f"DAG {dag_id!r} is not loaded in Airflow (HTTP 404)")
        if resp.status_code >= 400:
            raise BackendUnavailable(f"creating run {run_id}: HTTP {resp.status_code}: {resp.text[:300]}")
        return True

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        resp = self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise BackendUnavailable(f"reading run {run_id}: HTTP {resp.status_code}")
        return str(resp.json()["state"])

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        resp = self._request(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{run_id}",
            params={"update_mask": "note"},
            json={"note": note[:NOTE_MAX_CHARS]},
        )
        if resp.status_code >= 400:
            raise BackendUnavailable(f"setting the note of run {run_id}: HTTP {resp.status_code}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None] | None:
        # limit 100: Airflow's default maximum page; the incident DAG has fewer unmapped tasks
        resp = self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise BackendUnavailable(f"reading the tasks of run {run_id}: HTTP {resp.status_code}")
        return {
            str(t["task_id"]): t.get("state")
            for t in resp.json().get("task_instances", [])
            if t.get("map_index", -1) == -1
        }

    def answer_gate(
        self, dag_id: str, run_id: str, task_id: str, option: str, params: dict[str, Any]
    ) -> bool:
        resp = self._request(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
            json={"chosen_options": [option], "params_input": params},
        )
        if resp.status_code in (404, 409):  # no longer waiting: answered, timed out or cleared
            return False
        if resp.status_code >= 400:
            raise BackendUnavailable(
                f"answering {task_id} of run {run_id}: HTTP {resp.status_code}: {resp.text[:300]}"
            )
        return True

    def ping(self, dag_id: str) -> str:
        resp = self._request("GET", f"/dags/{dag_id}")
        if resp.status_code == 404:
            raise BackendUnavailable(f"DAG {dag_id!r} is not loaded in Airflow")
        if resp.status_code != 200:
            raise BackendUnavailable(f"Airflow API: HTTP {resp.status_code}")
        return f"Airflow REST API at {self.api.base_url}; DAG {dag_id} loaded"
