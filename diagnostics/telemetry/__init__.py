"""Triage24 watched by its own Prometheus: the metrics the intake exports at ``GET /metrics``
(``/triage24/intake/metrics`` in the api-server), computed at scrape time from durable state so every
api-server replica reports the same truth. No Airflow import: the plugin supplies Airflow's part.

| metric | type | labels | from |
|---|---|---|---|
| ``triage24_deliveries_total`` | counter | outcome | journal: deliveries by final outcome |
| ``triage24_deliveries_pending`` | gauge | | journal: deliveries waiting for their run |
| ``triage24_oldest_pending_delivery_timestamp_seconds`` | gauge | | journal |
| ``triage24_open_incidents`` | gauge | grade, state | journal: pending / open incidents |
| ``triage24_incidents_total`` | counter | grade, outcome, decided_by | artifacts: decided runs |
| ``triage24_time_to_decision_seconds`` | histogram | grade | artifacts: alert start -> decision |
| ``triage24_time_to_mitigation_seconds`` | histogram | grade | artifacts: alert start -> rollback |
| ``triage24_human_gates_waiting`` / ``_overdue`` | gauge | grade | artifacts + journal |
| ``triage24_human_gate_oldest_wait_seconds`` | gauge | | artifacts |
| ``triage24_rollbacks_total`` | counter | method, result | artifacts: ``response/rollback.json`` |
| ``triage24_reconciler_runs_total`` | counter | result | journal (``intake.reconciler_runs``) |
| ``triage24_reconciler_last_run_timestamp_seconds`` / ``_last_success_`` | gauge | | journal |
| ``triage24_phase2_failures_total`` | counter | check, reason | Airflow, artifacts |
| ``triage24_telemetry_source_up`` | gauge | source | whether each source was readable |
| ``triage24_telemetry_read_seconds`` | gauge | | the last reading's cost |

The alert rules on them: ``deploy/prometheus/rules/triage24.yml``.
"""

from diagnostics.telemetry.collector import CONTENT_TYPE, Snapshot, Telemetry, TelemetrySources
from diagnostics.telemetry.config import METRICS_CONNECTION_ID, METRICS_TOKEN_ENV, TelemetrySettings

__all__ = [
    "CONTENT_TYPE",
    "METRICS_CONNECTION_ID",
    "METRICS_TOKEN_ENV",
    "Snapshot",
    "Telemetry",
    "TelemetrySettings",
    "TelemetrySources",
]
