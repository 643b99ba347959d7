"""Triage24 self-check: are the runbooks valid and can the pipeline reach its evidence sources?

Runs hourly so a broken runbook or an unreachable Prometheus is found before an incident needs it.
An unreachable source is reported as ``insufficient_evidence`` (the run still succeeds); an invalid
runbook fails the run, because every incident would fail the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from diagnostics.config import Settings


@dag(
    dag_id="triage24_selfcheck",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["triage24", "selfcheck"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def triage24_selfcheck() -> None:
    @task
    def validate_runbooks() -> dict[str, object]:
        from diagnostics.runbooks import load_runbooks

        books = load_runbooks()
        return {
            "phases": [p.id for p in books.sop.phases],
            "problem_types": len(books.priority_matrix.problems),
            "targets": [t.name for t in books.targets.targets],
        }

    @task
    def probe_evidence_sources() -> list[dict[str, object]]:
        from diagnostics.sources.probes import probe_http

        s = Settings()
        sources = {
            "prometheus": f"http://{s.host}:{s.prometheus_port}/-/ready",
            "alertmanager": f"http://{s.host}:{s.alertmanager_port}/-/ready",
        }
        return [probe_http(name, url).model_dump(mode="json") for name, url in sources.items()]

    validate_runbooks()
    probe_evidence_sources()


triage24_selfcheck()
