"""Triage24 scheduled regression watch: the golden multimodal suite and the drift watch against stable
and canary, on the cron of ``runbooks/regression.yaml`` (default every 6 hours).

A regressed canary (a failing channel, or drift at level 2) opens an incident through the alert intake
— graded and deduplicated like any Prometheus alert — so slow degradations are found before an alert
fires. Baselines change only on explicit approval: trigger this DAG by hand with
``record_baseline_from`` = ``stable`` (or ``canary``) to re-record them from that version.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from triage24_airflow.connections import secret

from diagnostics.runbooks import RunbookError, load_runbooks

log = logging.getLogger(__name__)

try:
    _BOOKS = load_runbooks()
    _CRON: str | None = _BOOKS.regression.schedule.cron
    _VERSIONS = list(_BOOKS.regression.schedule.versions)
    _TARGETS = [t.name for t in _BOOKS.targets.targets]
except (RunbookError, OSError) as exc:
    log.error("runbooks could not be loaded: %s", exc)
    _CRON, _VERSIONS, _TARGETS = None, ["stable", "canary"], ["testbed"]


@dag(
    dag_id="triage24_regression",
    schedule=_CRON,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["triage24", "regression"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
    params={
        "target": Param(_TARGETS[0], type="string", title="Target service", examples=_TARGETS),
        "record_baseline_from": Param(
            "none",
            type="string",
            enum=["none", "stable", "canary"],
            title="Record baselines from (explicit approval)",
            description="Re-record the regression and phase-2 baselines from this version after the run "
            "(only when it passes). 'none': just watch.",
        ),
    },
)
def triage24_regression() -> None:
    @task
    def suite(version: str) -> dict[str, Any]:
        """The golden regression suite on one version, against the stored baseline; kept in the history."""
        from diagnostics.verified_delivery.regression.scheduled import suite_and_store

        ctx = get_current_context()
        return suite_and_store(ctx["params"]["target"], version, ctx["dag_run"].run_id)

    @task
    def drift_watch() -> dict[str, Any]:
        """The phase-2 drift check (golden embeddings vs baseline, latency vs the hour before)."""
        from diagnostics.verified_delivery.regression.scheduled import drift_and_store

        ctx = get_current_context()
        return drift_and_store(ctx["params"]["target"], ctx["dag_run"].run_id)

    @task(trigger_rule="all_done")
    def open_incident_if_regressed(results: list[dict[str, Any]], drift: dict[str, Any]) -> dict[str, Any]:
        """A regressed canary -> an alert to the intake (one incident per regression episode)."""
        from diagnostics.config import Settings
        from diagnostics.verified_delivery.regression.scheduled import open_if_regressed

        ctx = get_current_context()
        token, _ = secret("triage24_webhook", "TRIAGE24_WEBHOOK_TOKEN")
        url = f"{Settings().airflow_url}/triage24/intake/alertmanager"
        return open_if_regressed(
            ctx["params"]["target"], [r for r in results if r], drift, url=url, token=token
        )

    @task(trigger_rule="all_done")
    def record_baselines(results: list[dict[str, Any]]) -> dict[str, Any]:
        """Only when a person asked for it (record_baseline_from) and that version passed."""
        from diagnostics.verified_delivery.regression.scheduled import record_if_approved

        ctx = get_current_context()
        return record_if_approved(ctx["params"]["target"], ctx["params"]["record_baseline_from"], results)

    results = suite.expand(version=_VERSIONS)
    opened = open_incident_if_regressed(results, drift_watch())
    opened >> record_baselines(results)


triage24_regression()
