"""The Airflow side of notifications: channel secrets from Airflow Connections (the providers' types,
read the providers' way; here defined as ``AIRFLOW_CONN_*`` variables), the environment where a
Connection is missing, and the failure notifier paging once through the same channels and ledger.
No Airflow database or scheduler: Connections from the environment, receivers on loopback."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from triage24_airflow import notifiers

from diagnostics.notify import Delivery, notify
from diagnostics.notify_channels import secret_source, use_secret_source
from diagnostics.runbooks.notifications import AppriseChannel, PagerDutyChannel, WebhookChannel
from tests.support.notify_receiver import Receiver, receiver

KEY = "R0UTINGKEY0123456789abcdef012345"
ENVS = ("TRIAGE24_NOTIFY_WEBHOOK_URL", "TRIAGE24_NOTIFY_APPRISE_URLS", "TRIAGE24_PAGERDUTY_ROUTING_KEY")


def conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRIAGE24_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    yield
    use_secret_source(None)


def test_each_kind_reads_its_connection_the_providers_way(monkeypatch: pytest.MonkeyPatch) -> None:
    conn(
        monkeypatch,
        "triage24_apprise",
        conn_type="apprise",
        extra={
            "config": [{"path": "msteams://a/b/c", "tag": "oncall"}, {"path": "dingtalk://t", "tag": ["x"]}]
        },
    )
    conn(monkeypatch, "triage24_pagerduty", conn_type="pagerduty_events", password=KEY)
    conn(monkeypatch, "hook_in_password", conn_type="http", password="https://hooks.example/T/B/tok")
    conn(monkeypatch, "hook_in_extra", conn_type="http", extra={"url": "https://hooks.example/x"})
    every = notifiers.connection_secret(
        AppriseChannel(name="c", kind="apprise", connection_id="triage24_apprise")
    )
    oncall = notifiers.connection_secret(
        AppriseChannel(name="c", kind="apprise", connection_id="triage24_apprise", tag="oncall")
    )
    pd = notifiers.connection_secret(
        PagerDutyChannel(name="p", kind="pagerduty", connection_id="triage24_pagerduty")
    )
    a = notifiers.connection_secret(
        WebhookChannel(name="w", kind="webhook", connection_id="hook_in_password")
    )
    b = notifiers.connection_secret(WebhookChannel(name="w", kind="webhook", connection_id="hook_in_extra"))
    assert every is not None and every.values == ("msteams://a/b/c", "dingtalk://t")
    assert oncall is not None and oncall.values == ("msteams://a/b/c",)
    assert pd is not None and (pd.values, pd.origin) == ((KEY,), "Connection triage24_pagerduty")
    assert a is not None and a.values == ("https://hooks.example/T/B/tok",)
    assert b is not None and b.values == ("https://hooks.example/x",)


def test_the_environment_is_used_where_the_connection_is_missing_or_empty(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spec = PagerDutyChannel(
        name="p",
        kind="pagerduty",
        connection_id="triage24_pagerduty",
        routing_key_env="TRIAGE24_PAGERDUTY_ROUTING_KEY",
    )
    assert notifiers.airflow_secrets(spec) is None
    monkeypatch.setenv("TRIAGE24_PAGERDUTY_ROUTING_KEY", "from-env")
    found = notifiers.airflow_secrets(spec)
    assert found is not None and (found.values, found.origin) == (
        ("from-env",),
        "TRIAGE24_PAGERDUTY_ROUTING_KEY",
    )
    conn(monkeypatch, "triage24_pagerduty", conn_type="pagerduty_events", password=KEY)
    found = notifiers.airflow_secrets(spec)
    assert found is not None and found.origin == "Connection triage24_pagerduty"  # the Connection wins
    conn(
        monkeypatch, "triage24_apprise", conn_type="apprise", extra={"config": {"path": "x://y", "tag": "a"}}
    )
    with caplog.at_level(logging.WARNING):
        tagged = AppriseChannel(name="chat", kind="apprise", connection_id="triage24_apprise", tag="other")
        assert notifiers.connection_secret(tagged) is None
    assert "Connection triage24_apprise defines no apprise for notification channel chat" in caplog.text


@pytest.fixture
def chat_and_pager(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Receiver, Receiver]]:
    with receiver("/chat/room") as chat, receiver("/v2/enqueue", ok=202) as pd:
        conn(
            monkeypatch,
            "triage24_apprise",
            conn_type="apprise",
            extra=json.dumps({"config": json.dumps({"path": f"json://{chat.hostport}/chat/room"})}),
        )
        conn(monkeypatch, "triage24_pagerduty", conn_type="pagerduty_events", password=KEY)
        monkeypatch.setenv("TRIAGE24_PAGERDUTY_EVENTS_URL", pd.url)
        notifiers.install()
        yield chat, pd


def test_installed_phases_notify_through_the_connections(chat_and_pager: tuple[Receiver, Receiver]) -> None:
    chat, pd = chat_and_pager
    assert secret_source() is notifiers.airflow_secrets
    result = notify(
        {"incident_id": "incident__c1", "target": "testbed", "grade": "L3"}, "opened", summary="5xx"
    )
    assert result.delivery is Delivery.SENT
    assert [c.channel for c in result.channels] == ["chat", "pager"]  # no webhook Connection nor URL
    assert chat.bodies[0]["message"].startswith("5xx")
    assert pd.bodies[0]["routing_key"] == KEY and pd.bodies[0]["dedup_key"] == "triage24/incident__c1"


def _context(run_id: str) -> dict[str, object]:
    when = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    run = SimpleNamespace(run_id=run_id, conf={"target": "testbed"}, start_date=when, queued_at=when)
    ti = SimpleNamespace(task_id="response.rollback", try_number=2)
    return {"dag_run": run, "params": {}, "ti": ti, "exception": RuntimeError("rollback failed: gateway 503")}


def test_the_failure_notifier_pages_once_and_never_raises(chat_and_pager: tuple[Receiver, Receiver]) -> None:
    chat, pd = chat_and_pager
    page = notifiers.IncidentEscalation()
    page(_context("manual__2026-12-01T09:00:00+00:00"))
    page(_context("manual__2026-12-01T09:00:00+00:00"))  # a second failure of the same incident
    assert len(pd.requests) == 1 and len(chat.requests) == 1
    event = pd.bodies[0]
    assert (event["event_action"], event["payload"]["severity"]) == ("trigger", "critical")
    assert event["payload"]["custom_details"]["message"] == (
        "response.rollback failed: rollback failed: gateway 503"
    )
    assert event["payload"]["custom_details"]["task"] == "response.rollback"
    page({"ti": SimpleNamespace(task_id="x", try_number=1)})  # no dag_run: logged, not raised
    assert len(pd.requests) == 1
