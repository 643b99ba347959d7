"""The intake end to end on the real local stack: Airflow's api-server loads the plugin, the real
Alertmanager (Debian 0.25) delivers to it with the bearer token from the credentials file, the real
Prometheus evaluates the repo's rules, the scheduler runs a real DAG with the intake's conf.

One stack for the module (about a minute to start); the incident DAG is a stand-in (the probe DAG of
conftest.py) that holds its runs open until released, so incidents stay open while the tests run.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from diagnostics.config import Settings
from diagnostics.intake.airflow_api import AirflowApi
from diagnostics.intake.backend import BackendUnavailable, RestRunBackend
from harness.stack import Stack
from tests.conftest import REPO, stack_settings
from tests.plugins.conftest import PROBE_DAG_ID, write_probe_dag
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

WEBHOOK = "/triage24/intake/alertmanager"


@dataclass
class IntakeStack:
    stack: Stack
    api: AirflowApi
    started: float
    client: httpx.Client  # keep-alive connections, shared by the storm's threads

    @property
    def settings(self) -> Settings:
        return self.stack.settings

    @property
    def token(self) -> str:
        return self.stack.secrets["TRIAGE24_WEBHOOK_TOKEN"]

    @property
    def am(self) -> str:
        return f"http://127.0.0.1:{self.settings.alertmanager_port}"

    @property
    def journal(self) -> Path:
        return self.settings.home / "intake" / "journal.sqlite3"

    def runs(self, **conf: str) -> list[dict[str, Any]]:
        resp = self.api.request("GET", f"/dags/{PROBE_DAG_ID}/dagRuns", params={"limit": 1000})
        resp.raise_for_status()
        found = resp.json()["dag_runs"]
        return [r for r in found if all((r.get("conf") or {}).get(k) == v for k, v in conf.items())]

    def deliveries(self, group_fragment: str) -> list[dict[str, Any]]:
        with sqlite3.connect(self.journal) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT id, outcome, run_id, body FROM deliveries WHERE group_key LIKE ? ORDER BY id",
                (f"%{group_fragment}%",),
            ).fetchall()
        return [dict(r) for r in rows]

    def post(self, raw: bytes, token: str | None = None, **headers: str) -> httpx.Response:
        auth = {"Authorization": f"Bearer {token if token is not None else self.token}"}
        return self.client.post(
            f"{self.settings.airflow_url}{WEBHOOK}",
            content=raw,
            headers={"Content-Type": "application/json", **auth, **headers},
        )


@pytest.fixture(scope="module")
def intake_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntakeStack]:
    root = tmp_path_factory.mktemp("intake-it")
    repo = root / "repo"
    repo.mkdir()
    for name in ("plugins", "runbooks", "deploy"):
        (repo / name).symlink_to(REPO / name)
    write_probe_dag(repo / "dags")
    # Nothing listens on the testbed's ports: its TargetDown rule fires (the last test).
    settings = stack_settings(root / "home", repo_root=repo, airflow_parallelism=8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIAGE24_INTAKE_DAG_ID", PROBE_DAG_ID)  # the api-server inherits it
        stack = Stack(settings, with_testbed=False)
        started = time.monotonic()
        try:
            stack.up(timeout_s=300)
            with AirflowApi(settings.airflow_url, "admin", stack.secrets["TRIAGE24_ADMIN_PASSWORD"]) as api:
                api.wait_for_dag(PROBE_DAG_ID, timeout_s=120)
                limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
                with httpx.Client(timeout=30, limits=limits) as client:
                    yield IntakeStack(stack, api, started, client)
                _release_runs(settings, api)
        finally:
            (settings.home / "release").mkdir(parents=True, exist_ok=True)
            (settings.home / "release" / "all").touch()
            stack.down()


def _release_runs(settings: Settings, api: AirflowApi) -> None:
    """Let the held probe runs finish before the stack stops (a quick, clean `down`)."""
    (settings.home / "release").mkdir(parents=True, exist_ok=True)
    (settings.home / "release" / "all").touch()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        resp = api.request("GET", f"/dags/{PROBE_DAG_ID}/dagRuns", params={"state": "running", "limit": 1})
        if resp.status_code != 200 or resp.json()["total_entries"] == 0:
            return
        time.sleep(0.5)


def am_alert(labels: dict[str, str], ends: datetime | None = None, **annotations: str) -> dict[str, Any]:
    out: dict[str, Any] = {"labels": labels, "annotations": annotations or {"summary": "integration test"}}
    if ends is not None:
        out["endsAt"] = ends.isoformat().replace("+00:00", "Z")
    return out


def post_to_alertmanager(s: IntakeStack, alerts: list[dict[str, Any]]) -> None:
    resp = httpx.post(f"{s.am}/api/v2/alerts", json=alerts, timeout=30)
    assert resp.status_code == 200, resp.text


def test_an_alertmanager_alert_becomes_one_incident_run_with_grade_and_conf(
    intake_stack: IntakeStack,
) -> None:
    s = intake_stack
    target = f"it-{uuid.uuid4().hex[:8]}"
    labels = {
        "alertname": "ModelNotLoaded",
        "target": target,
        "version": "canary",
        "severity": "critical",
        "impact": "core_path",
        "channel": "image",
    }
    post_to_alertmanager(s, [am_alert(labels, summary="clip-shapes checksum mismatch")])
    (run,) = wait_for("the incident run", lambda: s.runs(target=target), timeout_s=60)
    conf = run["conf"]
    assert (conf["grade"], conf["grade_rule"], conf["escalated"]) == ("L4", "core_path_failing", True)
    assert conf["escalation_rule"] == "L4.immediate"
    assert conf["group_labels"] == {"target": target, "version": "canary"}, "grouped by target and version"
    assert conf["receiver"] == "triage24" and conf["status"] == "firing"
    assert conf["alerts"][0]["annotations"]["summary"] == "clip-shapes checksum mismatch"
    assert run["dag_run_id"].startswith(f"incident__{target}-canary__")
    assert "**L4**" in run["note"] and "**escalated** (L4.immediate)" in run["note"]
    # The DAG's task ran with that conf.
    seen = s.settings.home / "probe" / f"{run['dag_run_id']}.json"
    wait_for("the probe task", seen.exists, timeout_s=90)
    assert json.loads(seen.read_text())["grade"] == "L4"

    # Replaying the journaled delivery (as an Alertmanager retry would) creates nothing.
    (first,) = s.deliveries(target)
    assert first["outcome"] == "created" and first["run_id"] == run["dag_run_id"]
    again = s.post(first["body"])
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert len(s.runs(target=target)) == 1

    # Resolving the alert annotates the incident and starts nothing.
    post_to_alertmanager(s, [am_alert(labels, ends=datetime.now(UTC))])
    wait_for(
        "the resolved delivery", lambda: [d for d in s.deliveries(target) if d["outcome"] == "resolved"], 60
    )
    (run,) = s.runs(target=target)
    assert "all alerts resolved at" in run["note"] and "alerts firing 0, resolved 1" in run["note"]


def test_without_the_token_nothing_gets_in_and_the_token_is_never_written_out(
    intake_stack: IntakeStack,
) -> None:
    s = intake_stack
    raw = json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{target="it-intruder"}',
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "X", "target": "it-intruder"},
                    "startsAt": "2026-01-01T00:00:00Z",
                    "fingerprint": "abcdef0123456789",
                }
            ],
        }
    ).encode()
    no_token = httpx.post(
        f"{s.settings.airflow_url}{WEBHOOK}", content=raw, headers={"Content-Type": "application/json"}
    )
    wrong = s.post(raw, token=s.token[:-1] + ("x" if s.token[-1] != "x" else "y"))
    health = httpx.get(f"{s.settings.airflow_url}/triage24/intake/health")
    reconcile = httpx.post(f"{s.settings.airflow_url}/triage24/intake/reconcile")
    assert [r.status_code for r in (no_token, wrong, health, reconcile)] == [401, 401, 401, 401]
    assert s.deliveries("it-intruder") == [] and s.runs(target="it-intruder") == []
    good = httpx.get(
        f"{s.settings.airflow_url}/triage24/intake/health", headers={"Authorization": f"Bearer {s.token}"}
    )
    assert good.status_code == 200 and good.json()["dag_id"] == PROBE_DAG_ID

    token_file = s.settings.home / "alertmanager" / "webhook_token"
    assert token_file.read_text() == s.token and oct(token_file.stat().st_mode & 0o777) == "0o600"
    rendered = (s.settings.home / "alertmanager" / "alertmanager.yml").read_text()
    assert s.token not in rendered and str(token_file) in rendered
    for log in (s.settings.home / "logs").rglob("*"):
        if log.is_file():
            assert s.token not in log.read_text(errors="replace"), f"the webhook token leaked into {log}"


def _storm_delivery(target: str, group: int, i: int) -> bytes:
    labels = {"alertname": "Http5xxBurst", "target": target, "version": f"v{group}", "severity": "high"}
    group_labels = {"target": target, "version": f"v{group}"}
    return json.dumps(
        {
            "version": "4",
            "groupKey": "{}:{" + f'target="{target}", version="v{group}"' + "}",
            "status": "firing",
            "receiver": "triage24",
            "groupLabels": group_labels,
            "commonLabels": group_labels,
            "externalURL": "http://127.0.0.1:9093",
            "truncatedAlerts": 0,
            "alerts": [
                {
                    "status": "firing",
                    "labels": {**labels, "instance": f"i{i}"},
                    "annotations": {"summary": f"storm alert {i}"},
                    "startsAt": "2026-11-22T05:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": f"{i:016x}",
                }
            ],
        }
    ).encode()


def test_a_storm_of_1000_alerts_over_3_groups_opens_exactly_3_incidents(intake_stack: IntakeStack) -> None:
    s = intake_stack
    target = f"it-storm-{uuid.uuid4().hex[:6]}"

    def send(i: int) -> int:
        return s.post(_storm_delivery(target, i % 3, i)).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(send, range(1000)))
    assert sorted(set(codes)) == [200, 201] and codes.count(201) == 3, {c: codes.count(c) for c in set(codes)}
    deliveries = s.deliveries(target)
    assert len(deliveries) == 1000
    assert {d["outcome"] for d in deliveries} == {"created", "update"}
    runs = s.runs(target=target)
    assert len(runs) == 3
    assert sorted(r["conf"]["version"] for r in runs) == ["v0", "v1", "v2"]


def test_a_storm_through_alertmanager_opens_one_incident_per_group(intake_stack: IntakeStack) -> None:
    s = intake_stack
    target = f"it-amstorm-{uuid.uuid4().hex[:6]}"
    alerts = [
        am_alert(
            {"alertname": "ErrorRateHigh", "target": target, "version": f"v{i % 3}", "severity": "warning",
             "instance": f"i{i}"}
        )
        for i in range(1000)
    ]  # fmt: skip
    for start in range(0, 1000, 250):
        post_to_alertmanager(s, alerts[start : start + 250])
    runs = wait_for("three incident runs", lambda: (r := s.runs(target=target)) and len(r) >= 3 and r, 90)
    assert len(runs) == 3 and sorted(r["conf"]["version"] for r in runs) == ["v0", "v1", "v2"]

    def all_alerts_journaled() -> bool:
        with sqlite3.connect(s.journal) as conn:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM alerts WHERE group_key LIKE ?", (f"%{target}%",)
            ).fetchone()
        return int(n) == 1000

    wait_for("all 1000 alerts in the journal", all_alerts_journaled, timeout_s=60)
    assert len(s.runs(target=target)) == 3
    assert all(r["conf"]["grade"] == "L2" for r in runs)


def test_the_rest_backend_and_the_cli_reconcile_against_the_real_airflow(
    intake_stack: IntakeStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s = intake_stack
    backend = RestRunBackend(s.settings.airflow_url, "admin", s.stack.secrets["TRIAGE24_ADMIN_PASSWORD"])
    run_id = f"incident__rest__{uuid.uuid4().hex[:24]}"
    assert backend.create_run(PROBE_DAG_ID, run_id, {"grade": "L2", "target": "it-rest"}, "via REST") is True
    assert backend.create_run(PROBE_DAG_ID, run_id, {"grade": "L4"}, "again") is False
    assert backend.run_state(PROBE_DAG_ID, run_id) in ("queued", "running")
    backend.set_note(PROBE_DAG_ID, run_id, "second note")
    (run,) = s.runs(target="it-rest")
    assert run["note"] == "second note" and run["conf"]["grade"] == "L2"
    assert backend.run_state(PROBE_DAG_ID, "incident__none__" + "0" * 24) is None
    with pytest.raises(BackendUnavailable, match="not loaded"):
        backend.create_run("no_such_dag", run_id, {}, "")
    assert "loaded" in backend.ping(PROBE_DAG_ID)
    backend.close()

    import argparse

    from diagnostics.intake.cli import register

    for key, value in {
        "TRIAGE24_HOME": s.settings.home,
        "TRIAGE24_AIRFLOW_PORT": s.settings.airflow_port,
        "TRIAGE24_INTAKE_DAG_ID": PROBE_DAG_ID,
    }.items():
        monkeypatch.setenv(key, str(value))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["intake", "reconcile", "--json"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["still_pending"] == {}


def test_a_prometheus_rule_reaches_the_intake_through_alertmanager(intake_stack: IntakeStack) -> None:
    """The whole chain with nothing posted by hand: the stack runs without the testbed, so the
    repo's TargetDown rule fires for both testbed versions (30 s `for`), Alertmanager groups by
    target and version, and the intake opens one L4 incident per version."""
    s = intake_stack
    remaining = max(10.0, 150 - (time.monotonic() - s.started))
    runs = wait_for(
        "TargetDown incidents for testbed stable and canary",
        lambda: (r := s.runs(target="testbed")) and len(r) >= 2 and r,
        timeout_s=remaining,
        interval_s=1.0,
    )
    assert sorted(r["conf"]["version"] for r in runs) == ["canary", "stable"]
    for run in runs:
        conf = run["conf"]
        assert {a["labels"]["alertname"] for a in conf["alerts"]} == {"TargetDown"}
        assert (conf["grade"], conf["grade_rule"], conf["escalated"]) == ("L4", "core_path_failing", True)
        assert f":{s.settings.prometheus_port}/graph?g0.expr=up" in conf["alerts"][0]["generator_url"]
