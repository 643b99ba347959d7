"""The scheduled regression DAG with ``dag.test()`` against the real testbed (real models) and the real
alert intake (its FastAPI app served over HTTP, journal and grading real; Airflow's run creation is
the intake tests' in-memory backend): a healthy canary opens no incident, a regressed one exactly one,
and the next scheduled run that still sees the regression opens none more."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI

from tests.conftest import REPO, free_port
from tests.diagnostics.intake.conftest import TOKEN, MemoryBackend
from tests.support.testbed_procs import AUTH, Stack

pytestmark = [pytest.mark.integration, pytest.mark.models]


@dataclass
class Watch:
    dag: Any
    backend: MemoryBackend
    stack: Stack
    artifacts: Path

    def run(self) -> tuple[Any, dict[str, Any]]:
        run = self.dag.test(run_conf={"target": "testbed"})
        ti = next(t for t in run.get_task_instances() if t.task_id == "open_incident_if_regressed")
        return run, ti.xcom_pull(task_ids="open_incident_if_regressed") or {}


@pytest.fixture(scope="module")
def watch(
    testbed_stack: Stack, airflow_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Watch]:
    from airflow.dag_processing.dagbag import DagBag

    from diagnostics.intake.app import create_app
    from diagnostics.intake.config import IntakeSettings
    from diagnostics.intake.grading import Grader, load_grading
    from diagnostics.intake.journal import Journal
    from diagnostics.intake.service import IntakeService

    tmp = tmp_path_factory.mktemp("regression")
    books = tmp / "runbooks"
    shutil.copytree(REPO / "runbooks", books)  # a smaller suite, same baselines (cases are keyed by id)
    reg = yaml.safe_load((books / "regression.yaml").read_text())
    reg["suite"] = {"chat": 3, "text_embeddings": 4, "image_embeddings": 8, "transcriptions": 1,
                    "router_text": 1, "router_image_text": 1, "router_audio": 0}  # fmt: skip
    (books / "regression.yaml").write_text(yaml.safe_dump(reg))

    backend = MemoryBackend()
    settings = IntakeSettings(journal_dir=tmp / "intake", grading_file=books / "grading.yaml")
    service = IntakeService(
        Journal(settings.journal_path()), backend, Grader(load_grading(settings.grading_path())), settings
    )
    root = FastAPI()
    root.mount("/triage24/intake", create_app(lambda: service, lambda: [TOKEN], settings))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(root, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in testbed_stack.environ().items():
            mp.setenv(key, value)
        mp.setenv("TRIAGE24_RUNBOOKS_DIR", str(books))
        mp.setenv("TRIAGE24_AIRFLOW_PORT", str(port))
        mp.setenv("TRIAGE24_WEBHOOK_TOKEN", TOKEN)
        bag = DagBag(dag_folder=str(REPO / "dags" / "triage24_regression.py"))
        assert bag.import_errors == {}
        try:
            yield Watch(
                bag.dags["triage24_regression"], backend, testbed_stack, testbed_stack.home / "artifacts"
            )
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            httpx.delete(f"{testbed_stack.canary.url}/admin/faults", headers=AUTH, timeout=5)


def test_a_healthy_canary_opens_no_incident(watch: Watch) -> None:
    httpx.delete(f"{watch.stack.canary.url}/admin/faults", headers=AUTH, timeout=5).raise_for_status()
    run, opened = watch.run()
    assert run.state == "success"
    assert opened["opened"] is False, opened
    assert watch.backend.runs == {}
    history = (watch.artifacts / "regression" / "history.jsonl").read_text().splitlines()
    assert len(history) >= 2 and '"trigger": "schedule"' in history[-1]


def test_a_regressed_canary_opens_exactly_one_incident_through_the_intake(watch: Watch) -> None:
    resp = httpx.post(
        f"{watch.stack.canary.url}/admin/faults",
        json={"fault": "image_text_misalignment"},
        headers=AUTH,
        timeout=5,
    )
    assert resp.status_code == 200
    run, opened = watch.run()
    assert run.state == "success"
    assert opened["opened"] is True and opened["outcome"] == "created", opened
    assert "image" in opened["why"]
    assert len(watch.backend.runs) == 1
    created = next(iter(watch.backend.runs.values()))
    assert created.dag_id == "incident_response"
    assert created.conf["target"] == "testbed" and created.conf["grade"] == "L2"  # severity warning -> L2
    # the next scheduled run still sees the regression: the same episode, no second incident
    _, again = watch.run()
    assert again["opened"] is False and again["outcome"] == "duplicate", again
    assert len(watch.backend.runs) == 1
