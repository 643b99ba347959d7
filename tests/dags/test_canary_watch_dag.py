"""The canary watch DAG and its deferrable operator: the DAG parses with its form; ``execute`` defers
to the trigger with the run's target and deadline (no token in the kwargs); a checkpoint defers again
with the state it carries; a rejection is posted to the intake's webhook - a real HTTP server here -
with the bearer token, as the Alertmanager body the intake grades."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from diagnostics.canary_watch.alert import Rejection, alert_payload
from tests.conftest import REPO
from tests.diagnostics.canary_watch.test_alert import rejection
from tests.support.http import Canned, canned_server

INTAKE = "/triage24/intake/alertmanager"


@pytest.fixture(scope="module")
def operator_module() -> Any:
    from triage24_airflow import canary_watch

    return canary_watch


def test_the_canary_watch_dag_parses_into_one_deferrable_task() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "triage24_canary_watch.py"))
    assert bag.import_errors == {}
    dag = bag.dags["triage24_canary_watch"]
    assert [t.task_id for t in dag.tasks] == ["watch_canary"]
    assert type(dag.tasks[0]).__name__ == "CanaryWatchOperator" and dag.tasks[0].retries >= 1
    assert type(dag.timetable).__name__ == "NullTimetable"  # by hand or by a release's conf only
    params = dag.params.dump()
    assert (params["target"], params["release"], params["duration_minutes"]) == ("testbed", "", 120)


def _context(**params: Any) -> dict[str, Any]:
    start = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    return {"params": {"target": "testbed", **params}, "dag_run": SimpleNamespace(start_date=start)}


def test_execute_defers_a_watch_of_the_runs_target_until_its_deadline(
    operator_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE24_PROMETHEUS_URL", "http://prometheus.example:9090")
    op = operator_module.CanaryWatchOperator(task_id="watch_canary")
    with pytest.raises(TaskDeferred) as info:
        op.execute(_context(release="v2.4.1", duration_minutes=30))
    deferred = info.value
    assert deferred.method_name == "on_event"
    classpath, kw = deferred.trigger.serialize()
    assert classpath == "triage24_triggers.CanaryWatchTrigger"
    assert (kw["spec"]["target"], kw["spec"]["release"]) == ("testbed", "v2.4.1")
    assert kw["deadline"] == "2026-11-22T03:30:00+00:00" and kw["state"] is None
    assert kw["prometheus_url"] == "http://prometheus.example:9090"
    assert kw["prometheus_conn_id"] == "triage24_prometheus" and "password" not in json.dumps(kw)


def test_a_checkpoint_defers_again_with_the_state_it_carries(operator_module: Any) -> None:
    deadline = (datetime.now(UTC) + timedelta(minutes=60)).isoformat()
    resume = {
        "spec": {"target": "testbed"},
        "deadline": deadline,
        "prometheus_url": "http://p:9090",
        "state": {"text/errors": {"lr": ""}},
    }
    op = operator_module.CanaryWatchOperator(task_id="watch_canary")
    with pytest.raises(TaskDeferred) as info:
        op.on_event({}, {"status": "checkpoint", "looks": 120, "resume": resume})
    assert info.value.trigger.state == {"text/errors": {"lr": ""}}
    assert info.value.trigger.deadline == deadline
    assert timedelta(minutes=64) < info.value.timeout <= timedelta(minutes=65)  # the deadline + 5 min


def test_a_rejection_is_posted_to_the_intake_with_the_bearer_token(
    operator_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rejection()
    answer = {
        "outcome": "created",
        "run_id": "incident__testbed__abc",
        "grade": "L3",
        "rule": "canary_gate_breach",
    }
    with canned_server({("POST", INTAKE): Canned(200, answer)}) as intake:
        host, port = intake.url.split("://")[1].split(":")
        monkeypatch.setenv("TRIAGE24_HOST", host)
        monkeypatch.setenv("TRIAGE24_AIRFLOW_PORT", port.rstrip("/"))
        monkeypatch.setenv("TRIAGE24_WEBHOOK_TOKEN", "hook-token")
        op = operator_module.CanaryWatchOperator(task_id="watch_canary")
        out = op.on_event({}, r.event())
    (req,) = intake.requests
    assert (req.method, req.path) == ("POST", INTAKE)
    assert req.headers["Authorization"] == "Bearer hook-token"
    assert json.loads(req.body) == alert_payload(r)
    assert out["intake"]["outcome"] == "created" and out["intake"]["run_id"] == "incident__testbed__abc"
    assert (out["status"], out["test"], out["channel"]) == ("rejected", "errors_5xx", "text")
    assert Rejection.model_validate({k: v for k, v in r.event().items() if k != "status"}) == r


def test_a_refused_delivery_is_retried_then_fails_the_task(
    operator_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operator_module.time, "sleep", lambda s: None)
    with canned_server({("POST", INTAKE): Canned(503, {"detail": "journal busy"})}) as intake:
        host, port = intake.url.split("://")[1].split(":")
        monkeypatch.setenv("TRIAGE24_HOST", host)
        monkeypatch.setenv("TRIAGE24_AIRFLOW_PORT", port.rstrip("/"))
        monkeypatch.setenv("TRIAGE24_WEBHOOK_TOKEN", "hook-token")
        op = operator_module.CanaryWatchOperator(task_id="watch_canary")
        with pytest.raises(RuntimeError, match="answered HTTP 503"):
            op.on_event({}, rejection().event())
    assert len(intake.requests) == 3


def test_an_unknown_event_fails_loudly(operator_module: Any) -> None:
    with pytest.raises(ValueError, match="unexpected trigger event"):
        operator_module.CanaryWatchOperator(task_id="watch_canary").on_event({}, {"status": "what"})
