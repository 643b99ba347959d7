"""The scheduled reconciler DAG calls the intake over HTTP with the webhook token and reports what it
replayed; an unreachable intake is insufficient evidence, not a crash."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from triage24_plugin import URL_PREFIX

from diagnostics.intake.app import create_app
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.journal import Journal
from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService
from tests.conftest import REPO, free_port
from tests.diagnostics.intake.conftest import MemoryBackend, body, real_payload

TOKEN = "reconciler-dag-token-2c7f"


@pytest.fixture(scope="module")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture
def intake_server(tmp_path: Path) -> Iterator[tuple[int, IntakeService, MemoryBackend]]:
    settings = IntakeSettings(journal_dir=tmp_path, grading_file=REPO / "runbooks" / "grading.yaml")
    backend = MemoryBackend()
    service = IntakeService(
        Journal(settings.journal_path()), backend, Grader(load_grading(settings.grading_path())), settings
    )
    port = free_port()
    api_server = FastAPI()  # mounted under the plugin's prefix, as Airflow's api-server does
    api_server.mount(URL_PREFIX, create_app(lambda: service, lambda: [TOKEN], settings))
    server = uvicorn.Server(uvicorn.Config(api_server, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield port, service, backend
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _result(run: Any) -> dict[str, Any]:
    (ti,) = run.get_task_instances()
    assert ti.state == "success", ti.state
    result: dict[str, Any] = ti.xcom_pull(task_ids="reconcile")
    return result


def test_the_reconciler_replays_pending_incidents(
    dagbag: Any, airflow_db: Path, intake_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, service, backend = intake_server
    backend.down = "metadata DB down"
    pending = service.handle(validate(real_payload()), body(real_payload()))
    assert pending.outcome == "pending"
    backend.down = None
    monkeypatch.setenv("TRIAGE24_AIRFLOW_PORT", str(port))
    monkeypatch.setenv("TRIAGE24_WEBHOOK_TOKEN", TOKEN)
    result = _result(dagbag.dags["triage24_intake_reconciler"].test())
    assert result["status"] == "ok"
    assert result["details"]["replayed"] == [pending.run_id]
    assert list(backend.runs) == [pending.run_id]


def test_an_unreachable_intake_is_insufficient_evidence(
    dagbag: Any, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE24_AIRFLOW_PORT", str(free_port()))
    monkeypatch.setenv("TRIAGE24_WEBHOOK_TOKEN", TOKEN)
    result = _result(dagbag.dags["triage24_intake_reconciler"].test())
    assert result["status"] == "insufficient_evidence"
    assert "intake unreachable" in result["summary"]
