"""What every page of the Incidents view shares: its data source, templates, headers and error pages."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from diagnostics.runbooks.loader import RunbookError, load_yaml_model
from diagnostics.runbooks.schemas import Sop
from diagnostics.views.alerts import AlertSource, JournalAlerts
from diagnostics.views.formatting import format_duration, format_time
from diagnostics.views.incidents import DAG_ID, incident_detail, list_incidents
from diagnostics.views.models import IncidentDetail, IncidentFilter, IncidentList
from diagnostics.views.web.access import AccessDenied, Caller

log = logging.getLogger("triage24.ui")

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class IncidentSource(Protocol):
    """Airflow's records of the incident DAG's runs, as plain dicts."""

    def runs(self, limit: int) -> list[dict[str, Any]]: ...

    def run(self, run_id: str) -> dict[str, Any] | None: ...

    def task_instances(self, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]: ...


class SourceUnavailable(RuntimeError):
    pass


class SiteConfig(Protocol):
    """Where the view reads from; each is called per request (settings may change under tests)."""

    @property
    def artifact_root(self) -> Callable[[], Path]: ...

    @property
    def runbooks_dir(self) -> Callable[[], Path]: ...

    @property
    def airflow_base_path(self) -> Callable[[], str]: ...

    @property
    def login_url(self) -> Callable[[str], str | None]: ...

    @property
    def now(self) -> Callable[[], datetime]: ...


def security_headers(nonce: str | None = None, sandbox: bool = False) -> dict[str, str]:
    if sandbox:  # artifacts: never scripts, never a same-origin document
        csp = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"
    else:
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "img-src 'self' data:; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
        )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = format_duration
    env.filters["when"] = format_time
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    env.filters["urlpath"] = lambda value: quote(str(value), safe="/")
    return env


def ui_base(request: Request) -> str:
    """The path the app is mounted at (``/triage24/ui`` inside Airflow)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(ui_base(request) + "/api/") or request.url.path.startswith("/api/")


class Site:
    """The view's shared parts, handed to each router."""

    def __init__(self, source: IncidentSource, config: SiteConfig, alerts: AlertSource | None = None) -> None:
        """``alerts``: what each incident holds (default: the intake journal of this process)."""
        self.source = source
        self.config = config
        self.alerts = alerts or JournalAlerts()
        self.env = templates()

    def page(
        self, request: Request, template: str, caller: Caller | None, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        base, airflow_base = ui_base(request), self.config.airflow_base_path()
        html = self.env.get_template(template).render(
            nonce=nonce,
            user=caller.name if caller else None,
            ui=lambda path: base + path,
            airflow=lambda path: airflow_base + path,
            dag_id=DAG_ID,
            status=status,
            **ctx,
        )
        return HTMLResponse(html, status_code=status, headers=security_headers(nonce))

    def not_found(self, request: Request, who: Caller, message: str) -> Response:
        return self._error(request, who, 404, "not_found", "Not found", message)

    def bad_request(self, request: Request, who: Caller, message: str) -> Response:
        return self._error(request, who, 400, "bad_request", "Bad request", message)

    def _error(
        self, request: Request, who: Caller, status: int, error: str, title: str, message: str
    ) -> Response:
        if wants_json(request):
            return JSONResponse({"error": error, "detail": message}, status_code=status)
        return self.page(
            request, "error.html", who, status=status, title=title, message=message, login_url=None
        )

    def sop(self) -> Sop:
        directory = self.config.runbooks_dir()
        try:
            return load_yaml_model(directory / "sop.yaml", Sop)
        except RunbookError as exc:
            raise SourceUnavailable(f"runbooks/sop.yaml is not valid: {exc}") from None

    def listing(self, filters: IncidentFilter, limit: int) -> IncidentList:
        runs = self.source.runs(limit)
        ids = [r["run_id"] for r in runs]
        tasks = self.source.task_instances(ids)
        cfg = self.config
        held = self.alerts.alerts(ids)
        return list_incidents(
            runs, tasks, cfg.artifact_root(), self.sop(), filters, now=cfg.now(), alerts=held
        )

    def detail(self, run_id: str) -> IncidentDetail | None:
        run = self.source.run(run_id)
        if run is None:
            return None
        tasks = self.source.task_instances([run_id]).get(run_id, [])
        cfg = self.config
        held = self.alerts.alerts([run_id]).get(run_id)
        return incident_detail(
            run, tasks, cfg.artifact_root(), self.sop(), cfg.runbooks_dir(), now=cfg.now(), alerts=held
        )


def add_error_handlers(app: FastAPI, site: Site) -> None:
    """Refused access (401 / 403) and an unreadable Airflow DB (503), as JSON on ``/api``, else a page."""

    @app.exception_handler(AccessDenied)
    async def denied(request: Request, exc: AccessDenied) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="airflow"'} if exc.status == 401 else {}
        if wants_json(request):
            return JSONResponse(
                {
                    "error": {401: "unauthorized", 403: "forbidden"}.get(exc.status, "unavailable"),
                    "detail": exc.message,
                },
                status_code=exc.status,
                headers={**headers, "Cache-Control": "no-store"},
            )
        response = site.page(
            request,
            "error.html",
            None,
            status=exc.status,
            title={401: "Sign in to Airflow", 403: "Not allowed"}.get(exc.status, "Unavailable"),
            message=exc.message,
            login_url=site.config.login_url(str(request.url)) if exc.status == 401 else None,
        )
        response.headers.update(headers)
        return response

    @app.exception_handler(SourceUnavailable)
    async def unavailable(request: Request, exc: SourceUnavailable) -> Response:
        log.warning("incidents view: %s", exc)
        message = f"Airflow's metadata DB could not be read ({str(exc)[:300]}); retry in a moment."
        if wants_json(request):
            return JSONResponse({"error": "unavailable", "detail": message}, status_code=503)
        return site.page(
            request, "error.html", None, status=503, title="Unavailable", message=message, login_url=None
        )
