"""An incident as the checks see it: which target, which time window, which run, dry run or not.

Built from a DAG run's ``conf``: either the alert group the intake sends (``schema:
triage24.intake/v1``) or the form an engineer fills in the Airflow UI (``target``, ``window_minutes``,
``dry_run``). A bad conf fails here with the field and the fix, before any check runs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

INTAKE_SCHEMA = "triage24.intake/v1"
SAFE_ID = re.compile(r"^[A-Za-z0-9_.~:+-]{1,250}$")

DEFAULT_WINDOW_MINUTES = 15.0
MAX_WINDOW_MINUTES = 120.0  # the golden window: evidence older than 2 h is not phase-1 evidence


class IncidentError(ValueError):
    """The run's conf cannot describe an incident; the message names the field and the fix."""


class Incident(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: str = Field(pattern=SAFE_ID.pattern, description="the DAG run id")
    target: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    source: Literal["alertmanager", "manual"]
    alert_started_at: datetime = Field(description="the earliest firing alert's startsAt (UTC)")
    analysed_at: datetime = Field(description="when phase 1 looked (UTC): the window's end")
    window_s: float = Field(gt=0, description="the alert window, ending at analysed_at")
    dry_run: bool = False
    grade: str | None = None
    escalated: bool = False
    suspected_version: str | None = None
    alert_names: tuple[str, ...] = ()

    @property
    def window_start(self) -> datetime:
        return self.analysed_at - timedelta(seconds=self.window_s)

    def summary(self) -> dict[str, Any]:
        """Small enough for XCom and the run's note."""
        return {
            "incident_id": self.incident_id,
            "target": self.target,
            "source": self.source,
            "alert_started_at": self.alert_started_at.isoformat(),
            "window": [self.window_start.isoformat(), self.analysed_at.isoformat()],
            "dry_run": self.dry_run,
            "grade": self.grade,
            "escalated": self.escalated,
            "alerts": list(self.alert_names),
        }


def _parse_ts(value: object, field: str) -> datetime:
    if not isinstance(value, str):
        raise IncidentError(f"{field}: expected an ISO-8601 timestamp string, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise IncidentError(f"{field}: not an ISO-8601 timestamp: {value[:60]!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _window_minutes(value: object) -> float:
    try:
        minutes = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise IncidentError(f"window_minutes: expected a number of minutes, got {value!r}") from None
    if not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise IncidentError(f"window_minutes: must be between 1 and {MAX_WINDOW_MINUTES:g} (got {minutes:g})")
    return minutes


def incident_from_conf(
    run_id: str,
    conf: dict[str, Any] | None,
    now: datetime | None = None,
    default_target: str = "testbed",
) -> Incident:
    """The incident a run describes. ``now`` is the analysis time (tests pin it)."""
    conf = dict(conf or {})
    now = (now or datetime.now(UTC)).astimezone(UTC)
    minutes = _window_minutes(conf.get("window_minutes", DEFAULT_WINDOW_MINUTES))
    dry_run = conf.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise IncidentError(f"dry_run: expected true or false, got {dry_run!r}")
    if conf.get("schema") == INTAKE_SCHEMA:
        firing = [a for a in conf.get("alerts") or [] if isinstance(a, dict) and a.get("status") == "firing"]
        starts = [_parse_ts(a.get("starts_at"), "alerts[].starts_at") for a in firing]
        started = min(starts) if starts else now
        names = tuple(sorted({str(a.get("labels", {}).get("alertname", "")) for a in firing} - {""}))
        target = conf.get("target") or default_target
        source: Literal["alertmanager", "manual"] = "alertmanager"
        grade, escalated, version = conf.get("grade"), bool(conf.get("escalated")), conf.get("version")
    elif "schema" in conf:
        raise IncidentError(f"schema: unknown conf schema {conf['schema']!r}; expected {INTAKE_SCHEMA!r}")
    else:
        started = (
            _parse_ts(conf["alert_started_at"], "alert_started_at") if "alert_started_at" in conf else now
        )
        names, source = (), "manual"
        target = conf.get("target") or default_target
        grade, escalated, version = None, False, conf.get("version") or None
    # The window covers the alert's start (a little before it) and at least window_minutes,
    # but never more than the golden window.
    since_alert = (now - started).total_seconds() + 60.0
    window_s = min(max(minutes * 60.0, since_alert), MAX_WINDOW_MINUTES * 60.0)
    try:
        return Incident(
            incident_id=run_id,
            target=str(target),
            source=source,
            alert_started_at=started,
            analysed_at=now,
            window_s=window_s,
            dry_run=dry_run,
            grade=grade if isinstance(grade, str) else None,
            escalated=escalated,
            suspected_version=version if isinstance(version, str) else None,
            alert_names=names,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "conf"
        raise IncidentError(f"{field}: {first['msg']} (got {first.get('input')!r})") from None
