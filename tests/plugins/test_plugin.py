"""The Triage24 Airflow plugin in-process, on a real Airflow metadata DB: Airflow mounts the intake
(and does not protect it: the intake does), runs are created with conf and note, a missing DAG keeps
deliveries pending until the reconciler replays them, and the token comes from a Connection."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from diagnostics.intake.backend import BackendUnavailable
from diagnostics.intake.config import TOKEN_ENV, IntakeSettings
from tests.diagnostics.intake.conftest import real_payload
from tests.plugins.conftest import PROBE_DAG, PROBE_DAG_ID, register_dag_in_db

TOKEN = "plugin-test-token-83b1"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def test_airflow_loads_the_plugin_and_mounts_the_intake(airflow_db: Path) -> None:
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()
    assert [(a["name"], a["url_prefix"]) for a in apps] == [
        ("Triage24 alert intake", "/triage24/intake"),
        ("Triage24 incidents view", "/triage24/ui"),  # tests/plugins/test_incidents_ui.py
    ]
    assert plugins_manager.get_import_errors() == {}


@pytest.fixture(scope="module")
def airflow_app(airflow_db: Path) -> Iterator[Any]:
    from airflow.api_fastapi.app import create_app
    from triage24_plugin import Triage24Plugin

    yield create_app()
    # The mounted intake may have started its maintainer thread: stop it, or it outlives pytest's
    # captured streams and logs into a closed file at exit.
    service = Triage24Plugin.fastapi_apps[0]["app"].state.intake._service
    if service is not None:
        service.stop()


def test_the_mounted_intake_authenticates_itself_inside_the_api_server(airflow_app: Any) -> None:
    with TestClient(airflow_app) as client:
        raw = json.dumps(real_payload()).encode()
        resp = client.post(
            "/triage24/intake/alertmanager", content=raw, headers={"Content-Type": "application/json"}
        )
        assert resp.status_code in (401, 503), resp.text  # 503 only when no token is configured at all
        assert client.get("/triage24/intake/health").status_code in (401, 503)
        assert client.get("/api/v2/dags").status_code == 401, "Airflow's own API stays protected"


@pytest.fixture
def backend(airflow_db: Path) -> Any:
    from triage24_plugin import AirflowRunBackend

    return AirflowRunBackend()


def test_backend_creates_reads_and_annotates_real_runs(backend: Any, probe_dag_folder: Path) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with pytest.raises(BackendUnavailable, match="'not_deployed' is not loaded"):
        backend.create_run("not_deployed", "incident__x__0", {}, "")
    with pytest.raises(BackendUnavailable, match="is not loaded"):
        backend.ping("not_deployed")
    register_dag_in_db(probe_dag_folder)
    assert "loaded" in backend.ping(PROBE_DAG_ID)
    run_id = "incident__backend__" + "a" * 24
    assert backend.create_run(PROBE_DAG_ID, run_id, {"grade": "L3", "text": "图像"}, "first note") is True
    assert backend.create_run(PROBE_DAG_ID, run_id, {"grade": "L1"}, "again") is False
    assert backend.run_state(PROBE_DAG_ID, run_id) == "queued"
    assert backend.run_state(PROBE_DAG_ID, "incident__nope__" + "0" * 24) is None
    backend.set_note(PROBE_DAG_ID, run_id, "second note")
    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=PROBE_DAG_ID, run_id=run_id).one()
        assert run.conf == {"grade": "L3", "text": "图像"}, "the second create changed nothing"
        assert run.note == "second note"
        assert run.triggering_user_name == "triage24-intake"
        assert run.logical_date is None
    with pytest.raises(BackendUnavailable, match="does not exist"):
        backend.set_note(PROBE_DAG_ID, "incident__nope__" + "0" * 24, "x")
    # what a re-evaluation reads and does: the run's task states, the answer to a gate (none waits here)
    assert backend.task_states(PROBE_DAG_ID, "incident__nope__" + "0" * 24) is None
    assert isinstance(backend.task_states(PROBE_DAG_ID, run_id), dict)
    assert backend.answer_gate(PROBE_DAG_ID, run_id, "decision.human_gate_L2", "Hold", {}) is False


@pytest.fixture
def intake_client(airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from triage24_plugin import intake_app

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("TRIAGE24_HOME", str(tmp_path))
    settings = IntakeSettings(dag_id="triage24_intake_probe_late", connection_id="triage24_webhook_absent")
    with TestClient(intake_app(settings)) as client:
        yield client


def test_a_dag_deployed_late_gets_its_pending_runs_from_the_reconciler(
    intake_client: TestClient, tmp_path: Path
) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    raw = json.dumps(real_payload()).encode()
    pending = intake_client.post("/alertmanager", content=raw, headers=AUTH)
    assert pending.status_code == 503, pending.text
    assert "'triage24_intake_probe_late' is not loaded" in pending.json()["detail"]
    assert (tmp_path / "intake" / "journal.sqlite3").is_file(), "journaled under TRIAGE24_HOME/intake"
    health = intake_client.get("/health", headers=AUTH).json()
    assert health["status"] == "degraded" and health["incidents"] == {"pending": 1}

    late = tmp_path / "late-dags"
    late.mkdir()
    (late / "late.py").write_text(PROBE_DAG.replace(PROBE_DAG_ID, "triage24_intake_probe_late"))
    register_dag_in_db(late)

    report = intake_client.post("/reconcile", headers=AUTH).json()
    run_id = pending.json()["run_id"]
    assert report["replayed"] == [run_id] and report["still_pending"] == {}
    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id="triage24_intake_probe_late", run_id=run_id).one()
        assert (run.conf["grade"], run.conf["grade_rule"]) == ("L3", "canary_gate_breach")
        assert run.conf["group_labels"]["alertname"] == "CanaryGate5xx"
        assert "**L3**" in run.note
    # Alertmanager's retry of the same delivery is now a duplicate.
    assert intake_client.post("/alertmanager", content=raw, headers=AUTH).json()["outcome"] == "duplicate"


def test_the_token_comes_from_the_connection_first(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from triage24_plugin import TokenSource

    monkeypatch.setenv(TOKEN_ENV, "from-the-environment")
    assert TokenSource("triage24_webhook_test")() == ["from-the-environment"]
    with create_session() as session:
        session.add(
            Connection(
                conn_id="triage24_webhook_test",
                conn_type="http",
                password="from-the-connection",
                extra=json.dumps({"previous_tokens": ["rotated-out", 7]}),
            )
        )
    source = TokenSource("triage24_webhook_test", ttl_s=0)
    assert source() == ["from-the-connection", "rotated-out"]
    # A rotation is picked up in the background; the caller is served the cached tokens meanwhile.
    with create_session() as session:
        session.query(Connection).filter_by(conn_id="triage24_webhook_test").one().password = "rotated-in"
    source()  # starts the refresh
    deadline = time.monotonic() + 10
    while source()[0] != "rotated-in" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert source()[0] == "rotated-in"
    monkeypatch.delenv(TOKEN_ENV)
    assert TokenSource("no_such_connection")() == []


# --- Triage24's own metrics (GET /triage24/intake/metrics) ----------------------------------------

PHASE2_DAG_ID = "triage24_phase2_probe"
PHASE2_DAG = f'''
"""Stand-in for the incident DAG's phase 2: a deep_diagnosis TaskGroup with two checks."""
from datetime import datetime

from airflow.sdk import TaskGroup, dag, task


@dag(dag_id="{PHASE2_DAG_ID}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def triage24_phase2_probe():
    with TaskGroup("deep_diagnosis"):
        for name in ("clip_consistency", "drift"):
            task(task_id=name)(lambda: None)()


triage24_phase2_probe()
'''


def test_failed_phase2_tasks_are_counted_from_airflow_s_metadata_db(airflow_db: Path, tmp_path: Path) -> None:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType
    from triage24_plugin import phase2_task_failures

    folder = tmp_path / "phase2-dags"
    folder.mkdir()
    (folder / "phase2.py").write_text(PHASE2_DAG)
    register_dag_in_db(folder)
    assert phase2_task_failures(PHASE2_DAG_ID) == {}
    for run_id in ("incident__p2__1", "incident__p2__2"):
        trigger_dag(PHASE2_DAG_ID, triggered_by=DagRunTriggeredByType.REST_API, run_id=run_id)
    with create_session() as session:
        for run_id in ("incident__p2__1", "incident__p2__2"):
            ti = (
                session.query(TaskInstance)
                .filter_by(dag_id=PHASE2_DAG_ID, run_id=run_id, task_id="deep_diagnosis.clip_consistency")
                .one()
            )
            ti.state = "failed"
    assert phase2_task_failures(PHASE2_DAG_ID) == {"clip_consistency": 2, "drift": 0}
    assert phase2_task_failures("no_such_dag") == {}


def test_the_metrics_token_is_its_own_connection_s_then_its_variable_then_the_webhook_s(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from triage24_plugin import intake_app

    from diagnostics.telemetry import METRICS_TOKEN_ENV, TelemetrySettings

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("TRIAGE24_HOME", str(tmp_path))
    settings = IntakeSettings(connection_id="triage24_webhook_absent")

    def codes(metrics_connection: str, *tokens: str) -> list[int]:
        app = intake_app(settings, TelemetrySettings(connection_id=metrics_connection))
        with TestClient(app) as client:
            return [
                client.get("/metrics", headers={"Authorization": f"Bearer {t}"}).status_code for t in tokens
            ]

    assert codes("triage24_metrics_absent", TOKEN, "other") == [200, 401], "no metrics token: the webhook's"
    monkeypatch.setenv(METRICS_TOKEN_ENV, "from-the-metrics-variable")
    assert codes("triage24_metrics_absent", "from-the-metrics-variable", TOKEN) == [200, 401]
    with create_session() as session:
        session.add(
            Connection(conn_id="triage24_metrics_test", conn_type="generic", password="from-its-connection")
        )
    assert codes("triage24_metrics_test", "from-its-connection", "from-the-metrics-variable", TOKEN) == [
        200,
        401,
        401,
    ]
    with TestClient(intake_app(settings, TelemetrySettings(connection_id="triage24_metrics_test"))) as client:
        text = client.get("/metrics", headers={"Authorization": "Bearer from-its-connection"}).text
    assert 'triage24_telemetry_source_up{source="airflow"} 1.0' in text, "phase-2 failures read from Airflow"
    assert 'triage24_telemetry_source_up{source="journal"} 1.0' in text
