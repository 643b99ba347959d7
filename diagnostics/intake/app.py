"""The webhook as a FastAPI app (no Airflow import): the Airflow plugin mounts it in the api-server.

Routes (all authenticated: Airflow does not protect plugin routes):

- ``POST /alertmanager``: an Alertmanager webhook v4 delivery (or a Grafana-managed alerting webhook,
  version 1, read through its adapter) -> 201 created, 200 duplicate / update / joined (another
  group's open incident, by a correlation rule) / resolved / recorded, 503 pending (Alertmanager
  retries; the journal keeps it); 401 unauthenticated, 413 too large, 415 not JSON, 400 not
  parseable, 422 wrong schema.
- ``GET /health``: the journal's counts and whether Airflow is reachable.
- ``POST /reconcile``: replay pending incidents, close finished ones, flush notes.
- ``GET /metrics``: Triage24's own metrics in Prometheus' text format (:mod:`diagnostics.telemetry`),
  when the app is given them; bearer token only (Prometheus' ``authorization.credentials_file``),
  checked against the metrics tokens (the plugin: Connection ``triage24_metrics``, else
  ``TRIAGE24_METRICS_TOKEN``, else the webhook's). 401 without or with a wrong token.

Authentication: ``Authorization: Bearer <token>`` (Alertmanager's ``http_config.authorization``),
or an HMAC-SHA256 signature ``X-Triage24-Signature: sha256=<hex>`` over ``<timestamp>.<body>`` with
``X-Triage24-Timestamp: <unix seconds>`` inside the replay window. Both compare in constant time.
Tokens are never logged, echoed or stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from diagnostics.intake.config import TOKEN_ENV, IntakeSettings
from diagnostics.intake.journal import JournalError
from diagnostics.intake.payload import FieldProblem, PayloadError, WebhookPayload, parse, too_large
from diagnostics.intake.service import IntakeService, Outcome
from diagnostics.telemetry import CONTENT_TYPE, METRICS_TOKEN_ENV, Telemetry

log = logging.getLogger("triage24.intake")

TokenSource = Callable[[], list[str]]
SIGNATURE_HEADER = "x-triage24-signature"
TIMESTAMP_HEADER = "x-triage24-timestamp"


def _error(
    status: int, error: str, problems: list[FieldProblem], headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": error, "problems": [p.as_dict() for p in problems]}
    return JSONResponse(body, status_code=status, headers=headers)


_ERRORS = {
    400: "body is not acceptable JSON",
    413: "body too large",
    415: "unsupported content type",
    422: "payload is not an Alertmanager webhook v4 (or Grafana webhook v1) alert group",
}


def _unauthorized(message: str, fix: str | None = None) -> JSONResponse:
    fix = fix or (
        "send 'Authorization: Bearer <token>' (Alertmanager: http_config.authorization.credentials_file) "
        f"with the token of the Airflow Connection or {TOKEN_ENV}"
    )
    return _error(
        401,
        "unauthorized",
        [FieldProblem("Authorization", message, fix)],
        headers={"WWW-Authenticate": 'Bearer realm="triage24-intake"'},
    )


_METRICS_FIX = (
    "send 'Authorization: Bearer <token>' (Prometheus: scrape_configs[].authorization.credentials_file) "
    f"with the metrics token (Airflow Connection triage24_metrics, {METRICS_TOKEN_ENV}, else the webhook's)"
)


def _not_configured() -> JSONResponse:
    return _error(
        503,
        "intake not configured",
        [
            FieldProblem(
                "token",
                "no webhook token is configured on the server",
                f"set the Airflow Connection's password or {TOKEN_ENV} in the api-server's environment",
            )
        ],
    )


class _Auth:
    def __init__(self, tokens: TokenSource, window_s: float, clock: Callable[[], float]) -> None:
        self.tokens = tokens
        self.window_s = window_s
        self.clock = clock

    def bearer(self, header: str, valid: list[str]) -> bool:
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return False
        given = presented.strip().encode("utf-8", "surrogateescape")
        # Compare against every valid token (no early exit) so timing says nothing about which.
        matches = [hmac.compare_digest(given, t.encode("utf-8")) for t in valid]
        return any(matches)

    def signature(self, timestamp: str, signature: str, body: bytes, valid: list[str]) -> str | None:
        """None when valid, else why not."""
        try:
            ts = float(timestamp)
        except ValueError:
            return f"{TIMESTAMP_HEADER} must be unix seconds"
        if abs(self.clock() - ts) > self.window_s:
            return f"{TIMESTAMP_HEADER} is outside the {self.window_s:g} s replay window"
        scheme, _, given = signature.partition("=")
        if scheme.strip().lower() != "sha256" or not given:
            return f"{SIGNATURE_HEADER} must be sha256=<hex>"
        message = timestamp.encode("ascii", "replace") + b"." + body
        expected = [hmac.new(t.encode("utf-8"), message, hashlib.sha256).hexdigest() for t in valid]
        matches = [
            hmac.compare_digest(given.strip().lower().encode("ascii", "replace"), e.encode())
            for e in expected
        ]
        return None if any(matches) else "signature does not match"


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _Lazy:
    """Builds the service on first use (the plugin module is imported by every Airflow process)."""

    def __init__(self, factory: Callable[[], IntakeService]) -> None:
        self.factory = factory
        self._service: IntakeService | None = None
        self._lock = threading.Lock()

    def get(self) -> IntakeService:
        if self._service is None:
            with self._lock:
                if self._service is None:
                    self._service = self.factory()
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.stop()


def _journal_unavailable(exc: JournalError) -> JSONResponse:
    return _error(503, "journal unavailable", [FieldProblem("journal", str(exc)[:500], "see the log")])


class _Routes:
    """The route handlers: authenticate, then hand the work to the (lazily built) service."""

    def __init__(
        self,
        lazy: _Lazy,
        tokens: TokenSource,
        settings: IntakeSettings,
        clock: Callable[[], float],
        telemetry: tuple[Telemetry, TokenSource] | None = None,
    ) -> None:
        self.lazy = lazy
        self.tokens = tokens
        self.telemetry = telemetry
        self.settings = settings
        self.clock = clock
        self.auth = _Auth(tokens, settings.signature_window_s, clock)
        # Journal work runs on one dedicated thread (it is serialized by the journal anyway); only a
        # run creation (an Airflow call that may wait on its DB) goes to the thread pool.
        self.journal_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triage24-journal")

    def service_or_error(self) -> IntakeService | JSONResponse:
        try:
            return self.lazy.get()
        except Exception as exc:  # misconfiguration: say what, answer 503 so Alertmanager retries
            log.error("intake cannot start: %s", exc)
            return _error(
                503,
                "intake unavailable",
                [FieldProblem("server", str(exc)[:500], "fix the configuration named here and retry")],
            )

    async def authenticate(self, request: Request, body: bytes | None) -> JSONResponse | None:
        valid = [t for t in self.tokens() if t]
        if not valid:
            log.error("webhook token not configured; refusing deliveries")
            return _not_configured()
        header = request.headers.get("authorization")
        if header is not None:
            if self.auth.bearer(header, valid):
                return None
            log.warning("rejected request from %s: wrong bearer token", _client(request))
            return _unauthorized("wrong bearer token")
        sig, ts = request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        if sig is not None and ts is not None and body is not None:
            why = self.auth.signature(ts, sig, body, valid)
            if why is None:
                return None
            log.warning("rejected request from %s: %s", _client(request), why)
            return _unauthorized(why)
        log.warning("rejected request from %s: no credentials", _client(request))
        return _unauthorized("missing bearer token or signature")

    async def alertmanager(self, request: Request) -> JSONResponse:
        received_at = self.clock()
        limit = self.settings.max_body_bytes
        signed = SIGNATURE_HEADER in request.headers and "authorization" not in request.headers
        if not signed and (denied := await self.authenticate(request, None)):
            return denied
        body = await _read_body(request, limit)
        if body is None:
            return _error(413, _ERRORS[413], [too_large(limit)])
        if signed and (denied := await self.authenticate(request, body)):
            return denied
        try:
            payload = parse(body, request.headers.get("content-type"), limit)
        except PayloadError as exc:
            log.info("refused delivery from %s: HTTP %d: %s", _client(request), exc.status, str(exc)[:300])
            return _error(exc.status, _ERRORS.get(exc.status, "bad request"), exc.problems)
        service = self.service_or_error()
        if isinstance(service, JSONResponse):
            return service
        try:
            outcome = await self._deliver(service, payload, body, received_at)
        except JournalError as exc:
            log.error("journal unavailable, delivery refused with 503 (Alertmanager retries): %s", exc)
            return _error(
                503,
                "journal unavailable",
                [FieldProblem("journal", str(exc)[:500], "free disk space / fix permissions of the journal")],
                headers={"Retry-After": "10"},
            )
        headers = {"Retry-After": "10"} if outcome.http_status == 503 else None
        return JSONResponse(outcome.as_dict(), status_code=outcome.http_status, headers=headers)

    async def _deliver(
        self, service: IntakeService, payload: WebhookPayload, body: bytes, received_at: float
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        plan = await loop.run_in_executor(self.journal_thread, service.accept, payload, body, received_at)
        if plan.create or plan.reevaluate or service.inline:  # Airflow calls: off the event loop
            return await anyio.to_thread.run_sync(service.complete, plan, received_at)
        return service.complete(plan, received_at)

    async def health(self, request: Request) -> JSONResponse:
        return await self._call(request, lambda service: service.health())

    async def reconcile(self, request: Request) -> JSONResponse:
        return await self._call(request, lambda service: service.reconcile().as_dict())

    async def metrics(self, request: Request) -> Response:
        """Bearer only: a scraper has no body to sign. The reading runs off the event loop."""
        assert self.telemetry is not None
        telemetry, tokens = self.telemetry
        valid = [t for t in tokens() if t]
        if not valid:
            log.error("metrics token not configured; refusing scrapes")
            problem = FieldProblem(
                "token",
                "no metrics token (nor a webhook token) is configured on the server",
                f"set the Airflow Connection triage24_metrics' password or {METRICS_TOKEN_ENV}",
            )
            return _error(503, "metrics not configured", [problem])
        header = request.headers.get("authorization")
        if header is None or not self.auth.bearer(header, valid):
            why = "wrong bearer token" if header is not None else "missing bearer token"
            log.warning("rejected metrics scrape from %s: %s", _client(request), why)
            return _unauthorized(why, _METRICS_FIX)
        body = await anyio.to_thread.run_sync(telemetry.render)
        return Response(body, media_type=CONTENT_TYPE)

    async def _call(self, request: Request, work: Callable[[IntakeService], dict[str, Any]]) -> JSONResponse:
        """An authenticated route whose work (journal, Airflow) runs in the thread pool."""
        if denied := await self.authenticate(request, None):
            return denied
        service = self.service_or_error()
        if isinstance(service, JSONResponse):
            return service
        try:
            report = await anyio.to_thread.run_sync(work, service)
        except JournalError as exc:
            return _journal_unavailable(exc)
        return JSONResponse(report)


def create_app(
    service_factory: Callable[[], IntakeService],
    tokens: TokenSource,
    settings: IntakeSettings | None = None,
    clock: Callable[[], float] = time.time,
    metrics: Telemetry | None = None,
    metrics_tokens: TokenSource | None = None,
) -> FastAPI:
    """The intake app; with ``metrics``, also ``GET /metrics``, authenticated with ``metrics_tokens``
    (default: the webhook's ``tokens``)."""
    settings = settings or IntakeSettings()
    lazy = _Lazy(service_factory)
    telemetry = (metrics, metrics_tokens or tokens) if metrics is not None else None
    routes = _Routes(lazy, tokens, settings, clock, telemetry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Runs where the app is served on its own (tests, a standalone server); mounted in Airflow's
        # api-server the maintainer is a daemon thread that ends with the process.
        yield
        lazy.close()

    app = FastAPI(
        title="Triage24 alert intake", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.intake = lazy
    app.add_api_route("/alertmanager", routes.alertmanager, methods=["POST"])
    app.add_api_route("/health", routes.health, methods=["GET"])
    app.add_api_route("/reconcile", routes.reconcile, methods=["POST"])
    if telemetry is not None:
        app.add_api_route("/metrics", routes.metrics, methods=["GET"])
    return app


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
