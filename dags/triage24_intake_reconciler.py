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

CONNECTION_ID = "triage24_webhook"


def _token() -> str:
    """The webhook token: the Connection's password, else TRIAGE24_WEBHOOK_TOKEN (never logged)."""
    import os

    from airflow.sdk import BaseHook

    try:
        password = BaseHook.get_connection(CONNECTION_ID).password
    except Exception:  # no such connection: the environment is the documented fallback
        password = None
    token = password or os.environ.get("TRIAGE24_WEBHOOK_TOKEN", "")
    if not token:
        raise RuntimeError(
            f"no webhook token: set the Airflow Connection {CONNECTION_ID!r} (password) "
            "or TRIAGE24_WEBHOOK_TOKEN in the workers' environment"
        )
    return token


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
        import httpx

        from diagnostics.config import Settings
        from diagnostics.incident.results import CheckResult, Status

        url = f"{Settings().airflow_url}/triage24/intake/reconcile"
        try:
            resp = httpx.post(url, headers={"Authorization": f"Bearer {_token()}"}, timeout=300)
        except httpx.HTTPError as exc:
            return CheckResult(
                check="intake_reconcile",
                status=Status.INSUFFICIENT_EVIDENCE,
                summary=f"intake unreachable at {url}: {type(exc).__name__}",
            ).model_dump(mode="json")
        if resp.status_code in (401, 403):
            raise RuntimeError(
                f"the intake refused the token (HTTP {resp.status_code}); check {CONNECTION_ID}"
            )
        if resp.status_code != 200:
            return CheckResult(
                check="intake_reconcile",
                status=Status.DEGRADED,
                summary=f"intake answered HTTP {resp.status_code}",
                details={"body": resp.text[:2000]},
            ).model_dump(mode="json")
        report = resp.json()
        pending = report.get("still_pending", {})
        return CheckResult(
            check="intake_reconcile",
            status=Status.DEGRADED if pending else Status.OK,
            summary=(
                f"replayed {len(report.get('replayed', []))}, still pending {len(pending)}, "
                f"closed {len(report.get('closed', []))}, notes written {report.get('notes_written', 0)}"
            ),
            details=report,
        ).model_dump(mode="json")

    reconcile()


triage24_intake_reconciler()
