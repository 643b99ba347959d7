"""End to end with a real Prometheus: it scrapes the intake's /metrics (a uvicorn server, the metrics
token from a credentials_file; a wrong token is refused), evaluates the shipped rules, and sees
Triage24DeliveriesPending fire once the intake cannot create runs (nothing listens where Airflow should)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI

from diagnostics.intake.app import create_app
from diagnostics.intake.backend import RestRunBackend
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.journal import Journal
from diagnostics.intake.service import IntakeService
from diagnostics.telemetry import Telemetry, TelemetrySources
from tests.conftest import REPO, free_port
from tests.diagnostics.intake.conftest import body, other_version, real_payload
from tests.support.prometheus import prometheus

WEBHOOK_TOKEN = "it-webhook-token-61b0"
METRICS_TOKEN = "it-metrics-token-2e9d"
RULES = REPO / "deploy" / "prometheus" / "rules" / "triage24.yml"
ALERT = "Triage24DeliveriesPending"


def rules_with_a_short_for(tmp: Path) -> Path:
    """The shipped rules, with the pending-deliveries alert's ``for: 5m`` cut to 2 s so the test sees it
    fire in seconds; every other rule and the alert's expression as shipped."""
    rules = yaml.safe_load(RULES.read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == ALERT]
    assert rule["for"] == "5m", "the shipped rule waits 5 minutes"
    rule["for"] = "2s"
    path = tmp / "triage24.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[str]:
    """The intake app on uvicorn, whose Airflow is unreachable: every new incident stays pending."""
    settings = IntakeSettings(
        journal_dir=tmp_path / "intake", grading_file=REPO / "runbooks" / "grading.yaml"
    )
    nowhere = RestRunBackend(f"http://127.0.0.1:{free_port()}", "admin", "unused", timeout_s=2)
    journal = Journal(settings.journal_path())
    service = IntakeService(journal, nowhere, Grader(load_grading(settings.grading_path())), settings)
    telemetry = Telemetry(
        TelemetrySources(journal=settings.journal_path(), artifacts=tmp_path / "artifacts"), cache_s=0.5
    )
    root = FastAPI()
    app = create_app(
        lambda: service,
        lambda: [WEBHOOK_TOKEN],
        settings,
        metrics=telemetry,
        metrics_tokens=lambda: [METRICS_TOKEN],
    )
    root.mount("/triage24/intake", app)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(root, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "uvicorn did not start"
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        nowhere.close()
        journal.close()


def scrape_job(name: str, address: str, token_file: Path) -> dict[str, Any]:
    return {
        "job_name": name,
        "metrics_path": "/triage24/intake/metrics",
        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
        "static_configs": [{"targets": [address]}],
    }


def alerts(url: str) -> dict[str, dict[str, Any]]:
    data = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {a["labels"]["alertname"]: a for a in data}


@pytest.mark.integration
def test_prometheus_fires_pending_deliveries_when_the_intake_cannot_create_runs(
    intake: str, tmp_path: Path
) -> None:
    good, wrong = tmp_path / "metrics_token", tmp_path / "wrong_token"
    for path, token in ((good, METRICS_TOKEN), (wrong, WEBHOOK_TOKEN)):  # the webhook's is not the metrics'
        path.write_text(token)
        os.chmod(path, 0o600)
    jobs = [scrape_job("triage24", intake, good), scrape_job("triage24-wrong-token", intake, wrong)]
    with prometheus(tmp_path / "prometheus", jobs, rule_files=[rules_with_a_short_for(tmp_path)]) as prom:
        prom.wait_for_series('triage24_deliveries_pending{job="triage24"}')
        assert ALERT not in alerts(prom.url), "nothing pending yet"

        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
        for version in ("canary", "canary-2", "canary-3"):
            payload = real_payload() if version == "canary" else other_version(real_payload(), version)
            resp = httpx.post(
                f"http://{intake}/triage24/intake/alertmanager", content=body(payload), headers=headers
            )
            assert resp.status_code == 503 and resp.json()["outcome"] == "pending", resp.text

        deadline, fired = time.monotonic() + 40, None
        while time.monotonic() < deadline:
            fired = alerts(prom.url).get(ALERT)
            if fired is not None and fired["state"] == "firing":
                break
            time.sleep(0.5)
        assert fired is not None and fired["state"] == "firing", f"{ALERT} did not fire: {fired}"
        assert {k: fired["labels"][k] for k in ("job", "component", "severity")} == {
            "job": "triage24",
            "component": "triage24",
            "severity": "critical",
        }
        assert float(fired["value"]) == 3
        assert fired["annotations"]["summary"].startswith("3 alert deliveries pending for 5 minutes")

        targets = httpx.get(f"{prom.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets}
        assert health["triage24"] == ("up", "")
        assert health["triage24-wrong-token"][0] == "down" and "401" in health["triage24-wrong-token"][1]
