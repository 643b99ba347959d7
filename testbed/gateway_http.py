"""The gateway's HTTP side: upstream client and health polling, and the health, admin and proxy routes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from testbed.gateway_routing import STRATEGIES, VERSIONS, Decision, Router
from testbed.logs import bind_trace, fields, setup_logging, trace_from_headers
from testbed.metrics import GatewayMetrics
from testbed.serving.admin import check_admin
from testbed.serving.config import ROUTES

if TYPE_CHECKING:
    from testbed.gateway import GatewaySettings

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


def channel_of(path: str) -> str:
    return ROUTES.get(path, ("other", ""))[0]


class Gateway:
    """State of the gateway process: routing policy, metrics, logger, upstream client and health."""

    def __init__(self, settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.transport = transport  # tests replace the network transport of the upstream client
        self.router = Router(settings.canary_weight, settings.strategy)
        self.metrics = GatewayMetrics()
        self.logger = setup_logging(
            f"testbed.gateway.{id(self.router)}", "gateway", settings.log_file, stdout=settings.log_stdout
        )
        self.upstreams = {
            "stable": settings.stable_url.rstrip("/"),
            "canary": settings.canary_url.rstrip("/"),
        }
        self.last_health: dict[str, dict[str, Any]] = {}
        self._client: httpx.AsyncClient | None = None
        self._poller: asyncio.Task[None] | None = None
        self.refresh_gauges()

    def refresh_gauges(self) -> None:
        self.metrics.canary_weight.set(self.router.canary_weight)
        for s in STRATEGIES:
            self.metrics.strategy.labels(s).set(1.0 if s == self.router.strategy else 0.0)
        for version, n in self.router.session_counts().items():
            self.metrics.sessions.labels(version).set(n)

    def client(self) -> httpx.AsyncClient:
        # created lazily: inside the running event loop that will use it
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self.transport,
                timeout=httpx.Timeout(self.settings.upstream_timeout_s, connect=3.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        return self._client

    async def upstream_health(self, version: str) -> dict[str, Any]:
        url = self.upstreams[version]
        out: dict[str, Any]
        try:
            r = await self.client().get(f"{url}/v1/health", timeout=self.settings.health_timeout_s)
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
        self.metrics.upstream_up.labels(version).set(1.0 if out["reachable"] else 0.0)
        self.last_health[version] = out
        return out

    async def poll(self) -> None:
        while True:
            await asyncio.gather(*(self.upstream_health(v) for v in VERSIONS), return_exceptions=True)
            await asyncio.sleep(self.settings.health_poll_s)

    async def start(self) -> None:
        self.logger.info(
            "gateway starting: stable=%s canary=%s weight=%s strategy=%s",
            self.upstreams["stable"],
            self.upstreams["canary"],
            self.router.canary_weight,
            self.router.strategy,
            extra=fields(event="startup"),
        )
        if self.settings.health_poll_s > 0:
            self._poller = asyncio.create_task(self.poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._client is not None:
            await self._client.aclose()
        self.logger.info("gateway stopping", extra=fields(event="shutdown"))


def status_routes(gw: Gateway) -> APIRouter:
    """``GET /health`` (the gateway and both upstreams) and ``GET /metrics``."""
    routes = APIRouter()

    @routes.get("/health")
    async def health() -> dict[str, Any]:
        results = await asyncio.gather(*(gw.upstream_health(v) for v in VERSIONS))
        ups = dict(zip(VERSIONS, results, strict=True))
        if not ups["stable"]["reachable"]:
            status = "error"
        elif any(u["status"] != "ready" for u in ups.values()):
            status = "degraded"
        else:
            status = "ready"
        return {"status": status, "gateway": "ready", "routing": gw.router.state(), "upstreams": ups}

    @routes.get("/metrics")
    async def metrics_route() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        gw.refresh_gauges()
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return routes


def routing_admin_routes(gw: Gateway) -> APIRouter:
    """``GET`` and ``PUT /admin/routing`` (bearer token): the canary weight and strategy."""
    routes = APIRouter()

    @routes.get("/admin/routing")
    async def get_routing(request: Request) -> dict[str, Any]:
        check_admin(request, gw.settings.admin_token)
        return gw.router.state()

    @routes.put("/admin/routing")
    async def put_routing(request: Request) -> JSONResponse:
        check_admin(request, gw.settings.admin_token)
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None  # answered as an invalid body below
        if not isinstance(body, dict) or not body or set(body) - {"canary_weight", "strategy"}:
            return JSONResponse(
                {
                    "error": 'body must be {"canary_weight"?: 0..100, "strategy"?: '
                    f"{'|'.join(STRATEGIES)}}} with at least one field"
                },
                status_code=400,
            )
        before = gw.router.state()
        try:
            gw.router.update(body.get("canary_weight"), body.get("strategy"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        gw.metrics.routing_changes.inc()
        gw.refresh_gauges()
        after = gw.router.state()
        gw.logger.warning(
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

    return routes


def _upstream_headers(request: Request, traceparent: str) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    # the gateway's span (incoming.span_id) is the parent of the upstream's span
    headers["traceparent"] = traceparent
    headers["x-forwarded-for"] = request.client.host if request.client else ""
    return headers


async def _forward(
    gw: Gateway, request: Request, version: str, full: str, headers: dict[str, str], body: bytes
) -> Response:
    """The upstream's answer to the request, or a 504 (timeout) / 502 (other transport error)."""
    url = f"{gw.upstreams[version]}{full}"
    try:
        r = await gw.client().request(
            request.method, url, params=request.query_params, content=body, headers=headers
        )
        resp_headers = {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(content=r.content, status_code=r.status_code, headers=resp_headers)
    except httpx.TimeoutException as exc:
        gw.metrics.upstream_errors.labels(version, "timeout").inc()
        gw.logger.error("upstream timeout: %s %s on %s: %s", request.method, full, version, exc)
        return JSONResponse({"error": f"upstream timeout ({version})"}, status_code=504)
    except httpx.HTTPError as exc:
        gw.metrics.upstream_errors.labels(version, "connect").inc()
        gw.logger.error("upstream error: %s %s on %s: %s", request.method, full, version, exc)
        return JSONResponse({"error": f"upstream error ({version}): {type(exc).__name__}"}, status_code=502)


def _log_proxied(
    gw: Gateway, request: Request, full: str, decision: Decision, code: int, elapsed: float
) -> None:
    gw.logger.log(
        logging.ERROR if code >= 500 else logging.INFO,
        "proxied %s %s -> %s HTTP %d in %.1f ms",
        request.method,
        full,
        decision.version,
        code,
        elapsed * 1000,
        extra=fields(
            upstream=decision.version,
            status=code,
            latency_ms=round(elapsed * 1000, 2),
            route_reason=decision.reason,
            user_id=request.headers.get("x-user-id"),
            tenant=request.headers.get("x-tenant"),
        ),
    )


def proxy_routes(gw: Gateway) -> APIRouter:
    """``/v1/*``: routed to stable or canary, with session affinity, traces, metrics and logs."""
    routes = APIRouter()

    @routes.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def proxy(path: str, request: Request) -> Response:
        full = f"/v1/{path}"
        channel = channel_of(full)
        incoming = trace_from_headers(request.headers.get("traceparent"))
        bind_trace(incoming, channel, None)
        session_id = request.headers.get(SESSION_HEADER) or request.cookies.get(SESSION_COOKIE)
        issue_cookie = session_id is None
        if issue_cookie:
            session_id = secrets.token_hex(12)
        user_id = request.headers.get("x-user-id")
        decision = gw.router.decide(user_id, session_id, request.headers.get("x-canary"))
        version = decision.version
        headers = _upstream_headers(request, incoming.traceparent)
        body = await request.body()
        t0 = time.perf_counter()
        response = await _forward(gw, request, version, full, headers, body)
        elapsed = time.perf_counter() - t0
        code = response.status_code
        gw.metrics.requests.labels(version, channel, str(code)).inc()
        gw.metrics.latency.labels(version, channel).observe(elapsed)
        response.headers["X-Served-By"] = version
        response.headers["X-Route-Reason"] = decision.reason
        response.headers["X-Trace-Id"] = incoming.trace_id
        if "traceparent" not in response.headers:
            response.headers["traceparent"] = incoming.traceparent
        if issue_cookie and session_id:
            response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="lax", max_age=1800)
        _log_proxied(gw, request, full, decision, code, elapsed)
        return response

    return routes
