"""Fixtures of the intake library tests.

``MemoryBackend`` is an in-memory Airflow for the in-process tests of the decision logic and of the
HTTP layer (duplicate run ids refused like Airflow's 409, run and task states settable, notes kept,
human gates answered like the HITL API's 409 once answered, and a ``down`` switch to make it
unavailable). The real backends are tested against a real Airflow:
the plugin's in tests/plugins/, the REST one in the integration tests.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from diagnostics.intake.app import create_app
from diagnostics.intake.backend import BackendUnavailable
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.journal import Journal
from diagnostics.intake.service import IntakeService
from tests.conftest import REPO

DATA = Path(__file__).parent / "data"
TOKEN = "test-webhook-token-5d1e9a"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@dataclass
class MemoryRun:
    dag_id: str
    run_id: str
    conf: dict[str, Any]
    note: str
    state: str = "queued"
    tasks: dict[str, str | None] = field(default_factory=dict)  # task id -> state


@dataclass
class MemoryBackend:
    runs: dict[str, MemoryRun] = field(default_factory=dict)
    down: str | None = None  # when set, every call raises BackendUnavailable(down)
    dags: set[str] = field(default_factory=lambda: {"incident_response"})
    calls: list[str] = field(default_factory=list)
    # (run, task, option, params) of every human gate answered
    answers: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise BackendUnavailable(self.down)

    def create_run(self, dag_id: str, run_id: str, conf: dict[str, Any], note: str) -> bool:
        self._check("create_run")
        if dag_id not in self.dags:
            raise BackendUnavailable(f"DAG {dag_id!r} is not loaded")
        with self.lock:
            if run_id in self.runs:
                return False
            self.runs[run_id] = MemoryRun(dag_id, run_id, copy.deepcopy(conf), note)
        return True

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        self._check("run_state")
        run = self.runs.get(run_id)
        return run.state if run else None

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        self._check("set_note")
        self.runs[run_id].note = note

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None] | None:
        self._check("task_states")
        run = self.runs.get(run_id)
        return dict(run.tasks) if run else None

    def answer_gate(
        self, dag_id: str, run_id: str, task_id: str, option: str, params: dict[str, Any]
    ) -> bool:
        self._check("answer_gate")
        run = self.runs.get(run_id)
        if run is None or run.tasks.get(task_id) != "awaiting_input":
            return False  # the HITL API's 404 / 409
        run.tasks[task_id] = "success"
        self.answers.append((run_id, task_id, option, copy.deepcopy(params)))
        return True

    def ping(self, dag_id: str) -> str:
        self._check("ping")
        return "memory"


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path) -> IntakeSettings:
    return IntakeSettings(journal_dir=tmp_path / "intake", grading_file=REPO / "runbooks" / "grading.yaml")


@pytest.fixture
def service(settings: IntakeSettings, backend: MemoryBackend, clock: Clock) -> Iterator[IntakeService]:
    journal = Journal(settings.journal_path())
    svc = IntakeService(
        journal, backend, Grader(load_grading(settings.grading_path())), settings, clock=clock
    )
    yield svc
    journal.close()


@pytest.fixture
def client(service: IntakeService, settings: IntakeSettings, clock: Clock) -> Iterator[TestClient]:
    app = create_app(lambda: service, lambda: [TOKEN], settings, clock=clock)
    with TestClient(app) as c:
        yield c


def real_payload(name: str = "firing") -> dict[str, Any]:
    """A delivery recorded from Alertmanager 0.25 (the Debian binary), see data/."""
    data: dict[str, Any] = json.loads((DATA / f"alertmanager-0.25-{name}.json").read_text())
    return data


def other_version(payload: dict[str, Any], version: str) -> dict[str, Any]:
    """The same alerts for another version of the service: another alert group with another
    correlation key (the same labels in another group would join the first group's incident)."""
    data = copy.deepcopy(payload)
    data["groupKey"] = data["groupKey"].replace('version="canary"', f'version="{version}"')
    for labels in (data["groupLabels"], data["commonLabels"], *(a["labels"] for a in data["alerts"])):
        labels["version"] = version
    return data


def at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def alert(
    fingerprint: str,
    starts: float,
    status: str = "firing",
    ends: float | None = None,
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "LatencySLABreach", **labels},
        "annotations": {"summary": f"alert {fingerprint}"},
        "startsAt": at(starts),
        "endsAt": at(ends) if ends else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


def delivery(alerts: list[dict[str, Any]], group: dict[str, str] | None = None) -> dict[str, Any]:
    group = group or {"alertname": alerts[0]["labels"]["alertname"]}
    firing = any(a["status"] == "firing" for a in alerts)
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(group.items()))
    return {
        "version": "4",
        "groupKey": "{}:{" + inner + "}",
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "triage24",
        "groupLabels": group,
        "commonLabels": group,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def minutes_ago(clock: Clock, minutes: float) -> float:
    return clock.now - timedelta(minutes=minutes).total_seconds()


# --- one fault, two alert groups (issue 19): the regression watch's and Prometheus' -----------------


def golden_regression(starts: float, version: str = "canary") -> dict[str, Any]:
    """The scheduled regression run's alert for a regressed canary, as its DAG posts it
    (group alertname+target; severity warning: L2)."""
    from diagnostics.verified_delivery.regression.watch import alert_payload

    started = datetime.fromtimestamp(starts, UTC)
    why = {"image": "golden regression failing (clip_pair_3)"}
    return alert_payload("testbed", version, why, starts_at=started, severity="warning")


MODEL_NOT_LOADED = {"alertname": "ModelNotLoaded", "target": "testbed", "version": "canary"}


def model_not_loaded(starts: float, status: str = "firing", ends: float | None = None) -> dict[str, Any]:
    """Prometheus' ModelNotLoaded for the canary's image model, as Alertmanager groups it (group
    target+version, deploy/alertmanager/alertmanager.yml; L4: core path)."""
    labels = {
        "job": "testbed", "instance": "127.0.0.1:18081", "module": "image", "model": "clip",
        "severity": "critical", "impact": "core_path", "problem": "model_not_loaded",
    }  # fmt: skip
    one = alert("7e1a0c33d2b4f5a6", starts, status=status, ends=ends, **labels)
    one["labels"] = {**one["labels"], **MODEL_NOT_LOADED}
    return delivery([one], {"target": "testbed", "version": "canary"})
