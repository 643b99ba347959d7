"""What an incident holds, read from the journal: the alert groups that opened and joined it, every
alert it covers and its re-evaluations (``triage24 intake status``, the Incidents view), and the incident
an alert went to (the demo follows the incident its own alert opened or joined, not the newest one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from diagnostics.intake.journal import Journal, reevaluation_row
from diagnostics.intake.records import Incident, IncidentAlert, IncidentAlerts, IncidentGroup, Reevaluation

_CHUNK = 500  # run ids per statement: under any SQLite's bound-parameter limit


def _labels(text: Any) -> dict[str, str]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _incidents_of(journal: Journal, run_ids: list[str]) -> dict[str, str]:
    """Each run id's incident: its own, or the one a re-evaluation run belongs to."""
    marks = ",".join("?" * len(run_ids))
    rows = journal.read(
        f"SELECT run_id, incident_run_id FROM reevaluations WHERE run_id IN ({marks})",  # noqa: S608
        run_ids,
    )
    of = {str(r[0]): str(r[1]) for r in rows}
    return {run_id: of.get(run_id, run_id) for run_id in run_ids}


def incident_alerts(journal: Journal, run_ids: Sequence[str]) -> dict[str, IncidentAlerts]:
    """Each known incident's groups, alerts and re-evaluations (run ids the journal does not know are
    left out; a re-evaluation run gets its incident's)."""
    out: dict[str, IncidentAlerts] = {}
    for start in range(0, len(run_ids), _CHUNK):
        asked = list(dict.fromkeys(run_ids[start : start + _CHUNK]))
        incident_of = _incidents_of(journal, asked)
        chunk = list(dict.fromkeys(incident_of.values()))
        marks = ",".join("?" * len(chunk))
        groups: dict[str, list[IncidentGroup]] = {}
        for r in journal.read(
            f"SELECT run_id, group_key, group_labels FROM incidents WHERE run_id IN ({marks})",  # noqa: S608
            chunk,
        ):
            groups[str(r[0])] = [IncidentGroup(str(r[1]), _labels(r[2]), None, "", "")]
        for r in journal.read(
            "SELECT run_id, group_key, group_labels, joined_at, rule, key FROM incident_groups "  # noqa: S608
            f"WHERE run_id IN ({marks}) ORDER BY joined_at, group_key",
            chunk,
        ):
            if str(r[0]) in groups:
                groups[str(r[0])].append(
                    IncidentGroup(str(r[1]), _labels(r[2]), float(r[3]), str(r[4]), str(r[5]))
                )
        alerts: dict[str, list[IncidentAlert]] = {run_id: [] for run_id in groups}
        for r in journal.read(
            "SELECT o.run_id, o.fingerprint, MIN(o.group_key), MAX(o.starts_at), COUNT(*), "  # noqa: S608
            "MIN(o.covered_at), a.status, a.labels, a.last_seen FROM occurrences o "
            "LEFT JOIN alerts a ON a.fingerprint = o.fingerprint "
            f"WHERE o.run_id IN ({marks}) GROUP BY o.run_id, o.fingerprint "
            "ORDER BY MIN(o.covered_at), o.fingerprint",
            chunk,
        ):
            if str(r[0]) in alerts:
                alerts[str(r[0])].append(
                    IncidentAlert(
                        fingerprint=str(r[1]),
                        group_key=str(r[2]),
                        status=str(r[6]) if r[6] else "unknown",  # pruned from the mirror
                        labels=_labels(r[7]),
                        starts_at=str(r[3]),
                        episodes=int(r[4]),
                        covered_at=None if r[5] is None else float(r[5]),
                        last_seen=None if r[8] is None else float(r[8]),
                    )
                )
        again: dict[str, list[Reevaluation]] = {run_id: [] for run_id in groups}
        for r in journal.read(
            f"SELECT * FROM reevaluations WHERE incident_run_id IN ({marks}) "  # noqa: S608
            "ORDER BY created_at, rowid",
            chunk,
        ):
            if str(r["incident_run_id"]) in again:
                again[str(r["incident_run_id"])].append(reevaluation_row(r))
        for run_id in asked:
            incident = incident_of[run_id]
            if incident in groups:
                out[run_id] = IncidentAlerts(
                    incident, tuple(groups[incident]), tuple(alerts[incident]), tuple(again[incident])
                )
    return out


def incident_of_alert(
    journal: Journal, labels: Mapping[str, str], seen_since: float
) -> tuple[str, Incident] | None:
    """The incident that covers the newest alert with these labels (a subset of its labels) delivered
    since ``seen_since``: (its fingerprint, the incident). None while no such alert is covered by an
    incident (not delivered yet, or recorded without one)."""
    rows = journal.read(
        "SELECT fingerprint, labels FROM alerts WHERE last_seen >= ? ORDER BY last_seen DESC", (seen_since,)
    )
    for fingerprint, text in rows:
        have = _labels(text)
        if any(have.get(k) != v for k, v in labels.items()):
            continue
        covered = journal.read(
            "SELECT run_id FROM occurrences WHERE fingerprint = ? AND run_id IS NOT NULL "
            "ORDER BY first_seen DESC LIMIT 1",
            (fingerprint,),
        )
        incident = journal.incident(str(covered[0][0])) if covered else None
        if incident is not None:
            return str(fingerprint), incident
    return None
