"""Senders other than a current Alertmanager: Grafana-managed alerting through its adapter, unknown
versions refused naming what is accepted, and groups Alertmanager truncated (flagged on the incident)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.intake.payload import GrafanaPayload, PayloadError, WebhookPayload, validate
from diagnostics.intake.service import IntakeService
from tests.diagnostics.intake.conftest import MemoryBackend, body, real_payload

PAYLOADS = Path(__file__).parent / "payloads"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text(encoding="utf-8"))
    return data


def refused(data: Any) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        validate(data)
    return info.value


def test_a_grafana_webhook_is_read_as_an_alert_group() -> None:
    p = validate(load("grafana-11-webhook-v1.json"))
    assert isinstance(p, GrafanaPayload) and isinstance(p, WebhookPayload)
    assert (p.origin, p.version, p.org_id, p.state) == ("grafana", "1", 1, "alerting")
    assert p.title == "[FIRING:2]  (blue infra)" and p.group_key == "{}:{}"
    assert [a.labels["alertname"] for a in p.firing] == ["High memory usage", "High CPU usage"]
    assert p.computed_fingerprints == 0 and p.label("team") == "blue"
    # Grafana's per-alert extras are dropped; the v4 fields are what the intake keeps
    assert "values" not in p.alerts[0].model_dump() and "silenceURL" not in p.alerts[0].model_dump()
    assert p.alerts[0].as_conf()["starts_at"] == "2026-04-01T07:51:03.157076Z"  # +02:00 normalised


@pytest.mark.parametrize(
    ("mutate", "field", "message", "fix"),
    [
        (lambda d: d.update(orgId="1"), "orgId", "valid integer", "send a JSON integer"),
        (lambda d: d.pop("groupKey"), "groupKey", "Field required",
         "add the field; Grafana's webhook contact point (payload version 1) always has it"),
        (lambda d: d["alerts"][0].update(status="pending"), "alerts[0].status", "'firing' or 'resolved'",
         "use one of the values"),
        (lambda d: d.update(title=["x"]), "title", "valid string", "send a JSON string"),
    ],
)  # fmt: skip
def test_a_malformed_grafana_webhook_is_named_with_grafanas_fix(
    mutate: Any, field: str, message: str, fix: str
) -> None:
    data = load("grafana-11-webhook-v1.json")
    mutate(data)
    err = refused(data)
    problem = next(p for p in err.problems if p.field == field)
    assert err.status == 422 and message in problem.message and fix in problem.fix, problem


def test_legacy_grafana_is_refused_naming_the_contact_point_to_use() -> None:
    err = refused(load("grafana-7-legacy-notification.json"))
    (problem,) = err.problems
    assert (err.status, problem.field) == (422, "version")
    assert "legacy Grafana alert notification" in problem.message
    assert "Grafana-managed alerting contact point of type webhook" in problem.fix
    assert "Alertmanager-compatible contact point" in problem.fix


@pytest.mark.parametrize(
    ("version", "got"),
    [("5", "is '5'"), ("v4", "is 'v4'"), (4, "is 4 (a JSON number, not a string)"),
     (None, "is null (a JSON null, not a string)"), (["4"], 'is ["4"] (a JSON array, not a string)')],
)  # fmt: skip
def test_an_unknown_version_names_what_was_sent_and_what_is_accepted(version: Any, got: str) -> None:
    data = real_payload()
    data["version"] = version
    problem = next(p for p in refused(data).problems if p.field == "version")
    assert problem.message.startswith(got), problem.message
    assert problem.message.endswith(
        "accepted: '4' (Alertmanager's webhook) or '1' (Grafana-managed alerting's webhook contact point)"
    )
    assert "Grafana webhook contact point" in problem.fix and "Alertmanager webhook_config" in problem.fix


def test_a_grafana_incident_notes_its_origin(service: IntakeService, backend: MemoryBackend) -> None:
    data = load("grafana-11-webhook-v1.json")
    out = service.handle(validate(data), body(data))
    assert out.outcome == "created" and out.run_id is not None
    run = backend.runs[out.run_id]
    assert run.conf["origin"] == "grafana" and run.conf["receiver"] == "triage24-webhook"
    assert "sent by grafana (receiver triage24-webhook)" in run.note
    resolved = json.loads(json.dumps(data))
    resolved["status"] = "resolved"
    for a in resolved["alerts"]:
        a["status"], a["endsAt"] = "resolved", "2026-04-01T09:00:00Z"
    done = service.handle(validate(resolved), body(resolved))
    assert (done.outcome, done.run_id) == ("resolved", out.run_id)


def test_an_alertmanager_incident_says_nothing_about_its_origin(
    service: IntakeService, backend: MemoryBackend
) -> None:
    data = real_payload()
    out = service.handle(validate(data), body(data))
    assert out.run_id is not None
    run = backend.runs[out.run_id]
    assert run.conf["origin"] == "alertmanager" and "sent by" not in run.note
    assert "partial group" not in run.note and "partial group" not in out.detail


def test_a_truncated_group_is_flagged_on_the_incident(service: IntakeService, backend: MemoryBackend) -> None:
    data = load("am-0.27-truncated-max-alerts.json")
    out = service.handle(validate(data), body(data))
    assert out.outcome == "created" and out.run_id is not None
    flag = "graded on a partial group: the sender left out 48 alert(s) (Alertmanager's max_alerts)"
    assert out.detail == f"new incident for 2 firing alert(s); {flag}; run created"
    run = backend.runs[out.run_id]
    assert run.conf["truncated_alerts"] == 48
    assert f"**{flag}**: the grade may be too low" in run.note.split("\n\n")
    (delivery,) = service.journal.deliveries(limit=10)
    assert flag in delivery.detail


def test_a_truncated_resolve_is_a_partial_group_not_a_grade(service: IntakeService) -> None:
    data = load("am-0.27-truncated-max-alerts.json")
    data["status"] = "resolved"
    for a in data["alerts"]:
        a["status"], a["endsAt"] = "resolved", "2026-05-11T09:00:00Z"
    out = service.handle(validate(data), body(data))
    assert out.outcome == "resolved"
    assert out.detail.endswith(
        "; a partial group: the sender left out 48 alert(s) (Alertmanager's max_alerts)"
    )


@settings(max_examples=50, deadline=None)
@given(
    severity=st.sampled_from(["critical", "Warning", "P0", "info", "sev-x"]),
    n=st.integers(min_value=1, max_value=5),
    org=st.integers(min_value=1, max_value=10**6),
)
def test_the_grafana_adapter_reads_a_group_as_alertmanager_would(severity: str, n: int, org: int) -> None:
    """The same alerts sent by Alertmanager (v4) and by Grafana (v1): same alerts, grade and run id."""
    from diagnostics.intake.decide import payload_run_id
    from diagnostics.intake.grading import Grader, load_grading
    from tests.conftest import REPO
    from tests.diagnostics.intake.conftest import alert, delivery

    grader = Grader(load_grading(REPO / "runbooks" / "grading.yaml"))
    am = delivery(
        [alert(f"{i:x}", 1_800_000_000.0 + i, severity=severity, instance=f"i{i}") for i in range(n)]
    )
    grafana = {**json.loads(json.dumps(am)), "version": "1", "orgId": org, "state": "alerting", "title": "t"}
    a, g = validate(am), validate(grafana)
    assert (a.origin, g.origin) == ("alertmanager", "grafana")
    assert [x.as_conf() for x in a.alerts] == [x.as_conf() for x in g.alerts]
    assert payload_run_id(a) == payload_run_id(g)
    assert grader.grade_group(x.labels for x in a.firing) == grader.grade_group(x.labels for x in g.firing)
