"""Triage24 incident response: the 24-hour SOP for one alert group (or one manual investigation).

Triggered by the Alertmanager intake (conf = the alert group, graded L1-L4) or by hand from the
"Trigger" form (target, window, dry run). Every check's full result is written as JSON under the
artifact root, ``<root>/<run id>/<phase>/<check>.json``; XCom carries only summaries. An unreachable
dependency never fails the run: its check reports ``insufficient_evidence`` and the run goes on.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, TaskGroup, dag, get_current_context, task

from diagnostics.golden_window import PHASE, PHASE_CHECKS
from diagnostics.runbooks import RunbookError, load_runbooks

log = logging.getLogger(__name__)

try:  # docs and choices come from runbooks/; a broken runbook must not hide the DAG (selfcheck names it)
    _BOOKS = load_runbooks()
    _DOC = _BOOKS.markdown("sop.md")
    _TARGETS = [t.name for t in _BOOKS.targets.targets]
    _PHASE_TITLE = _BOOKS.sop.phase(PHASE).title
except (RunbookError, OSError) as exc:
    _DOC, _TARGETS, _PHASE_TITLE = f"Runbooks could not be loaded: {exc}", ["testbed"], PHASE


def _connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # not defined (the usual case on the local stack): use the settings
        log.info("connection %s not used: %s", conn_id, type(exc).__name__)
        return None


def _sources(target: str) -> Any:
    """Evidence sources from the Airflow Connections ``triage24_prometheus`` and the target's log
    connection (``logs.connection_id`` in targets.yaml, default ``triage24_elasticsearch``) where they
    exist, else the local stack's settings. Credentials stay in the Connection."""
    from diagnostics.golden_window import EvidenceSources

    logs = load_runbooks().targets.get(target).logs
    sources = EvidenceSources.from_settings()
    overrides: dict[str, Any] = {}
    prom = _connection("triage24_prometheus")
    if prom is not None and prom.host:  # built by hand: get_uri() would carry the password into logs
        overrides["prometheus_url"] = f"{prom.schema or 'http'}://{prom.host}:{prom.port or 9090}"
        if prom.password:
            overrides["prometheus_headers"] = {"Authorization": f"Bearer {prom.password}"}
    es = _connection(logs.connection_id) if logs.source == "elasticsearch" else None
    if es is not None and es.host:
        cfg: dict[str, Any] = {"hosts": [f"{es.schema or 'https'}://{es.host}:{es.port or 9200}"]}
        if es.extra_dejson.get("api_key"):
            cfg["api_key"] = es.extra_dejson["api_key"]
        elif es.login:
            cfg["basic_auth"] = (es.login, es.password or "")
        overrides["elasticsearch"] = cfg
    return EvidenceSources(**{**sources.__dict__, **overrides})


@dag(
    dag_id="incident_response",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=16,
    tags=["triage24", "incident"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=20)},
    doc_md=(__doc__ or "") + "\n\n" + _DOC,
    params={
        "target": Param(
            _TARGETS[0],
            type="string",
            title="Target service",
            description="The watched service (runbooks/targets.yaml). An alert's `target` label sets it.",
            examples=_TARGETS,
        ),
        "window_minutes": Param(
            15,
            type="number",
            minimum=1,
            maximum=120,
            title="Alert window (minutes)",
            description="How far back phase 1 reads metrics and logs; it always covers the alert's start.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Collect evidence and decide, but change nothing (no rollback).",
        ),
    },
    render_template_as_native_obj=True,
)
def incident_response() -> None:
    def _incident() -> Any:
        """The run's incident. Each task parses the conf itself (no hand-off task to wait for, so the
        first evidence is one task start away); the window ends at the run's start for all of them."""
        from diagnostics.golden_window import open_incident

        ctx = get_current_context()
        run = ctx["dag_run"]
        conf = {**(run.conf or {}), **{k: ctx["params"][k] for k in ("window_minutes", "dry_run")}}
        conf["target"] = conf.get("target") or ctx["params"]["target"]
        return open_incident(run.run_id, conf, now=run.start_date or run.queued_at)

    @task
    def open_incident() -> dict[str, Any]:
        """Store the incident (target, window, grade); a bad conf fails here, naming the field."""
        from diagnostics.golden_window import store_incident

        return store_incident(_incident())

    open_incident()

    with TaskGroup("golden_window", tooltip=_PHASE_TITLE, doc_md=_PHASE_TITLE):
        results = []
        for name in PHASE_CHECKS:

            @task(task_id=name, doc_md=PHASE_CHECKS[name].__doc__)
            def run_check(check: str = name) -> dict[str, Any]:
                from diagnostics.golden_window import run_and_store

                incident = _incident()
                return run_and_store(check, incident, _sources(incident.target))

            results.append(run_check())

        @task(trigger_rule="all_done")
        def phase_summary(briefs: list[dict[str, Any]]) -> dict[str, Any]:
            """Rank every finding of the phase; the canary gate verdict goes on to the decision."""
            from diagnostics.golden_window import summarize_and_store

            return summarize_and_store(_incident(), [b for b in briefs if b])

        phase_summary(results)


incident_response()
