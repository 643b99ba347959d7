"""The on-call Incidents view: server-rendered pages mounted in Airflow's api-server.

``triage24_plugin.py`` mounts :func:`ui_app` at ``/triage24/ui`` (``fastapi_apps``) and adds it to the
Airflow UI with ``external_views`` (a top-level "Incidents" page, and an "Incident" tab on each DAG
run); the UI shows the pages in a frame. Routes::

    GET /incidents                         the list (?target= &grade= &status= &limit=)
    GET /incidents/{run_id}                one incident
    GET /incidents/{run_id}/report         its HTML report (?download=1: as an attachment)
    GET /incidents/{run_id}/bundles/{stamp}            an audit bundle's files
    GET /incidents/{run_id}/bundles/{stamp}.tar.gz     the bundle as one download
    GET /incidents/{run_id}/bundles/{stamp}/files/...  one file of it
    GET /runbooks, /runbooks/{name}        the Markdown runbooks, rendered
    GET /api/incidents, /api/incidents/{run_id}        the same data as JSON

**Access.** Airflow does not authenticate plugin routes, so every route here does: the caller's
Airflow JWT (``Authorization: Bearer`` first, else the UI's ``_token`` cookie, which the browser sends
to the framed pages) is validated by the auth manager itself, ``get_auth_manager().get_user_from_token``
(signature, expiry, audience, revocation), and the user must be allowed to read the incident DAG's
runs (``is_authorized_dag(method="GET", access_entity=RUN)``, the check Airflow's own DAG-run API
makes). No or an invalid token answers 401 (JSON on ``/api``, an HTML page with the sign-in link on the
pages), a user without access 403.

**Data.** Airflow's own records, read in-process with its ORM (``DagRun``, ``TaskInstance``), like the
intake does, plus the artifact root; there is no second store. In-process rather than the REST API
over loopback: the api-server would call its own listener (whose reachable URL it does not reliably
know behind a proxy or a base path, and which may have no free worker while this request holds one),
for the same rows it can read directly; the authorization the REST API would apply is applied above
with the same auth-manager call. The data assembly is :mod:`diagnostics.views.incidents` (pure, no
Airflow import); this module fetches and renders.

No state at import and no AirflowPlugin here: Airflow also executes this file as a plugin module of
its own, which is harmless.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import tarfile
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlparse

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from diagnostics.runbooks.loader import RunbookError, load_yaml_model
from diagnostics.runbooks.schemas import Sop
from diagnostics.views import incidents as view

log = logging.getLogger("triage24.ui")

UI_PREFIX = "/triage24/ui"
TEMPLATES = Path(view.__file__).resolve().parent / "templates"
TOKEN_COOKIE = "_token"  # noqa: S105 - a cookie name: Airflow's COOKIE_NAME_JWT_TOKEN
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
GRADES = ("L1", "L2", "L3", "L4", "ungraded")


# --- access ---------------------------------------------------------------------------------------


class AccessDenied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Caller:
    name: str


Authenticator = Callable[[str], Awaitable[Caller]]
"""Validates a presented JWT: returns the caller, or raises AccessDenied (401 invalid, 403 not allowed)."""


async def airflow_authenticate(token: str, dag_id: str = view.DAG_ID) -> Caller:
    """The caller of ``token``, validated by Airflow's auth manager; AccessDenied otherwise."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from jwt import ExpiredSignatureError, InvalidTokenError

    try:
        manager = get_auth_manager()
    except RuntimeError as exc:  # only inside an api-server is there one
        raise AccessDenied(503, f"Airflow's auth manager is not initialised here: {exc}") from None
    try:
        user = await manager.get_user_from_token(token)
    except ExpiredSignatureError:
        raise AccessDenied(401, "your Airflow session has expired: sign in again") from None
    except InvalidTokenError:
        raise AccessDenied(401, "the Airflow token is not valid: sign in again") from None
    allowed = manager.is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    )
    if not allowed:
        raise AccessDenied(403, f"{user.get_name()} may not read the runs of the DAG {dag_id}")
    return Caller(name=user.get_name())


def airflow_login_url(next_url: str) -> str | None:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return airflow_base_path() + get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # no auth manager (tests of the app alone): no link
        return None


def airflow_base_path() -> str:
    """The path part of ``[api] base_url`` (the UI's prefix); "" when served at the root."""
    try:
        from airflow.configuration import conf

        return urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    except Exception:
        return ""


# --- data -----------------------------------------------------------------------------------------


class IncidentSource(Protocol):
    """Airflow's records of the incident DAG's runs, as plain dicts."""

    def runs(self, limit: int) -> list[dict[str, Any]]: ...

    def run(self, run_id: str) -> dict[str, Any] | None: ...

    def task_instances(self, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]: ...


class SourceUnavailable(RuntimeError):
    pass


class AirflowIncidentSource:
    """Runs and task instances from this Airflow's metadata DB (inside an Airflow server process)."""

    def __init__(self, dag_id: str = view.DAG_ID) -> None:
        self.dag_id = dag_id

    @staticmethod
    def _run_dict(run: Any) -> dict[str, Any]:
        return {
            "run_id": run.run_id,
            "state": run.state,
            "conf": run.conf or {},
            "queued_at": run.queued_at,
            "start_date": run.start_date,
            "end_date": run.end_date,
            "note": run.note,
        }

    def runs(self, limit: int) -> list[dict[str, Any]]:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select
        from sqlalchemy.orm import joinedload

        try:
            with create_session() as session:
                query = (
                    select(DagRun)
                    .options(joinedload(DagRun.dag_run_note))
                    .where(DagRun.dag_id == self.dag_id)
                    .order_by(DagRun.id.desc())
                    .limit(limit)
                )
                return [self._run_dict(r) for r in session.scalars(query).unique()]
        except Exception as exc:
            raise SourceUnavailable(
                f"reading the runs of {self.dag_id}: {type(exc).__name__}: {exc}"
            ) from None

    def run(self, run_id: str) -> dict[str, Any] | None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select
        from sqlalchemy.orm import joinedload

        try:
            with create_session() as session:
                found = session.scalar(
                    select(DagRun)
                    .options(joinedload(DagRun.dag_run_note))
                    .where(DagRun.dag_id == self.dag_id, DagRun.run_id == run_id)
                )
                return None if found is None else self._run_dict(found)
        except Exception as exc:
            raise SourceUnavailable(f"reading run {run_id}: {type(exc).__name__}: {exc}") from None

    def task_instances(self, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from sqlalchemy import select

        out: dict[str, list[dict[str, Any]]] = {r: [] for r in run_ids}
        columns = (TI.run_id, TI.task_id, TI.state, TI.start_date, TI.end_date, TI.try_number, TI.map_index)
        try:
            with create_session() as session:
                for start in range(0, len(run_ids), 500):  # stay under any DB's bound-parameter limit
                    chunk = list(run_ids[start : start + 500])
                    query = select(*columns).where(TI.dag_id == self.dag_id, TI.run_id.in_(chunk))
                    for row in session.execute(query):
                        out[row.run_id].append(
                            {
                                "task_id": row.task_id,
                                "state": row.state,
                                "start_date": row.start_date,
                                "end_date": row.end_date,
                                "try_number": row.try_number,
                                "map_index": row.map_index,
                            }
                        )
        except Exception as exc:
            raise SourceUnavailable(f"reading task instances: {type(exc).__name__}: {exc}") from None
        return out


# --- the app --------------------------------------------------------------------------------------


def _artifact_root() -> Path:
    from diagnostics.config import Settings

    return Settings().artifacts


def _runbooks_dir() -> Path:
    from diagnostics.config import Settings

    return Settings().runbooks_dir


@dataclass
class UiConfig:
    """Where the view reads from; each is called per request (settings may change under tests)."""

    artifact_root: Callable[[], Path] = _artifact_root
    runbooks_dir: Callable[[], Path] = _runbooks_dir
    airflow_base_path: Callable[[], str] = airflow_base_path
    login_url: Callable[[str], str | None] = airflow_login_url
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def _security_headers(nonce: str | None = None, sandbox: bool = False) -> dict[str, str]:
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


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = view.format_duration
    env.filters["when"] = view.format_time
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    env.filters["urlpath"] = lambda value: quote(str(value), safe="/")
    return env


def create_ui_app(
    source: IncidentSource | None = None,
    authenticate: Authenticator = airflow_authenticate,
    config: UiConfig | None = None,
) -> FastAPI:
    src: IncidentSource = source or AirflowIncidentSource()
    cfg = config or UiConfig()
    env = _templates()
    app = FastAPI(title="Triage24 incidents", docs_url=None, redoc_url=None, openapi_url=None)

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def page(
        request: Request, template: str, caller: Caller | None, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        ui_base, airflow_base = base(request), cfg.airflow_base_path()
        html = env.get_template(template).render(
            nonce=nonce,
            user=caller.name if caller else None,
            ui=lambda path: ui_base + path,
            airflow=lambda path: airflow_base + path,
            dag_id=view.DAG_ID,
            status=status,
            **ctx,
        )
        return HTMLResponse(html, status_code=status, headers=_security_headers(nonce))

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith(base(request) + "/api/") or request.url.path.startswith("/api/")

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
        response = page(
            request,
            "error.html",
            None,
            status=exc.status,
            title={401: "Sign in to Airflow", 403: "Not allowed"}.get(exc.status, "Unavailable"),
            message=exc.message,
            login_url=cfg.login_url(str(request.url)) if exc.status == 401 else None,
        )
        response.headers.update(headers)
        return response

    @app.exception_handler(SourceUnavailable)
    async def unavailable(request: Request, exc: SourceUnavailable) -> Response:
        log.warning("incidents view: %s", exc)
        message = f"Airflow's metadata DB could not be read ({str(exc)[:300]}); retry in a moment."
        if wants_json(request):
            return JSONResponse({"error": "unavailable", "detail": message}, status_code=503)
        return page(
            request, "error.html", None, status=503, title="Unavailable", message=message, login_url=None
        )

    async def caller(request: Request) -> Caller:
        header = request.headers.get("authorization")
        token = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AccessDenied(401, "the Authorization header must be 'Bearer <Airflow JWT>'")
            token = value.strip()
        else:
            token = request.cookies.get(TOKEN_COOKIE) or None
        if not token:
            raise AccessDenied(401, "sign in to Airflow first (no Airflow token on this request)")
        return await authenticate(token)

    def not_found(request: Request, who: Caller, message: str) -> Response:
        if wants_json(request):
            return JSONResponse({"error": "not_found", "detail": message}, status_code=404)
        return page(
            request, "error.html", who, status=404, title="Not found", message=message, login_url=None
        )

    def _sop() -> Sop:
        directory = cfg.runbooks_dir()
        try:
            return load_yaml_model(directory / "sop.yaml", Sop)
        except RunbookError as exc:
            raise SourceUnavailable(f"runbooks/sop.yaml is not valid: {exc}") from None

    def _limit(request: Request) -> int:
        raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise ValueError(f"limit: a whole number from 1 to {MAX_LIMIT}")
        return int(raw)

    def _listing(filters: view.IncidentFilter, limit: int) -> view.IncidentList:
        runs = src.runs(limit)
        tasks = src.task_instances([r["run_id"] for r in runs])
        return view.list_incidents(runs, tasks, cfg.artifact_root(), _sop(), filters, now=cfg.now())

    def _detail(run_id: str) -> view.IncidentDetail | None:
        run = src.run(run_id)
        if run is None:
            return None
        tasks = src.task_instances([run_id]).get(run_id, [])
        return view.incident_detail(
            run, tasks, cfg.artifact_root(), _sop(), cfg.runbooks_dir(), now=cfg.now()
        )

    def bad_request(request: Request, who: Caller, message: str) -> Response:
        if wants_json(request):
            return JSONResponse({"error": "bad_request", "detail": message}, status_code=400)
        return page(
            request, "error.html", who, status=400, title="Bad request", message=message, login_url=None
        )

    # --- pages ---

    @app.get("/")
    async def index(request: Request) -> Response:
        await caller(request)
        return RedirectResponse(base(request) + "/incidents", status_code=307)

    @app.get("/incidents")
    async def incidents(request: Request) -> Response:
        who = await caller(request)
        try:
            filters, limit = view.parse_filter(request.query_params), _limit(request)
        except ValueError as exc:
            return bad_request(request, who, str(exc))
        data = await anyio.to_thread.run_sync(_listing, filters, limit)
        grades = sorted(set(GRADES) | set(data.grades))
        return page(request, "incidents.html", who, data=data, grades=grades, limit=limit)

    @app.get("/incidents/{run_id}")
    async def incident(request: Request, run_id: str) -> Response:
        who = await caller(request)
        detail = await anyio.to_thread.run_sync(_detail, run_id)
        if detail is None:
            return not_found(request, who, f"no run {run_id!r} of {view.DAG_ID}")
        return page(request, "incident.html", who, d=detail)

    @app.get("/incidents/{run_id}/report")
    async def report(request: Request, run_id: str) -> Response:
        who = await caller(request)
        try:
            path = view.artifact_file(cfg.artifact_root(), run_id, *view.REPORT)
        except view.ArtifactNotFound:
            return not_found(request, who, f"no report for {run_id!r} yet (phase 3 writes it)")
        download = request.query_params.get("download") in ("1", "true")
        return FileResponse(
            path,
            media_type="text/html; charset=utf-8",
            headers=_security_headers(sandbox=True),
            filename=f"{run_id}-report.html",
            content_disposition_type="attachment" if download else "inline",
        )

    def _bundle(run_id: str, stamp: str) -> Path:
        """The bundle folder (AccessDenied-free: ArtifactNotFound for any bad or missing part)."""
        root = cfg.artifact_root()
        manifest = view.artifact_file(root, view.AUDIT_DIR, view.BUNDLES_DIR, run_id, stamp, "manifest.json")
        return manifest.parent

    @app.get("/incidents/{run_id}/bundles/{stamp}.tar.gz")
    async def bundle_archive(request: Request, run_id: str, stamp: str) -> Response:
        who = await caller(request)
        try:
            folder = _bundle(run_id, stamp)
        except view.ArtifactNotFound:
            return not_found(request, who, f"no audit bundle {stamp!r} for {run_id!r}")
        spooled = await anyio.to_thread.run_sync(_tar, folder, f"{run_id}-{stamp}")
        return StreamingResponse(
            _chunks(spooled),
            media_type="application/gzip",
            headers={
                "Content-Disposition": f'attachment; filename="{quote(run_id)}-{quote(stamp)}.tar.gz"',
                "Cache-Control": "no-store",
            },
        )

    @app.get("/incidents/{run_id}/bundles/{stamp}")
    async def bundle(request: Request, run_id: str, stamp: str) -> Response:
        who = await caller(request)
        try:
            folder = _bundle(run_id, stamp)
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (view.ArtifactNotFound, OSError, ValueError):
            return not_found(request, who, f"no readable audit bundle {stamp!r} for {run_id!r}")
        listed = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
        files = [
            {"path": p, "size": e.get("size"), "sha256": e.get("sha256")}
            for p, e in sorted(listed.items())
            if isinstance(e, dict)
        ]
        files += [{"path": n, "size": None, "sha256": None} for n in ("manifest.json", "seal.json")]
        omitted = [o for o in manifest.get("omitted") or [] if isinstance(o, dict)]
        return page(
            request,
            "bundle.html",
            who,
            run_id=run_id,
            stamp=stamp,
            manifest=manifest,
            files=files,
            omitted=omitted,
            relative_path=f"{view.AUDIT_DIR}/{view.BUNDLES_DIR}/{run_id}/{stamp}",
        )

    @app.get("/incidents/{run_id}/bundles/{stamp}/files/{path:path}")
    async def bundle_file(request: Request, run_id: str, stamp: str, path: str) -> Response:
        who = await caller(request)
        try:
            folder = _bundle(run_id, stamp)
            found = view.artifact_file(folder, *path.split("/"))
        except view.ArtifactNotFound:
            return not_found(request, who, f"no file {path!r} in that bundle")
        media = "application/json" if found.suffix == ".json" else "text/plain; charset=utf-8"
        return FileResponse(found, media_type=media, headers=_security_headers(sandbox=True))

    @app.get("/runbooks")
    async def runbooks(request: Request) -> Response:
        who = await caller(request)
        return page(
            request, "runbook.html", who, name=None, html=None, names=view.runbook_names(cfg.runbooks_dir())
        )

    @app.get("/runbooks/{name}")
    async def runbook(request: Request, name: str) -> Response:
        who = await caller(request)
        directory = cfg.runbooks_dir()
        try:
            html = view.render_runbook(directory, name)
        except view.RunbookNotFound as exc:
            return not_found(request, who, str(exc))
        return page(request, "runbook.html", who, name=name, html=html, names=view.runbook_names(directory))

    # --- data ---

    @app.get("/api/incidents")
    async def api_incidents(request: Request) -> Response:
        who = await caller(request)
        try:
            filters, limit = view.parse_filter(request.query_params), _limit(request)
        except ValueError as exc:
            return bad_request(request, who, str(exc))
        data = await anyio.to_thread.run_sync(_listing, filters, limit)
        return JSONResponse(data.model_dump(mode="json"), headers={"Cache-Control": "no-store"})

    @app.get("/api/incidents/{run_id}")
    async def api_incident(request: Request, run_id: str) -> Response:
        who = await caller(request)
        detail = await anyio.to_thread.run_sync(_detail, run_id)
        if detail is None:
            return not_found(request, who, f"no run {run_id!r} of {view.DAG_ID}")
        return JSONResponse(detail.model_dump(mode="json"), headers={"Cache-Control": "no-store"})

    return app


def _tar(folder: Path, prefix: str) -> Any:
    """The bundle's regular files (no links) as a gzipped tar in a spooled temp file, rewound."""
    spooled = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - returned open
    with tarfile.open(fileobj=spooled, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            tar.add(path, arcname=f"{prefix}/{path.relative_to(folder).as_posix()}", recursive=False)
    spooled.seek(0)
    return spooled


def _chunks(fileobj: io.IOBase, size: int = 64 * 1024) -> Iterator[bytes]:
    try:
        while chunk := fileobj.read(size):
            yield chunk
    finally:
        fileobj.close()


def ui_app() -> FastAPI:
    """The app the plugin mounts (the real Airflow source and auth)."""
    return create_ui_app()


# Where the Airflow UI shows the view (plugin external_views): a top-level "Incidents" button in the
# navigation (no ``category``: a categorised view goes into that menu, e.g. "browse" under Browse, and
# ``nav_top_level`` is then ignored), and an "Incident" tab on every DAG run (for runs of other DAGs
# the tab says there is no such incident). The UI frames ``href``; ``url_route`` is its path there
# (``/plugin/incidents``, ``/dags/<dag>/runs/<run>/plugin/incident``).
EXTERNAL_VIEWS: list[dict[str, Any]] = [
    {
        "name": "Incidents",
        "href": f"{UI_PREFIX}/incidents",
        "destination": "nav",
        "url_route": "incidents",
        "nav_top_level": True,
    },
    {
        "name": "Incident",
        "href": f"{UI_PREFIX}/incidents/{{RUN_ID}}",
        "destination": "dag_run",
        "url_route": "incident",
    },
]
