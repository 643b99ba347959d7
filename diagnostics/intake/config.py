"""Settings of the alert intake, from ``TRIAGE24_INTAKE_*`` environment variables.

The webhook token is not a setting: it comes from the Airflow Connection ``connection_id`` (its
password) or the environment variable ``TRIAGE24_WEBHOOK_TOKEN``, and is never logged.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from diagnostics.config import Settings

TOKEN_ENV = "TRIAGE24_WEBHOOK_TOKEN"  # noqa: S105 - the variable's name, not a token


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE24_INTAKE_", extra="ignore")

    dag_id: str = Field(
        default="incident_response",
        pattern=r"^[A-Za-z0-9_.-]{1,250}$",
        description="the incident DAG each alert group triggers",
    )
    journal_dir: Path | None = Field(default=None, description="default: <TRIAGE24_HOME>/intake")
    grading_file: Path | None = Field(default=None, description="default: <runbooks_dir>/grading.yaml")
    connection_id: str = Field(default="triage24_webhook", description="Airflow Connection with the token")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    signature_window_s: float = Field(default=300.0, gt=0, le=3600, description="HMAC timestamp tolerance")
    note_interval_s: float = Field(
        default=2.0, ge=0, le=3600, description="least time between two note rewrites of one run in a storm"
    )
    state_cache_s: float = Field(default=2.0, ge=0, le=600, description="how long a run's state is trusted")
    alert_ttl_s: float = Field(
        default=6 * 3600.0, gt=0, description="a firing alert not re-sent for this long no longer counts"
    )
    retention_days: float = Field(
        default=30.0, gt=0, description="journal entries older than this are pruned"
    )

    def journal_path(self, settings: Settings | None = None) -> Path:
        base = self.journal_dir or (settings or Settings()).home / "intake"
        return base / "journal.sqlite3"

    def grading_path(self, settings: Settings | None = None) -> Path:
        return self.grading_file or (settings or Settings()).runbooks_dir / "grading.yaml"
