"""Gray-release gateway: routes ``/v1/*`` between the stable and canary service.

Strategies (``GET/PUT /admin/routing``, bearer token):

- ``percentage``: each new request (or new session) goes to the canary with probability
  ``canary_weight`` / 100;
- ``user_hash``: a user (``X-User-Id``) goes to the canary if ``bucket(user) < canary_weight``,
  where ``bucket`` maps the SHA-256 of the id onto [0, 100) — the same user always lands on the
  same version for a given weight; requests without a user id fall back to ``percentage``;
- ``header``: ``X-Canary: always`` goes to the canary, ``X-Canary: never`` (or no header) to stable.

``canary_weight = 0`` is the rollback: every request goes to stable, whatever the strategy,
header or session. Session affinity: a session (header ``X-Session-Id`` or cookie ``t24_session``;
the gateway issues the cookie when neither is present) stays on the version it was first routed to
while that version still has weight (canary: weight > 0, stable: weight < 100). ``X-Served-By``
tells the client which version answered.

This module holds the settings and wires the app; the routing policy (``Router``, ``bucket``) is in
``testbed.gateway_routing`` and the HTTP side (upstream client, health, admin and proxy routes) in
``testbed.gateway_http``; the names other code imports from here are re-exported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from testbed.gateway_http import (
    HOP_BY_HOP,
    SESSION_COOKIE,
    SESSION_HEADER,
    Gateway,
    channel_of,
    proxy_routes,
    routing_admin_routes,
    status_routes,
)
from testbed.gateway_routing import STRATEGIES, VERSIONS, Decision, Router, bucket
from testbed.serving.config import ADMIN_TOKEN_ENV

__all__ = [
    "HOP_BY_HOP",
    "SESSION_COOKIE",
    "SESSION_HEADER",
    "STRATEGIES",
    "VERSIONS",
    "Decision",
    "Gateway",
    "GatewaySettings",
    "Router",
    "bucket",
    "channel_of",
    "create_app",
    "health_summary",
]


@dataclass
class GatewaySettings:
    stable_url: str = "http://127.0.0.1:8101"
    canary_url: str = "http://127.0.0.1:8102"
    canary_weight: float = 10.0
    strategy: str = "percentage"
    admin_token: str | None = None
    log_file: Path | None = None
    log_stdout: bool = True
    upstream_timeout_s: float = 60.0
    health_timeout_s: float = 2.0
    health_poll_s: float = 5.0

    @classmethod
    def from_env(cls, **overrides: Any) -> GatewaySettings:
        s = cls(**overrides)
        if "admin_token" not in overrides:
            s.admin_token = os.environ.get(ADMIN_TOKEN_ENV) or None
        return s


def create_app(
    settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The gateway app. ``transport`` (tests) replaces the network transport of the upstream client."""
    gw = Gateway(settings or GatewaySettings.from_env(), transport)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        yield
        await gw.stop()

    app = FastAPI(title="Triage24 testbed gray-release gateway", lifespan=lifespan)
    app.state.router = gw.router
    app.state.metrics = gw.metrics
    app.state.gateway = gw
    for routes in (status_routes(gw), routing_admin_routes(gw), proxy_routes(gw)):
        app.include_router(routes)
    return app


def health_summary(h: Mapping[str, Any]) -> str:
    ups = h.get("upstreams", {})
    return " ".join(f"{v}={ups.get(v, {}).get('status')}" for v in VERSIONS)
