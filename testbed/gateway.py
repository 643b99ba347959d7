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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from testbed.logs import bind_trace, fields, setup_logging, trace_from_headers
from testbed.metrics import GatewayMetrics
from testbed.service import ADMIN_TOKEN_ENV, ROUTES, check_admin

STRATEGIES = ("percentage", "user_hash", "header")
VERSIONS = ("stable", "canary")
SESSION_COOKIE = "t24_session"
SESSION_HEADER = "x-session-id"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
    "date",
    "server",
}


def bucket(key: str) -> float:
    """Stable position of ``key`` in [0, 100) (SHA-256 based, the same on every machine)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 10000 / 100.0


@dataclass(frozen=True)
class Decision:
    version: str
    reason: str  # weight_zero | header | session | user_hash | percentage | header_default


class Router:
    """The routing policy; ``decide`` is pure apart from the session table and the random draw."""

    def __init__(
        self,
        canary_weight: float = 10.0,
        strategy: str = "percentage",
        *,
        session_ttl_s: float = 1800.0,
        max_sessions: int = 100_000,
        rng: random.Random | None = None,
    ) -> None:
        self.validate(canary_weight, strategy)
        self.canary_weight = float(canary_weight)
        self.strategy = strategy
        self.session_ttl_s = session_ttl_s
        self.max_sessions = max_sessions
        self.rng = rng or random.Random()  # noqa: S311 - traffic split, not security
        self.updated_at = time.time()
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def validate(weight: Any, strategy: Any) -> None:
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
            raise ValueError(f"canary_weight must be a number in 0..100, got {weight!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")

    def update(self, weight: float | None = None, strategy: str | None = None) -> None:
        new_w = self.canary_weight if weight is None else weight
        new_s = self.strategy if strategy is None else strategy
        self.validate(new_w, new_s)
        with self._lock:
            self.canary_weight = float(new_w)
            self.strategy = new_s
            self.updated_at = time.time()

    def state(self) -> dict[str, Any]:
        return {
            "canary_weight": self.canary_weight,
            "strategy": self.strategy,
            "strategies": list(STRATEGIES),
            "updated_at": self.updated_at,
            "sticky_sessions": self.session_counts(),
        }

    def session_counts(self) -> dict[str, int]:
        with self._lock:
            self._expire(time.monotonic())
            counts = dict.fromkeys(VERSIONS, 0)
            for version, _ in self._sessions.values():
                counts[version] += 1
            return counts

    def _expire(self, now: float) -> None:
        while self._sessions:
            _, (_, seen) = next(iter(self._sessions.items()))
            if now - seen <= self.session_ttl_s and len(self._sessions) <= self.max_sessions:
                break
            self._sessions.popitem(last=False)

    def _eligible(self, version: str) -> bool:
        return self.canary_weight > 0 if version == "canary" else self.canary_weight < 100

    def decide(
        self, user_id: str | None = None, session_id: str | None = None, canary_header: str | None = None
    ) -> Decision:
        w = self.canary_weight
        if w <= 0:
            return Decision("stable", "weight_zero")
        header = (canary_header or "").strip().lower()
        if self.strategy == "header" and header in {"always", "never"}:
            return Decision("canary" if header == "always" else "stable", "header")
        now = time.monotonic()
        if session_id:
            with self._lock:
                entry = self._sessions.get(session_id)
                if entry is not None and now - entry[1] <= self.session_ttl_s and self._eligible(entry[0]):
                    self._sessions[session_id] = (entry[0], now)
                    self._sessions.move_to_end(session_id)
                    return Decision(entry[0], "session")
        if self.strategy == "user_hash" and user_id:
            decision = Decision("canary" if bucket(user_id) < w else "stable", "user_hash")
        elif self.strategy == "header":
            decision = Decision("stable", "header_default")
        else:
            decision = Decision("canary" if self.rng.random() * 100 < w else "stable", "percentage")
        if session_id:
            with self._lock:
                self._sessions[session_id] = (decision.version, now)
                self._sessions.move_to_end(session_id)
                self._expire(now)
        return decision


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


def channel_of(path: str) -> str:
    return ROUTES.get(path, ("other", ""))[0]


def create_app(
    settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The gateway app. ``transport`` (tests) replaces the network transport of the upstream client."""
    settings = settings or GatewaySettings.from_env()
    router = Router(settings.canary_weight, settings.strategy)
    metrics = GatewayMetrics()
    logger = setup_logging(
        f"testbed.gateway.{id(router)}", "gateway", settings.log_file, stdout=settings.log_stdout
    )
    upstreams = {"stable": settings.stable_url.rstrip("/"), "canary": settings.canary_url.rstrip("/")}
    state: dict[str, Any] = {"client": None, "poller": None, "last_health": {}}

    def refresh_gauges() -> None:
        metrics.canary_weight.set(router.canary_weight)
        for s in STRATEGIES:
            metrics.strategy.labels(s).set(1.0 if s == router.strategy else 0.0)
        for version, n in router.session_counts().items():
            metrics.sessions.labels(version).set(n)

    refresh_gauges()

    def client() -> httpx.AsyncClient:
        if state["client"] is None:
            state["client"] = httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(settings.upstream_timeout_s, connect=3.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        c: httpx.AsyncClient = state["client"]
        return c

    async def upstream_health(version: str) -> dict[str, Any]:
        url = upstreams[version]
        try:
            r = await client().get(f"{url}/v1/health", timeout=settings.health_timeout_s)
            body = r.json()
            out = {
                "url": url,
                "reachable": True,
                "http_status": r.status_code,
                "status": body.get("status", "unknown"),
                "version": body.get("version"),
                "modules": body.get("modules", {}),
            }
        except (httpx.HTTPError, ValueError) as exc:
            out = {
                "url": url,
                "reachable": False,
                "status": "unreachable",
                "error": f"{type(exc).__name__}: {exc}",
            }
        metrics.upstream_up.labels(version).set(1.0 if out["reachable"] else 0.0)
        state["last_health"][version] = out
        return out

    async def poll() -> None:
        while True:
            await asyncio.gather(*(upstream_health(v) for v in VERSIONS), return_exceptions=True)
            await asyncio.sleep(settings.health_poll_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info(
            "gateway starting: stable=%s canary=%s weight=%s strategy=%s",
            upstreams["stable"],
            upstreams["canary"],
            router.canary_weight,
            router.strategy,
            extra=fields(event="startup"),
        )
        if settings.health_poll_s > 0:
            state["poller"] = asyncio.create_task(poll())
        yield
        if state["poller"] is not None:
            state["poller"].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state["poller"]
        if state["client"] is not None:
            await state["client"].aclose()
        logger.info("gateway stopping", extra=fields(event="shutdown"))

    app = FastAPI(title="Triage24 testbed gray-release gateway", lifespan=lifespan)
    app.state.router = router
    app.state.metrics = metrics

    @app.get("/health")
    async def health() -> dict[str, Any]:
        results = await asyncio.gather(*(upstream_health(v) for v in VERSIONS))
        ups = dict(zip(VERSIONS, results, strict=True))
        if not ups["stable"]["reachable"]:
            status = "error"
        elif any(u["status"] != "ready" for u in ups.values()):
            status = "degraded"
        else:
            status = "ready"
        return {"status": status, "gateway": "ready", "routing": router.state(), "upstreams": ups}

    @app.get("/metrics")
    async def metrics_route() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        refresh_gauges()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/routing")
    async def get_routing(request: Request) -> dict[str, Any]:
        check_admin(request, settings.admin_token)
        return router.state()

    @app.put("/admin/routing")
    async def put_routing(request: Request) -> JSONResponse:
        check_admin(request, settings.admin_token)
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not body or set(body) - {"canary_weight", "strategy"}:
            return JSONResponse(
                {
                    "error": 'body must be {"canary_weight"?: 0..100, "strategy"?: '
                    f"{'|'.join(STRATEGIES)}}} with at least one field"
                },
                status_code=400,
            )
        before = router.state()
        try:
            router.update(body.get("canary_weight"), body.get("strategy"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        metrics.routing_changes.inc()
        refresh_gauges()
        after = router.state()
        logger.warning(
            "routing changed: canary_weight %s -> %s, strategy %s -> %s",
            before["canary_weight"],
            after["canary_weight"],
            before["strategy"],
            after["strategy"],
            extra=fields(
                event="routing_change",
                before={k: before[k] for k in ("canary_weight", "strategy")},
                after={k: after[k] for k in ("canary_weight", "strategy")},
            ),
        )
        return JSONResponse(after)

    @app.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def proxy(path: str, request: Request) -> Response:
        full = f"/v1/{path}"
        channel = channel_of(full)
        incoming = trace_from_headers(request.headers.get("traceparent"))
        bind_trace(incoming, channel, None)
        user_id = request.headers.get("x-user-id")
        session_id = request.headers.get(SESSION_HEADER) or request.cookies.get(SESSION_COOKIE)
        issue_cookie = session_id is None
        if issue_cookie:
            session_id = secrets.token_hex(12)
        decision = router.decide(user_id, session_id, request.headers.get("x-canary"))
        version = decision.version
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        # the gateway's span (incoming.span_id) is the parent of the upstream's span
        headers["traceparent"] = incoming.traceparent
        headers["x-forwarded-for"] = request.client.host if request.client else ""
        body = await request.body()
        url = f"{upstreams[version]}{full}"
        t0 = time.perf_counter()
        try:
            r = await client().request(
                request.method, url, params=request.query_params, content=body, headers=headers
            )
            code = r.status_code
            resp_headers = {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP}
            response = Response(content=r.content, status_code=code, headers=resp_headers)
        except httpx.TimeoutException as exc:
            code = 504
            metrics.upstream_errors.labels(version, "timeout").inc()
            logger.error("upstream timeout: %s %s on %s: %s", request.method, full, version, exc)
            response = JSONResponse({"error": f"upstream timeout ({version})"}, status_code=504)
        except httpx.HTTPError as exc:
            code = 502
            metrics.upstream_errors.labels(version, "connect").inc()
            logger.error("upstream error: %s %s on %s: %s", request.method, full, version, exc)
            response = JSONResponse(
                {"error": f"upstream error ({version}): {type(exc).__name__}"}, status_code=502
            )
        elapsed = time.perf_counter() - t0
        metrics.requests.labels(version, channel, str(code)).inc()
        metrics.latency.labels(version, channel).observe(elapsed)
        response.headers["X-Served-By"] = version
        response.headers["X-Route-Reason"] = decision.reason
        response.headers["X-Trace-Id"] = incoming.trace_id
        if "traceparent" not in response.headers:
            response.headers["traceparent"] = incoming.traceparent
        if issue_cookie and session_id:
            response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="lax", max_age=1800)
        level = logging.ERROR if code >= 500 else logging.INFO
        logger.log(
            level,
            "proxied %s %s -> %s HTTP %d in %.1f ms",
            request.method,
            full,
            version,
            code,
            elapsed * 1000,
            extra=fields(
                upstream=version,
                status=code,
                latency_ms=round(elapsed * 1000, 2),
                route_reason=decision.reason,
                user_id=user_id,
                tenant=request.headers.get("x-tenant"),
            ),
        )
        return response

    return app


def health_summary(h: Mapping[str, Any]) -> str:
    ups = h.get("upstreams", {})
    return " ".join(f"{v}={ups.get(v, {}).get('status')}" for v in VERSIONS)
