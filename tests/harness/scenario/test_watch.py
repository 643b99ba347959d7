"""The scenario runner's canary watch (`scenario run --canary-watch`): started as a release would start
it, waited for until its looks run in the triggerer, stopped at the scenario's end, its verdict read."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from harness.scenario import watch
from harness.scenario.watch import WatchObservation, WatchStartError, finish_watch, start_watch

REJECTED = {
    "status": "rejected",
    "channel": "text",
    "test": "errors_5xx",
    "evidence": "canary 9/41 5xx vs stable 0/40: e=3.1e+03 >= 2,400",
    "e_value": 3100.0,
    "threshold": 2400.0,
    "looks": 7,
    "rejected_at": "2026-12-07T10:00:07+00:00",
    "intake": {"outcome": "created", "run_id": "incident__testbed-canary__x"},
}


class FakeApi:
    """The Airflow REST calls the runner makes, answered from scripted states."""

    def __init__(self, task_states: list[str], run_state: str = "running", xcom: Any = None) -> None:
        self.task_states, self.run_state, self.xcom = list(task_states), run_state, xcom
        self.triggered: list[tuple[str, str | None, dict[str, Any]]] = []
        self.patched: list[dict[str, Any]] = []

    def trigger(
        self, dag_id: str, run_id: str | None = None, conf: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.triggered.append((dag_id, run_id, conf or {}))
        return {"dag_run_id": run_id}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        state = self.task_states.pop(0) if len(self.task_states) > 1 else self.task_states[0]
        return [{"task_id": "watch_canary", "state": state}]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return {"dag_run_id": run_id, "state": self.run_state}

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        if method == "PATCH":
            self.patched.append(kw["json"])
            return httpx.Response(200, json={})
        if path.endswith("/xcomEntries/return_value") and self.xcom is not None:
            return httpx.Response(200, json={"key": "return_value", "value": self.xcom})
        return httpx.Response(404, json={"detail": "not found"})


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "POLL_S", 0.0)


def test_the_watch_is_triggered_for_the_testbed_and_returned_once_deferred() -> None:
    api = FakeApi(["queued", "running", "deferred"])
    said: list[str] = []
    w = start_watch(api, "error_burst_canary", 25.5, said.append)  # type: ignore[arg-type]
    ((dag, run_id, conf),) = api.triggered
    assert (
        dag == "triage24_canary_watch" and run_id is not None and run_id.startswith("scenario__error-burst")
    )
    assert conf == {"target": "testbed", "release": "scenario error_burst_canary", "duration_minutes": 26}
    assert w.deferred_at is not None and w.deferred_at >= w.triggered_at
    assert "deferred" in said[0]


def test_a_watch_that_fails_to_start_is_an_error_naming_its_state() -> None:
    with pytest.raises(WatchStartError, match=r"is failed after .* not deferred"):
        start_watch(FakeApi(["queued", "failed"]), "s", 5, lambda _: None)  # type: ignore[arg-type]


def test_a_watch_still_looking_at_the_end_is_stopped_as_a_success() -> None:
    api = FakeApi(["deferred"], run_state="running")
    w = WatchObservation(run_id="scenario__s-1", triggered_at=0.0)
    finish_watch(api, w, lambda _: None)  # type: ignore[arg-type]
    assert api.patched == [{"state": "success"}]
    assert w.outcome == "stopped" and w.test is None


@pytest.mark.parametrize("as_text", [False, True])
def test_a_rejection_is_read_back_with_its_evidence(as_text: bool) -> None:
    api = FakeApi(["success"], run_state="success", xcom=json.dumps(REJECTED) if as_text else REJECTED)
    w = WatchObservation(run_id="scenario__s-1", triggered_at=0.0)
    finish_watch(api, w, lambda _: None)  # type: ignore[arg-type]
    assert api.patched == []
    assert (w.outcome, w.channel, w.test, w.e_value, w.threshold, w.looks) == (
        "rejected",
        "text",
        "errors_5xx",
        3100.0,
        2400.0,
        7,
    )
    assert w.rejected_at == 1796637607.0 and w.intake["outcome"] == "created"


def test_a_watch_that_completed_or_failed_is_said_so() -> None:
    done = WatchObservation(run_id="r", triggered_at=0.0)
    finish_watch(FakeApi(["success"], "success", {"status": "completed"}), done, lambda _: None)  # type: ignore[arg-type]
    failed = WatchObservation(run_id="r", triggered_at=0.0)
    finish_watch(FakeApi(["failed"], "failed"), failed, lambda _: None)  # type: ignore[arg-type]
    assert (done.outcome, failed.outcome) == ("completed", "failed")
