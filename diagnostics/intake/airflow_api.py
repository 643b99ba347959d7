"""A small client of Airflow 3's REST API (v2), used by the CLI and the tests over loopback."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowApiError(RuntimeError):
    pass


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._token: str | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AirflowApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def token(self) -> str:
        if self._token is None:
            resp = self._client.post(
                "/auth/token", json={"username": self._username, "password": self._password}
            )
            if resp.status_code != 201:
                raise AirflowApiError(f"login as {self._username!r} failed: HTTP {resp.status_code}")
            self._token = str(resp.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return self._client.request(method, f"/api/v2{path}", headers=headers, **kwargs)

    def _json(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        if resp.status_code >= 400:
            raise AirflowApiError(f"{what}: HTTP {resp.status_code}: {resp.text[:300]}")
        data: dict[str, Any] = resp.json()
        return data

    def wait_for_dag(self, dag_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id`` (a fresh stack needs a few seconds)."""
        deadline = time.monotonic() + timeout_s
        while True:
            resp = self.request("GET", f"/dags/{dag_id}")
            if resp.status_code == 200:
                return self._json(resp, f"get DAG {dag_id}")
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"DAG {dag_id} was not parsed within {timeout_s:.0f} s (HTTP {resp.status_code})"
                )
            time.sleep(1.0)

    def trigger(
        self, dag_id: str, run_id: str | None = None, conf: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        # Airflow 3 wants logical_date explicitly (null: "now") and rejects unknown keys.
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self._json(self.request("POST", f"/dags/{dag_id}/dagRuns", json=body), f"trigger {dag_id}")

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._json(self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}"), f"get run {run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        data = self._json(
            self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"),
            f"task instances of {run_id}",
        )
        return list(data["task_instances"])

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        timeout_s: float = 300.0,
        on_change: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] != last and on_change:
                on_change(str(run["state"]))
            last = run["state"]
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(f"run {run_id} still {run['state']} after {timeout_s:.0f} s")
            time.sleep(1.0)
