"""``GET /metrics`` on the intake app: Prometheus' text format for the metrics token only (401 without
or with a wrong one, the webhook's token refused once a metrics token is set), 503 when no token is
configured at all, and no token in a log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from diagnostics.intake.app import create_app
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.service import IntakeService
from diagnostics.telemetry import Telemetry, TelemetrySources
from tests.diagnostics.intake.conftest import AUTH, TOKEN, Clock, MemoryBackend, body, real_payload

METRICS_TOKEN = "metrics-token-7f3c2a"


def app_client(
    service: IntakeService, settings: IntakeSettings, clock: Clock, metrics_tokens: list[str] | None
) -> TestClient:
    telemetry = Telemetry(TelemetrySources(journal=service.journal.path), cache_s=0)
    tokens = None if metrics_tokens is None else (lambda: metrics_tokens)
    app = create_app(
        lambda: service, lambda: [TOKEN], settings, clock, metrics=telemetry, metrics_tokens=tokens
    )
    return TestClient(app)


@pytest.fixture
def metrics_client(service: IntakeService, settings: IntakeSettings, clock: Clock) -> Iterator[TestClient]:
    with app_client(service, settings, clock, [METRICS_TOKEN]) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_metrics_token_reads_the_metrics_in_prometheus_text_format(
    metrics_client: TestClient, backend: MemoryBackend
) -> None:
    backend.down = "metadata DB unreachable"
    assert metrics_client.post("/alertmanager", content=body(real_payload()), headers=AUTH).status_code == 503
    resp = metrics_client.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "\ntriage24_deliveries_pending 1.0\n" in resp.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong"),
        bearer(METRICS_TOKEN + "x"),
        bearer(TOKEN),
        {"Authorization": f"Basic {METRICS_TOKEN}"},
    ],
    ids=["none", "wrong", "longer", "the-webhook-token", "basic"],
)
def test_a_scrape_without_the_metrics_token_is_refused(
    metrics_client: TestClient, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = metrics_client.get("/metrics", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Bearer realm="triage24-intake"'
    (problem,) = resp.json()["problems"]
    assert "credentials_file" in problem["fix"] and "TRIAGE24_METRICS_TOKEN" in problem["fix"]
    assert "triage24_deliveries" not in resp.text
    assert "rejected metrics scrape" in caplog.text
    for secret in (METRICS_TOKEN, TOKEN):
        assert secret not in caplog.text and secret not in resp.text


def test_without_a_metrics_token_the_webhook_s_is_the_fallback(
    service: IntakeService, settings: IntakeSettings, clock: Clock
) -> None:
    with app_client(service, settings, clock, None) as c:
        assert c.get("/metrics", headers=bearer(TOKEN)).status_code == 200
        assert c.get("/metrics", headers=bearer(METRICS_TOKEN)).status_code == 401


def test_no_token_configured_at_all_is_503_naming_the_fix(
    service: IntakeService, settings: IntakeSettings, clock: Clock
) -> None:
    with app_client(service, settings, clock, []) as c:
        resp = c.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert resp.status_code == 503
    assert "TRIAGE24_METRICS_TOKEN" in resp.json()["problems"][0]["fix"]


def test_an_app_without_metrics_has_no_metrics_route(
    service: IntakeService, settings: IntakeSettings, clock: Clock
) -> None:
    with TestClient(create_app(lambda: service, lambda: [TOKEN], settings, clock)) as c:
        assert c.get("/metrics", headers=bearer(TOKEN)).status_code == 404
