"""Every alert an incident holds, for the Incidents view: the alert groups that opened and joined it (by
a correlation rule of grading.yaml) and their alerts, from the intake journal.

The journal lives where the intake runs: in the Airflow api-server that also serves this view, so the
view reads it there (:class:`JournalAlerts`). A run the journal does not know (a manual run, a journal on
another machine) shows the alerts its conf was opened with, marked as such.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from diagnostics.intake.journal import Journal, JournalError
from diagnostics.intake.members import incident_alerts
from diagnostics.intake.records import IncidentAlerts as Held
from diagnostics.views.models import AlertGroupLine, AlertLine, IncidentAlerts
from diagnostics.views.values import as_datetime, as_dict, as_list, as_str

log = logging.getLogger("triage24.ui")

JOURNAL = "intake journal"
CONF = "run conf"


class AlertSource(Protocol):
    """The intake's record of what each incident holds, by run id (unknown runs left out)."""

    def alerts(self, run_ids: Sequence[str]) -> Mapping[str, Held]: ...


def _default_journal_path() -> Path:
    from diagnostics.intake.config import IntakeSettings

    return IntakeSettings().journal_path()


class JournalAlerts:
    """The intake journal at ``path()`` (default: the intake's settings), read when it exists; a journal
    that cannot be read shows no alerts, never an error page."""

    def __init__(self, path: Callable[[], Path] = _default_journal_path) -> None:
        self.path = path
        self._journals: dict[Path, Journal] = {}
        self._lock = threading.Lock()

    def _journal(self) -> Journal | None:
        path = self.path()
        if not path.is_file():  # never create one: the intake does, on its first delivery
            return None
        with self._lock:
            if path not in self._journals:
                self._journals[path] = Journal(path)
            return self._journals[path]

    def alerts(self, run_ids: Sequence[str]) -> Mapping[str, Held]:
        try:
            journal = self._journal()
            return incident_alerts(journal, run_ids) if journal and run_ids else {}
        except JournalError as exc:
            log.warning("incidents view: the intake journal is not readable, alerts not shown: %s", exc)
            return {}


def _when(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


def alerts_view(held: Held | None, conf: Mapping[str, Any]) -> IncidentAlerts | None:
    """The incident's groups and alerts: the journal's when it knows the run (every group that opened or
    joined it), else the run conf's. The journal keeps no annotations: an alert the run conf also holds
    gets its summary from there."""
    if held is not None:
        summaries = {a.fingerprint: a.summary for a in _conf_alerts(conf, "-") if a.summary}
        groups = [
            AlertGroupLine(
                group_key=g.group_key,
                labels=dict(g.labels),
                joined=g.joined_at is not None,
                joined_at=_when(g.joined_at),
                rule=g.rule or None,
                key=g.key or None,
            )
            for g in held.groups
        ]
        joined = {g.group_key for g in groups if g.joined}
        alerts = [
            AlertLine(
                fingerprint=a.fingerprint,
                alertname=a.labels.get("alertname", ""),
                status=a.status,
                severity=a.labels.get("severity"),
                summary=summaries.get(a.fingerprint),
                labels=dict(a.labels),
                starts_at=as_datetime(a.starts_at),
                episodes=a.episodes,
                group_key=a.group_key,
                joined=a.group_key in joined,
            )
            for a in held.alerts
        ]
        return IncidentAlerts(source=JOURNAL, groups=groups, alerts=alerts, firing=held.firing)
    return _from_conf(conf)


def _conf_alerts(conf: Mapping[str, Any], group_key: str) -> list[AlertLine]:
    out = []
    for a in as_list(conf.get("alerts")):
        if not isinstance(a, dict):
            continue
        alert_labels = {str(k): str(v) for k, v in as_dict(a.get("labels")).items()}
        out.append(
            AlertLine(
                fingerprint=as_str(a.get("fingerprint")) or "-",
                alertname=alert_labels.get("alertname", ""),
                status=as_str(a.get("status")) or "unknown",
                severity=alert_labels.get("severity"),
                summary=as_str(as_dict(a.get("annotations")).get("summary")),
                labels=alert_labels,
                starts_at=as_datetime(a.get("starts_at")),
                group_key=group_key,
            )
        )
    return out


def _from_conf(conf: Mapping[str, Any]) -> IncidentAlerts | None:
    group_key = as_str(conf.get("group_key")) or "-"
    alerts = _conf_alerts(conf, group_key)
    if not alerts:
        return None  # a manual run: no alert
    labels = {str(k): str(v) for k, v in as_dict(conf.get("group_labels")).items()}
    return IncidentAlerts(
        source=CONF,
        groups=[AlertGroupLine(group_key=group_key, labels=labels)],
        alerts=alerts,
        firing=sum(a.status == "firing" for a in alerts),
    )
