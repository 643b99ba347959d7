"""SOP deadlines: each phase must finish within its ``deadline_h`` of ``runbooks/sop.yaml``, measured
from the alert.

Two halves:

- :func:`deadline_missed` is the callback of the incident DAG's Airflow Deadline Alerts (one per
  phase with a deadline; the triggerer runs it when the run has not finished in time). It checks the
  phase's own completion record (its summary artifact): a phase that did finish is not overdue even
  though the run is still open (e.g. a human gate waiting); otherwise it marks the incident overdue in
  its record (``<artifacts>/<id>/deadlines.json``) and sends the ``overdue`` notification.
- :func:`deadline_report` states, for the report and the UI, each phase's due time (alert time +
  deadline), its end (from its completion artifact) and ``met`` / ``missed`` / ``open``.

Airflow measures a Deadline Alert from a reference point of the run; the built-in one nearest the
alert is the run's queue time, which the intake sets within seconds of Alertmanager's notification
(about 5 s after the alert fires, the measured group_wait). The callback re-measures from the alert's
``startsAt`` before it marks anything, so the record is exact even where the trigger is early.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from diagnostics.config import Settings
from diagnostics.incident.store import write_json

log = logging.getLogger("triage24.deadlines")

# the artifact whose existence says a phase finished
PHASE_DONE: dict[str, str] = {
    "golden_window": "golden_window/summary.json",
    "deep_diagnosis": "deep_diagnosis/summary.json",
    "verified_delivery": "verified_delivery/summary.json",
}


class PhaseDeadline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: str
    deadline_h: float
    due: datetime
    ended: datetime | None
    state: Literal["met", "missed", "open", "overdue"]


def _incident(root: Path, incident_id: str) -> dict[str, Any] | None:
    try:
        data = json.loads((root / incident_id / "incident.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _ended(root: Path, incident_id: str, phase: str) -> datetime | None:
    rel = PHASE_DONE.get(phase)
    p = root / incident_id / rel if rel else None
    if p is None or not p.is_file():
        return None
    return datetime.fromtimestamp(p.stat().st_mtime, UTC)


def deadline_report(
    incident_id: str,
    *,
    root: Path | None = None,
    now: datetime | None = None,
    phases: dict[str, float] | None = None,
) -> list[PhaseDeadline]:
    """Each phase's deadline against the alert time (``phases``: id -> hours, default sop.yaml's)."""
    root = root or Settings().artifacts
    now = now or datetime.now(UTC)
    inc = _incident(root, incident_id)
    if inc is None:
        return []
    alert = datetime.fromisoformat(str(inc["alert_started_at"]))
    if phases is None:
        from diagnostics.runbooks import load_runbooks

        phases = {p.id: p.deadline_h for p in load_runbooks().sop.phases if p.deadline_h is not None}
    out: list[PhaseDeadline] = []
    for phase, hours in phases.items():
        due = alert + timedelta(hours=hours)
        ended = _ended(root, incident_id, phase)
        if ended is not None:
            state: Literal["met", "missed", "open", "overdue"] = "met" if ended <= due else "missed"
        else:
            state = "overdue" if now > due else "open"
        out.append(PhaseDeadline(phase=phase, deadline_h=hours, due=due, ended=ended, state=state))
    return out


def mark_overdue(
    incident_id: str, phase: str, *, root: Path | None = None, now: datetime | None = None
) -> bool:
    """Record ``phase`` overdue when it has not finished by its due time; True when it was marked."""
    root = root or Settings().artifacts
    now = now or datetime.now(UTC)
    states = {d.phase: d for d in deadline_report(incident_id, root=root, now=now)}
    d = states.get(phase)
    if d is None or d.state not in ("overdue", "open"):
        log.info(
            "deadline of %s for %s: %s, nothing to mark", phase, incident_id, d.state if d else "unknown"
        )
        return False
    path = root / incident_id / "deadlines.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {"overdue": {}}
    record.setdefault("overdue", {})[phase] = {
        "due": d.due.isoformat(),
        "marked_at": now.isoformat(),
        "deadline_h": d.deadline_h,
        "early_trigger": d.state == "open",  # the alert fired before the run was queued
    }
    write_json(path, record)
    from diagnostics.notify import notify

    notify(
        _incident(root, incident_id) or {"incident_id": incident_id},
        "overdue",
        summary=f"phase {phase} not finished {d.deadline_h:g} h after the alert "
        f"(due {d.due:%Y-%m-%d %H:%M} UTC)",
        root=root,
    )
    log.warning("incident %s: phase %s overdue (due %s)", incident_id, phase, d.due.isoformat())
    return True


def overdue_phases(incident_id: str, root: Path | None = None) -> list[str]:
    path = (root or Settings().artifacts) / incident_id / "deadlines.json"
    try:
        return sorted(json.loads(path.read_text(encoding="utf-8")).get("overdue", {}))
    except (OSError, ValueError):
        return []


async def deadline_missed(context: dict[str, Any] | None = None, *, phase: str, **_: Any) -> None:
    """The Deadline Alert callback (run by Airflow's triggerer): mark the phase overdue if it is."""
    run = (context or {}).get("dag_run") or {}
    incident_id = run.get("dag_run_id") or run.get("run_id")
    if not incident_id:
        log.error("deadline callback without a dag_run in its context: %s", sorted(context or {}))
        return
    await asyncio.to_thread(mark_overdue, str(incident_id), phase)
