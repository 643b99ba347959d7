"""Shared pieces of the rollback tests: targets built from plain dicts, and the real testbed gateway.

The gateway runs alone as a real process (``python -m testbed gateway``): its stable upstream is a
canned health endpoint (so the recovery probe has a ready stable to see) and its canary a port where
nothing listens — the admin API does not need the upstreams.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from diagnostics.runbooks.schemas import Target
from tests.conftest import free_port
from tests.support.http import Canned, canned_server
from tests.support.testbed_procs import ADMIN_TOKEN, _start, _stop, wait_ready

TOKEN_ENV = "TRIAGE24_TESTBED_ADMIN_TOKEN"
FIXTURES = Path(__file__).parent / "fixtures"
READY_HEALTH = Path(__file__).parents[2] / "fixtures" / "testbed_health_ready.json"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def make_target(
    rollback: dict[str, Any],
    gateway_url: str = "http://127.0.0.1:9",
    stable_url: str = "http://127.0.0.1:9",
    name: str = "testbed",
) -> Target:
    return Target.model_validate(
        {
            "name": name,
            "versions": {"stable": {"base_url": stable_url}, "canary": {"base_url": "http://127.0.0.1:9"}},
            "gateway": {"base_url": gateway_url, "health_path": "/health"},
            "prometheus_selector": {"job": "testbed"},
            "logs": {"source": "files", "paths": ["/nonexistent/*.jsonl"]},
            "rollback": rollback,
        }
    )


def api_client(url: str) -> Any:
    """The real kubernetes client, pointed at a local server that answers like the API server."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = url
    return client.ApiClient(configuration)


def status_body(code: int, message: str) -> dict[str, Any]:
    """A ``Status`` object as the API server answers a failed request."""
    reasons = {403: "Forbidden", 404: "NotFound", 422: "Invalid"}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reasons.get(code, "InternalError"),
        "details": {},
        "code": code,
    }


@dataclass
class Gateway:
    url: str
    stable_url: str
    token: str

    def routing(self) -> dict[str, Any]:
        r = httpx.get(
            f"{self.url}/admin/routing", headers={"Authorization": f"Bearer {self.token}"}, timeout=5
        )
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def set_weight(self, weight: float) -> None:
        r = httpx.put(
            f"{self.url}/admin/routing",
            json={"canary_weight": weight},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=5,
        )
        r.raise_for_status()

    def target(self, **rollback: Any) -> Target:
        config = {"method": "gateway_weight", "admin_token_env": TOKEN_ENV, **rollback}
        return make_target(config, gateway_url=self.url, stable_url=self.stable_url)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The real testbed gateway process, canary weight 10, admin token ADMIN_TOKEN."""
    tmp = tmp_path_factory.mktemp("rollback-gateway")
    ready = Canned(200, json.loads(READY_HEALTH.read_text()) | {"version": "stable"})
    with canned_server({("GET", "/v1/health"): ready}) as stable:
        env = dict(os.environ, TRIAGE24_TESTBED_ADMIN_TOKEN=ADMIN_TOKEN, PYTHONUNBUFFERED="1")
        args = ["gateway", "--stable", stable.url, "--canary", f"http://127.0.0.1:{free_port()}"]
        proc = _start(
            "gateway", [*args, "--canary-weight", "10"], tmp / "gateway.jsonl", tmp, env, free_port()
        )
        try:
            # the canary does not answer, so the gateway's own health is "degraded", not "ready"
            wait_ready(proc.url, "/health", proc, timeout=60, want="degraded")
            yield Gateway(proc.url, stable.url, ADMIN_TOKEN)
        finally:
            _stop(proc)
