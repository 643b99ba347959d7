"""Triage24 intake reconciler: nothing Alertmanager sent may stay without its incident run.

Every 5 minutes it asks the intake (the plugin in the api-server, ``POST /triage24/intake/reconcile``)
to replay what the journal holds as pending: incidents whose run could not be created (metadata DB
down, incident DAG not deployed yet), notes that could not be written, incidents whose run finished.
The same replay runs on demand with ``triage24 intake reconcile``.

Result: ``ok`` when nothing is left pending, ``degraded`` when some incident still has no run (the
reason is in the report), ``insufficient_evidence`` when the intake cannot be reached. A refused
token fails the run: every later run would fail the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task
from triage24_airflow.connections import require_secret

CONNECTION_ID = "triage24_webhook"


@dag(
    dag_id="triage24_intake_reconciler",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["triage24", "intake"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def triage24_intake_reconciler() -> None:
    @task
    def reconcile() -> dict[str, object]:
        """Replay the journal's pending incidents; a refused token fails the run, naming the Connection."""
        from diagnostics.config import Settings
        from diagnostics.intake.remote_reconcile import TokenRefused, reconcile_remote

        token = require_secret(CONNECTION_ID, "TRIAGE24_WEBHOOK_TOKEN")
        try:
            result = reconcile_remote(f"{Settings().airflow_url}/triage24/intake/reconcile", token)
        except TokenRefused as exc:
            raise RuntimeError(f"{exc}; check {CONNECTION_ID}") from None
        return result.model_dump(mode="json")

    reconcile()


triage24_intake_reconciler()
