"""An incident as the checks see it: which target, which time window, which run, dry run or not.

Built from a DAG run's typed ``conf`` (:mod:`diagnostics.incident.conf`): the alert group the intake
sends or the form an engineer fills in the Airflow UI. A bad conf fails here with the field and the
fix, before any check runs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diagnostics.incident.conf import (
    DEFAULT_WINDOW_MINUTES,
    INTAKE_SCHEMA,
    MAX_WINDOW_MINUTES,
    ConfError,
    IncidentConf,
    ManualConf,
    parse_conf,
)
from diagnostics.pii import mask_pii

__all__ = [
    "DEFAULT_WINDOW_MINUTES",
    "INTAKE_SCHEMA",
    "MAX_WINDOW_MINUTES",
    "GateAlert",
    "Incident",
    "IncidentError",
    "incident_from_conf",
]

SAFE_ID = re.compile(r"^[A-Za-z0-9_.~:+-]{1,250}$")
MAX_GATE_ALERTS = 20
_NUMBER = re.compile(r"^[+-]?[0-9.eE+-]+$")


class GateAlert(BaseModel):
    """A firing alert that carries a ``gate`` label (a hard canary gate, the canary watch): its labels
    and annotations travel with the incident, for the decision to weigh the evidence they carry.
    Annotations are PII-masked (plain numbers are kept: they are counts and e-values, not people)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def masked(cls, labels: dict[str, str], annotations: dict[str, str]) -> GateAlert:
        kept = {k: v if _NUMBER.match(v) else mask_pii(v) for k, v in annotations.items()}
        return cls(labels=dict(labels), annotations=kept)


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
    gate_alerts: tuple[GateAlert, ...] = Field(
        default=(), description=f"firing alerts with a gate label (at most {MAX_GATE_ALERTS})"
    )

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


def incident_from_conf(
    run_id: str,
    conf: dict[str, Any] | IncidentConf | ManualConf | None,
    now: datetime | None = None,
    default_target: str = "testbed",
) -> Incident:
    """The incident a run describes. ``now`` is the analysis time (tests pin it)."""
    try:
        typed = conf if isinstance(conf, IncidentConf | ManualConf) else parse_conf(conf)
    except ConfError as exc:
        raise IncidentError(str(exc)) from None
    now = (now or datetime.now(UTC)).astimezone(UTC)
    target = typed.target or default_target
    version = typed.version
    source: Literal["alertmanager", "manual"]
    if isinstance(typed, IncidentConf):
        starts = [_parse_ts(a.starts_at, "alerts[].starts_at") for a in typed.firing]
        started = min(starts) if starts else now
        names = tuple(sorted({a.alertname for a in typed.firing} - {""}))
        source, grade, escalated = "alertmanager", typed.grade, typed.escalated
        gates = tuple(
            GateAlert.masked(a.labels, a.annotations) for a in typed.firing if a.labels.get("gate")
        )[:MAX_GATE_ALERTS]
    else:
        started = _parse_ts(typed.alert_started_at, "alert_started_at") if typed.alert_started_at else now
        names, source, grade, escalated, gates = (), "manual", None, False, ()
    minutes = typed.window_minutes
    dry_run = typed.dry_run
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
            grade=grade,
            escalated=escalated,
            suspected_version=version,
            alert_names=names,
            gate_alerts=gates,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "conf"
        raise IncidentError(f"{field}: {first['msg']} (got {first.get('input')!r})") from None
