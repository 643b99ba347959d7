"""Per-request wiring: traces, request metrics and logs, and the error_burst, latency_spike, pii faults."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from testbed import faults as F
from testbed.logs import bind_trace, fields, trace_from_headers
from testbed.serving.config import ROUTES
from testbed.serving.payloads import ServiceError

if TYPE_CHECKING:
    from testbed.serving.core import Service


async def _respond(
    svc: Service, request: Request, call_next: Callable[[Request], Awaitable[Response]], channel: str | None
) -> Response:
    """The route's response, or a 500 from the error_burst fault (after any latency_spike delay)."""
    module = ROUTES[request.url.path][1] if channel else None
    version = svc.settings.version
    try:
        burst = svc.faults.get("error_burst", channel) if channel else None
        spike = svc.faults.get("latency_spike", channel) if channel else None
        if spike is not None:
            await asyncio.sleep(spike.magnitude / 1000.0)
        if burst is not None and svc.rng.random() < burst.magnitude:
            svc.logger.error(
                "HTTP 500 internal server error in %s: worker raised RuntimeError('upstream error: "
                "connection reset by peer')",
                module,
                extra=fields(module=module),
            )
            return JSONResponse({"error": "internal server error", "version": version}, 500)
        return await call_next(request)
    except Exception as exc:
        svc.logger.exception("unhandled error: %s", exc, extra=fields(module=module))
        return JSONResponse({"error": "internal server error", "version": version}, 500)


def _log_request(
    svc: Service, request: Request, channel: str, tenant: str, code: int, elapsed: float
) -> None:
    """The request's log line (with fake caller PII under pii_in_logs) and the slow-request warning."""
    path = request.url.path
    extra: dict[str, Any] = {
        "method": request.method,
        "path": path,
        "status": code,
        "latency_ms": round(elapsed * 1000, 2),
        "module": ROUTES[path][1],
        "user_id": request.headers.get("x-user-id"),
    }
    route = getattr(request.state, "route", None)
    if route:
        extra["route"] = route
    msg = "request completed" if code < 400 else f"request failed: HTTP {code}"
    pii = svc.faults.get("pii_in_logs", channel)
    if pii is not None and svc.pii_rng.random() < pii.magnitude:
        sample = F.make_pii(svc.pii_rng)
        extra["caller"] = {
            "phone": sample.cn_phone,
            "alt_phone": sample.intl_phone,
            "id_card": sample.cn_id,
            "email": sample.email,
            "card": sample.card,
        }
        msg += f" caller profile: {sample.as_text()}"
    level = logging.ERROR if code >= 500 else (logging.WARNING if code >= 400 else logging.INFO)
    svc.logger.log(level, msg, extra={"fields": extra})
    slow = svc.settings.slow_ms.get(channel)
    if slow is not None and elapsed * 1000 > slow:
        svc.logger.warning(
            "slow request: %.0f ms on %s (threshold %.0f ms)",
            elapsed * 1000,
            channel,
            slow,
            extra=fields(latency_ms=round(elapsed * 1000, 2), path=path),
        )


def observe_requests(app: FastAPI, svc: Service) -> None:
    """Install the ``ServiceError`` handler and the middleware every request goes through."""
    version = svc.settings.version

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "version": version}, status_code=exc.status)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        channel = ROUTES.get(request.url.path, (None, None))[0]
        ctx = trace_from_headers(request.headers.get("traceparent"))
        tenant = svc.tenants(request.headers.get("x-tenant"))
        bind_trace(ctx, channel, tenant if channel else None)
        start = time.perf_counter()
        if channel:
            svc.metrics.inflight.labels(version, channel).inc()
        try:
            response = await _respond(svc, request, call_next, channel)
        finally:
            if channel:
                svc.metrics.inflight.labels(version, channel).dec()
        elapsed = time.perf_counter() - start
        response.headers["X-Trace-Id"] = ctx.trace_id
        response.headers["traceparent"] = ctx.traceparent
        response.headers["X-Version"] = version
        response.headers["X-Server-Time"] = f"{svc.now(channel):.3f}"
        if channel:
            svc.metrics.observe(channel, tenant, response.status_code, elapsed)
            _log_request(svc, request, channel, tenant, response.status_code, elapsed)
        return response
