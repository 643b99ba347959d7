"""Settings of Triage24's own metrics (``GET /triage24/intake/metrics``), from ``TRIAGE24_METRICS_*``.

The scrape token is not a setting: it is the password of the Airflow Connection ``connection_id``
(default ``triage24_metrics``; its extra ``{"previous_tokens": [...]}`` keeps old tokens valid during
a rotation), else the environment variable ``TRIAGE24_METRICS_TOKEN``, else the webhook's token(s)
(Connection ``triage24_webhook`` / ``TRIAGE24_WEBHOOK_TOKEN``). A separate token lets Prometheus read
the metrics without being able to post alerts; the fallback keeps a deployment that set only the
webhook token working. Never logged.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

METRICS_TOKEN_ENV = "TRIAGE24_METRICS_TOKEN"  # noqa: S105 - the variable's name, not a token
METRICS_CONNECTION_ID = "triage24_metrics"


class TelemetrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE24_METRICS_", extra="ignore")

    connection_id: str = Field(
        default=METRICS_CONNECTION_ID, description="Airflow Connection whose password is the scrape token"
    )
    cache_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="how long one reading of the journal and the artifacts answers scrapes",
    )
