"""The Triage24 Airflow plugin: the Alertmanager webhook intake, mounted in the api-server.

``POST /triage24/intake/alertmanager`` (plus ``GET .../health`` and ``POST .../reconcile``). Airflow
does not authenticate plugin routes; the intake requires the webhook token itself. The logic lives in
``diagnostics.intake`` (no Airflow import); this module supplies the Airflow parts:

``AirflowRunBackend`` creates incident runs with ``trigger_dag`` (as the REST API does, without an
HTTP hop or credentials), reads their state and task states, writes their notes, and answers a waiting
human gate with the HITL REST API's own handler (``PATCH .../hitlDetails``, called in-process).
Every Airflow failure becomes ``BackendUnavailable``: the delivery stays pending in the journal (HTTP
503, Alertmanager retries) and is replayed (by the api-server every 30 s, the reconciler DAG,
``triage24 intake reconcile``).

The token: the password of the Airflow Connection ``triage24_webhook`` (extra
``{"previous_tokens": [...]}`` keeps old tokens valid during a rotation), else the environment
variable ``TRIAGE24_WEBHOOK_TOKEN``. Re-read in the background every 30 s (a rotation takes effect
within about that); registered with Airflow's secrets masker; never logged.

``GET /triage24/intake/metrics``: Triage24's own metrics for Prometheus (``diagnostics.telemetry``:
the journal, the artifact root, and the failed phase-2 tasks in this Airflow's metadata DB). Its
token: the password of the Connection ``triage24_metrics`` (+ ``previous_tokens``), else
``TRIAGE24_METRICS_TOKEN``, else the webhook's tokens: a separate token lets Prometheus read the
metrics without being able to post alerts.

The same plugin mounts the on-call Incidents view (``triage24_ui.py``, at ``/triage24/ui``) and shows
it in the Airflow UI through ``external_views``; that view validates Airflow's own JWT on every route.

Airflow imports every ``.py`` under plugins/ as a top-level module: the intake stays in this file;
``triage24_ui.py`` holds no plugin class and no import-time state, so its second import is harmless.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI
from triage24_ui import EXTERNAL_VIEWS, UI_PREFIX, ui_app

from diagnostics.config import Settings
from diagnostics.intake.app import create_app
from diagnostics.intake.backend import BackendUnavailable
from diagnostics.intake.config import TOKEN_ENV, IntakeSettings
from diagnostics.intake.service import IntakeService, build_service
from diagnostics.telemetry import METRICS_TOKEN_ENV, Telemetry, TelemetrySettings, TelemetrySources

log = logging.getLogger("triage24.intake")

URL_PREFIX = "/triage24/intake"


def _unavailable(what: str, exc: Exception) -> BackendUnavailable:
    return BackendUnavailable(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")


class _IntakeUser:
    """Who the HITL record says answered: the intake (the handler reads only its id and name)."""

    def get_id(self) -> str:
        return "triage24-intake"

    def get_name(self) -> str:
        return "triage24-intake"


class AirflowRunBackend:
    """Incident runs in this Airflow's metadata DB (only usable inside an Airflow server process)."""

    def create_run(self, dag_id: str, run_id: str, conf: dict[str, Any], note: str) -> bool:
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.exceptions import DagNotFound, DagRunAlreadyExists
        from airflow.utils.types import DagRunTriggeredByType

        try:
            trigger_dag(
                dag_id,
                triggered_by=DagRunTriggeredByType.REST_API,
                triggering_user_name="triage24-intake",
                run_id=run_id,
                conf=conf,
                note=note[:1000],
            )
        except DagRunAlreadyExists:
            return False
        except DagNotFound as exc:
            raise BackendUnavailable(
                f"DAG {dag_id!r} is not loaded in Airflow ({exc}); deploy it or set TRIAGE24_INTAKE_DAG_ID"
            ) from None
        except Exception as exc:  # DB down or locked, conf refused by the DAG's params, ...
            log.warning("creating run %s of %s failed", run_id, dag_id, exc_info=True)
            raise _unavailable(f"creating run {run_id}", exc) from None
        return True

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        try:
            with create_session() as session:
                state = session.scalar(
                    select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                )
        except Exception as exc:
            raise _unavailable(f"reading run {run_id}", exc) from None
        return None if state is None else str(getattr(state, "value", state))

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        try:
            with create_session() as session:
                run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
                if run is None:
                    raise BackendUnavailable(f"run {run_id} of {dag_id} does not exist")
                if run.dag_run_note is None:
                    run.note = note[:1000]
                else:
                    run.dag_run_note.content = note[:1000]
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise _unavailable(f"setting the note of run {run_id}", exc) from None

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None] | None:
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from sqlalchemy import select

        try:
            with create_session() as session:
                exists = session.scalar(
                    select(DagRun.id).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                )
                if exists is None:
                    return None
                rows = session.execute(
                    select(TI.task_id, TI.state).where(
                        TI.dag_id == dag_id, TI.run_id == run_id, TI.map_index == -1
                    )
                )
                return {
                    str(r.task_id): None if r.state is None else str(getattr(r.state, "value", r.state))
                    for r in rows
                }
        except Exception as exc:
            raise _unavailable(f"reading the tasks of run {run_id}", exc) from None

    def answer_gate(
        self, dag_id: str, run_id: str, task_id: str, option: str, params: dict[str, Any]
    ) -> bool:
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.utils.session import create_session
        from fastapi import HTTPException

        try:
            with create_session() as session:
                update_hitl_detail(  # the REST route's own handler: its locking, checks and resume
                    dag_id=dag_id,
                    dag_run_id=run_id,
                    task_id=task_id,
                    update_hitl_detail_payload=UpdateHITLDetailPayload(
                        chosen_options=[option], params_input=params
                    ),
                    user=_IntakeUser(),
                    session=session,
                    map_index=-1,
                )
        except HTTPException as exc:
            if exc.status_code in (404, 409):  # no longer waiting: answered, timed out or cleared
                return False
            raise BackendUnavailable(
                f"answering {task_id} of run {run_id}: HTTP {exc.status_code}: {exc.detail}"
            ) from None
        except Exception as exc:
            raise _unavailable(f"answering {task_id} of run {run_id}", exc) from None
        return True

    def ping(self, dag_id: str) -> str:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        try:
            with create_session() as session:
                found = session.scalar(select(DagModel.dag_id).where(DagModel.dag_id == dag_id))
        except Exception as exc:
            raise _unavailable("Airflow metadata DB", exc) from None
        if found is None:
            raise BackendUnavailable(f"DAG {dag_id!r} is not loaded in Airflow")
        return f"Airflow metadata DB; DAG {dag_id} loaded"


class TokenSource:
    """Valid tokens: the Connection's password (+ previous_tokens), else the environment variable
    ``env`` (the webhook's by default).

    Called on the api-server's event loop, so it never waits on the metadata DB after the first
    load: an expired cache is served while one background thread re-reads the Connection."""

    def __init__(self, connection_id: str, ttl_s: float = 30.0, env: str = TOKEN_ENV) -> None:
        self.connection_id = connection_id
        self.ttl_s = ttl_s
        self.env = env
        self._cached: tuple[float, list[str]] | None = None
        self._lock = threading.Lock()
        self._refreshing = False

    def __call__(self) -> list[str]:
        with self._lock:
            cached = self._cached
            if cached is not None:
                if time.monotonic() - cached[0] > self.ttl_s and not self._refreshing:
                    self._refreshing = True
                    threading.Thread(target=self._refresh, name="triage24-token-refresh", daemon=True).start()
                return cached[1]
        tokens = self._load()  # the very first call
        with self._lock:
            self._cached = (time.monotonic(), tokens)
        return tokens

    def _refresh(self) -> None:
        try:
            tokens = self._load()
            with self._lock:
                self._cached = (time.monotonic(), tokens)
        finally:
            self._refreshing = False

    def _load(self) -> list[str]:
        tokens = self._from_connection()
        if not tokens and os.environ.get(self.env):
            tokens = [os.environ[self.env]]
        try:
            from airflow._shared.secrets_masker import mask_secret

            for token in tokens:
                mask_secret(token)
        except ImportError:  # pragma: no cover - older layouts; masking is a second line of defence
            pass
        return tokens

    def _from_connection(self) -> list[str]:
        try:
            from airflow.exceptions import AirflowNotFoundException
            from airflow.models.connection import Connection
        except ImportError:  # pragma: no cover
            return []
        try:
            conn = Connection.get_connection_from_secrets(self.connection_id)
        except AirflowNotFoundException:
            return []
        except Exception as exc:  # DB unreachable: fall back to the environment, say so (not the value)
            log.warning(
                "connection %s unreadable (%s); using %s", self.connection_id, type(exc).__name__, self.env
            )
            return []
        tokens = [conn.password] if conn.password else []
        previous = conn.extra_dejson.get("previous_tokens", [])
        if isinstance(previous, list):
            tokens += [t for t in previous if isinstance(t, str) and t]
        return tokens


def phase2_task_failures(dag_id: str) -> dict[str, int]:
    """Every phase-2 task of the incident DAG this Airflow has run, with how many of its task
    instances are failed (0 included, so Prometheus sees a check's first failure as an increase)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import case, func, select

    from diagnostics.incident.task_ids import DEEP_DIAGNOSIS

    prefix = f"{DEEP_DIAGNOSIS}."
    failed = func.sum(case((TI.state == "failed", 1), else_=0))
    with create_session() as session:
        rows = session.execute(
            select(TI.task_id, failed)
            .where(TI.dag_id == dag_id, TI.task_id.startswith(prefix))
            .group_by(TI.task_id)
        ).all()
    return {str(task).removeprefix(prefix): int(n or 0) for task, n in rows}


def intake_app(settings: IntakeSettings | None = None, telemetry: TelemetrySettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    telemetry = telemetry or TelemetrySettings()

    def factory() -> IntakeService:
        return build_service(AirflowRunBackend(), settings, background=True)

    webhook = TokenSource(settings.connection_id)
    metrics_token = TokenSource(telemetry.connection_id, env=METRICS_TOKEN_ENV)
    metrics = Telemetry(
        TelemetrySources(
            journal=settings.journal_path(),
            artifacts=Settings().artifacts,
            phase2_failures=lambda: phase2_task_failures(settings.dag_id),
        ),
        cache_s=telemetry.cache_s,
    )
    return create_app(
        factory,
        webhook,
        settings,
        metrics=metrics,
        metrics_tokens=lambda: metrics_token() or webhook(),
    )


class Triage24Plugin(AirflowPlugin):
    name = "triage24"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": intake_app(), "url_prefix": URL_PREFIX, "name": "Triage24 alert intake"},
        {"app": ui_app(), "url_prefix": UI_PREFIX, "name": "Triage24 incidents view"},
    ]
    external_views: ClassVar[list[dict[str, Any]]] = EXTERNAL_VIEWS
