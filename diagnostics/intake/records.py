"""Typed records the intake journal reads and writes (no I/O here).

- :class:`Delivery` and :class:`Incident`: rows of the journal.
- :class:`GroupLookup` -> :class:`Snapshot`: what one delivery's decision reads from the journal, in
  one step, inside the delivery's transaction (:meth:`Tx.group_state <diagnostics.intake.journal.Tx>`
  and, when an escalation policy needs counts, :meth:`Tx.escalation_state`).
- :class:`DeliveryRecord`: what the decision writes back, in one step (:meth:`Tx.record`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Occurrence = tuple[str, str]  # (fingerprint, startsAt): one firing episode of one alert
FINISHED_RUN_STATES = frozenset({"success", "failed", "missing"})  # "missing": deleted from Airflow
AlertRow = tuple[str, str, dict[str, str], str]  # (fingerprint, status, labels, startsAt)


@dataclass(frozen=True)
class Delivery:
    id: int
    received_at: float
    body_sha256: str
    group_key: str
    status: str
    alerts: int
    grade: str | None
    rule: str | None
    escalated: bool
    run_id: str | None
    outcome: str
    detail: str
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Incident:
    run_id: str
    dag_id: str
    group_key: str
    state: str
    run_state: str | None
    created_at: float
    opened_at: float | None
    closed_at: float | None
    grade: str
    rule: str
    escalated: bool
    escalation_rule: str
    escalation_reason: str
    escalated_at: float | None
    conf_json: str  # parsed on use only: it can be large (every alert of the first delivery)
    group_labels_json: str
    updates: int
    resolved_at: float | None
    last_delivery_at: float
    note_dirty: int
    note_written_at: float | None
    state_checked_at: float | None
    last_running_at: float | None
    attempts: int
    last_error: str
    correlation_key: str | None  # CorrelationKey.key of the group that opened it (None: joins nothing)
    correlation_rule: str

    @property
    def run_finished(self) -> bool:
        """Its run ended (success, failed) or is gone; the incident may still be open (its alerts)."""
        return self.run_state in FINISHED_RUN_STATES

    @property
    def conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = json.loads(self.conf_json)
        return conf

    @property
    def group_labels(self) -> dict[str, str]:
        labels: dict[str, str] = json.loads(self.group_labels_json)
        return labels

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not k.endswith("_json")}
        out["group_labels"] = self.group_labels
        return out


@dataclass(frozen=True)
class Reevaluation:
    """A re-evaluation of an open incident: a new run on fresh evidence that supersedes its last run
    (:mod:`diagnostics.intake.reevaluate`). ``state``: pending (its run not created yet), triggered
    (created; the previous run's gate still to answer), done, skipped (not needed, ``detail`` says why)."""

    run_id: str  # its own run: <incident run id>__r<n>
    incident_run_id: str
    previous_run_id: str  # the run it supersedes
    delivery_id: int  # the delivery that called for it
    keys: tuple[str, ...]  # what it was called for (grade:L3, gate:CanaryGate5xx): each once per incident
    reason: str
    state: str
    conf_json: str
    created_at: float
    updated_at: float
    attempts: int
    last_error: str
    detail: str
    superseded_gate: str | None  # the previous run's gate it answered

    @property
    def conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = json.loads(self.conf_json)
        return conf

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not k.endswith("_json")}
        out["keys"] = list(self.keys)
        return out


# --- the read step ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupLookup:
    """What to read for one delivery of an alert group."""

    group_key: str
    body_sha256: str
    firing: tuple[Occurrence, ...]  # the delivery's firing episodes
    resolved: tuple[str, ...]  # fingerprints of its resolved alerts
    run_id: str | None  # the id a new incident for its firing alerts would get
    correlation_key: str | None = None  # the key of its firing alerts: find another group's incident


@dataclass(frozen=True)
class EscalationLookup:
    """The counts an escalation policy needs (None: not needed)."""

    repeats_since: float | None = None  # the group's episodes first seen since then
    firing_since: float | None = None  # alerts of any group seen firing since then


@dataclass(frozen=True)
class EscalationState:
    repeats: int | None = None  # episodes journaled before this delivery
    firing_labels: Mapping[str, Mapping[str, str]] | None = None  # fingerprint -> labels


@dataclass(frozen=True)
class Snapshot:
    """The journal as one delivery's decision sees it (read before the delivery writes anything)."""

    delivery_id: int  # the id the delivery is journaled with
    known_resolved: frozenset[str]  # of its resolved fingerprints, those already journaled resolved
    runs: Mapping[Occurrence, str | None]  # its firing episodes already journaled -> covering run
    open_incident: Incident | None
    latest_incident: Incident | None  # nothing firing, no open incident: the incident to annotate
    run_id_taken: bool  # an incident with the new run id exists (a closed one)
    earlier_same_body: int | None  # the last finished delivery with the same body
    escalation: EscalationState | None = None
    # no open incident of its own: the newest unclosed incident of another group with its correlation key
    correlated: Incident | None = None
    # the re-evaluations of the incident it would update (its open one, else the correlated one)
    reevaluations: tuple[Reevaluation, ...] = ()


# --- the write step -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewIncident:
    run_id: str
    dag_id: str
    group_key: str
    grade: str
    rule: str
    escalated: bool
    escalation_rule: str
    escalation_reason: str
    conf: dict[str, Any]
    correlation_key: str | None = None
    correlation_rule: str = ""


@dataclass(frozen=True)
class GroupJoin:
    """An alert group joining another group's incident (by a correlation rule)."""

    run_id: str
    group_key: str
    group_labels: Mapping[str, str]
    rule: str
    key: str  # the shared label values, for people


@dataclass(frozen=True)
class NewReevaluation:
    run_id: str
    incident_run_id: str
    previous_run_id: str
    keys: tuple[str, ...]
    reason: str
    conf: dict[str, Any]


@dataclass(frozen=True)
class IncidentWrite:
    """A delivery's change to incidents: one update or one new incident, and the episodes it covers."""

    update_run: str | None = None
    update: Mapping[str, Any] = field(default_factory=dict)  # incident columns -> values
    insert: NewIncident | None = None
    join: GroupJoin | None = None
    cover: tuple[Occurrence, ...] = ()
    cover_run: str | None = None
    reevaluate: NewReevaluation | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    """Everything one delivery writes to the journal, in one transaction."""

    id: int
    received_at: float
    body: bytes
    body_sha256: str
    group_key: str
    status: str
    alert_count: int
    outcome: str
    run_id: str | None
    detail: str
    grade: str
    rule: str
    escalated: bool
    alerts: tuple[AlertRow, ...]  # the alerts mirror
    occurrences: tuple[tuple[str, str, str], ...]  # (fingerprint, startsAt, grade) firing episodes
    incident: IncidentWrite = field(default_factory=IncidentWrite)


# --- what an incident holds (the CLI, the Incidents view, the demo) ------------------------------------


@dataclass(frozen=True)
class IncidentGroup:
    group_key: str
    labels: Mapping[str, str]
    joined_at: float | None  # None: the group that opened the incident
    rule: str  # the correlation rule it joined by ("" for the opener)
    key: str  # the shared label values it joined on

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "labels": dict(self.labels), "opened": self.joined_at is None}


@dataclass(frozen=True)
class IncidentAlert:
    """One alert the incident covers, with its last known status."""

    fingerprint: str
    group_key: str
    status: str  # firing | resolved (as last delivered)
    labels: Mapping[str, str]
    starts_at: str  # of its latest episode the incident covers
    episodes: int  # firing episodes of it the incident covers
    covered_at: float | None  # when the incident first took it on
    last_seen: float | None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "labels": dict(self.labels)}


@dataclass(frozen=True)
class IncidentAlerts:
    run_id: str
    groups: tuple[IncidentGroup, ...]  # the opener first, then joined groups as they joined
    alerts: tuple[IncidentAlert, ...]
    reevaluations: tuple[Reevaluation, ...] = ()  # oldest first

    @property
    def firing(self) -> int:
        return sum(a.status == "firing" for a in self.alerts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "groups": [g.as_dict() for g in self.groups],
            "alerts": [a.as_dict() for a in self.alerts],
            "reevaluations": [r.as_dict() for r in self.reevaluations],
        }
