"""A second sender in the scenarios (Grafana beside Alertmanager): the body it sends is one the intake
accepts as Grafana's, it reaches the intake with the stack's token, a refusal is reported, and the
``alert_groups`` expectation counts the groups the scenario's incident holds."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from diagnostics.config import Settings
from diagnostics.intake.fingerprint import alert_fingerprint
from diagnostics.intake.payload import GrafanaPayload, validate
from harness.scenario.schema import SentAlert, load_scenario
from harness.scenario.scoring import score
from harness.scenario.senders import INTAKE_PATH, SendError, grafana_body, send
from tests.harness.scenario.test_scenarios import (
    FULL,
    SCENARIOS,
    observation,
    problems,
    run_obs,
    scenario,
    write,
)

STEP = SentAlert(
    alertname="CanaryImageErrors", severity="warning", labels={"channel": "image"}, summary="image errors"
)


def test_the_grafana_body_is_accepted_by_the_intake_as_grafanas_with_the_scenarios_labels() -> None:
    body = grafana_body(STEP, now=1_800_000_000.0)
    payload = validate(json.loads(json.dumps(body)))
    assert isinstance(payload, GrafanaPayload) and payload.state == "alerting"
    (alert,) = payload.alerts
    assert alert.labels == {
        "alertname": "CanaryImageErrors",
        "grafana_folder": "triage24-scenarios",
        "target": "testbed",
        "version": "canary",
        "severity": "warning",
        "channel": "image",
    }
    # Grafana sends Alertmanager's fingerprint of the labels: the intake's dedup key must not change
    assert body["alerts"][0]["fingerprint"] == alert_fingerprint(dict(alert.labels))
    assert body["alerts"][0]["startsAt"] == "2027-01-15T08:00:00Z"
    # its own group: nothing of Alertmanager's group key (target, version)
    assert body["groupKey"].endswith('{alertname="CanaryImageErrors", grafana_folder="triage24-scenarios"}')


class _Intake(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, dict[str, Any]]]] = []
    status = 201

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization", ""), body))
        answer = json.dumps({"outcome": "joined"} if self.status < 300 else {"error": "unauthorized"})
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[tuple[Settings, type[_Intake]]]:
    handler = type("Intake", (_Intake,), {"seen": [], "status": 201})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Settings(home=tmp_path, host="127.0.0.1", airflow_port=server.server_address[1]), handler
    finally:
        server.shutdown()


def test_a_sent_alert_reaches_the_intake_route_with_the_stacks_token(intake: tuple[Settings, Any]) -> None:
    settings, handler = intake
    assert send(settings, "s3cret", STEP) == "joined"
    ((path, auth, body),) = handler.seen
    assert path == INTAKE_PATH and auth == "Bearer s3cret" and body["version"] == "1"


def test_a_refused_sent_alert_is_an_error_naming_the_status(intake: tuple[Settings, Any]) -> None:
    settings, handler = intake
    handler.status = 401
    with pytest.raises(SendError, match=r"CanaryImageErrors: HTTP 401"):
        send(settings, "wrong", STEP)


def test_an_unreachable_intake_is_an_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(SendError, match="unreachable"):
        send(Settings(home=tmp_path, host="127.0.0.1", airflow_port=9), "t", STEP)


def test_a_sent_alert_of_an_unknown_sender_is_refused_with_the_valid_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        description: x
        traffic: {rate: 3}
        faults: [{name: error_burst, channel: image}]
        sent_alerts: [{sender: datadog, alertname: A}]
        expect: {rollback: true}
        """,
    )
    (problem,) = problems(path)
    assert problem.endswith("case.yaml:4: sent_alerts[0].sender: Input should be 'grafana' (got 'datadog')")


def test_the_two_senders_scenario_expects_one_incident_holding_both_groups() -> None:
    sc = load_scenario(SCENARIOS / "two_senders_one_incident.yaml")
    assert sc.expect.max_incidents == 1 and sc.expect.alert_groups == 2
    assert [(a.sender, a.after) for a in sc.sent_alerts] == [("grafana", "alert")]


def test_alert_groups_passes_with_both_groups_and_fails_with_one_naming_them() -> None:
    expect = {**FULL, "alert_groups": 2}
    am, grafana = '{}:{target="testbed", version="canary"}', '{}/{}:{alertname="CanaryImageErrors"}'
    both = score(scenario(**expect), observation(run_obs(), alert_groups={"incident__a": [am, grafana]}))
    groups = next(e for e in both.expectations if e.name == "alert_groups")
    assert groups.passed and groups.observed == 2 and grafana in groups.detail
    one = score(scenario(**expect), observation(run_obs(), alert_groups={"incident__a": [am]}))
    failed = next(e for e in one.expectations if e.name == "alert_groups")
    assert not failed.passed and failed.observed == 1
    none = score(scenario(**expect), observation(run_obs()))
    assert "holds no alert group" in next(e for e in none.expectations if e.name == "alert_groups").detail
