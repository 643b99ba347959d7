"""The on-call Incidents view's Airflow side: the app mounted in Airflow's api-server, its auth and data.

``triage24_plugin.py`` mounts :func:`ui_app` at ``/triage24/ui`` (``fastapi_apps``) and adds it to the
Airflow UI with ``external_views`` (a top-level "Incidents" page, and an "Incident" tab on each DAG
run); the UI shows the pages in a frame. Routes (the routers of :mod:`diagnostics.views.web`)::

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
with the same auth-manager call. The data assembly is :mod:`diagnostics.views.incidents` and the
pages are :mod:`diagnostics.views.web` (both pure, no Airflow import); this module supplies Airflow's
parts and wires the routers into one app. The routers live there rather than beside this file because
Airflow imports every ``.py`` under plugins/ as a top-level module, a package's files included.

No state at import and no AirflowPlugin here: Airflow also executes this file as a plugin module of
its own, which is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fastapi import FastAPI

from diagnostics.views.incidents import DAG_ID
from diagnostics.views.web.access import AccessDenied, Authenticator, Caller, caller_dependency
from diagnostics.views.web.artifact_routes import artifact_router
from diagnostics.views.web.incident_routes import incident_router
from diagnostics.views.web.runbook_routes import runbook_router
from diagnostics.views.web.site import IncidentSource, Site, SourceUnavailable, add_error_handlers

UI_PREFIX = "/triage24/ui"


# --- access ---------------------------------------------------------------------------------------


async def airflow_authenticate(token: str, dag_id: str = DAG_ID) -> Caller:
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


class AirflowIncidentSource:
    """Runs and task instances from this Airflow's metadata DB (inside an Airflow server process)."""

    def __init__(self, dag_id: str = DAG_ID) -> None:
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


def create_ui_app(
    source: IncidentSource | None = None,
    authenticate: Authenticator = airflow_authenticate,
    config: UiConfig | None = None,
) -> FastAPI:
    """The view as one app: the routers, each behind the same authentication, and the error pages."""
    site = Site(source or AirflowIncidentSource(), config or UiConfig())
    caller = caller_dependency(authenticate)
    app = FastAPI(title="Triage24 incidents", docs_url=None, redoc_url=None, openapi_url=None)
    add_error_handlers(app, site)
    app.include_router(incident_router(site, caller))
    app.include_router(artifact_router(site, caller))
    app.include_router(runbook_router(site, caller))
    return app


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
