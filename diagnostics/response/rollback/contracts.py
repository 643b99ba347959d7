"""The contracts of the rollback and promotion actions: what every driver implements and returns.

This module is the bottom of :mod:`diagnostics.response.rollback`: the drivers (``gateway``,
``kubernetes``, ``argo``), the :mod:`~diagnostics.response.rollback.registry` and the entry point
(:func:`diagnostics.response.rollback.base.apply`) import it, and it imports none of them, so the
dependencies run one way::

    base (apply, rate limit, audit log) -> registry (method -> driver) -> drivers -> contracts
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.incident.results import CheckResult

Action = Literal["rollback", "promote"]
Outcome = Literal[
    "applied",  # the change was made
    "noop",  # the service already was in the desired state
    "already_applied",  # this incident applied this action before (audit log): not sent again
    "dry_run",  # the change would be made; nothing was sent
    "rate_limited",  # over the target's rate limit: nothing was sent
    "refused",  # a guard refused the change (known-bad destination, unsupported action)
    "failed",  # the state could not be read, or the change failed
]
ACTOR = "triage24"


class ActionError(Exception):
    """The action cannot go on; ``reason`` says why, for a human, and never carries a secret."""

    def __init__(self, reason: str, outcome: Outcome = "failed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome: Outcome = outcome


@dataclass(frozen=True)
class State:
    """What a driver read: a small summary (for results and the audit) and the raw objects it needs."""

    summary: dict[str, Any]
    raw: Any = None


@dataclass(frozen=True)
class Plan:
    """What an action would change. ``needed`` False: the state already is the desired one.

    ``leaves`` / ``reaches`` identify the versions the change moves away from and to, where the
    method has such an identity (a pod-template hash), for the known-bad-destination guard.
    """

    needed: bool
    description: str
    desired: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    leaves: str | None = None
    reaches: str | None = None


class Driver(Protocol):
    """One rollback method against one target's control API."""

    method: str

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a result or the audit (e.g. the admin token)."""
        ...

    def read(self) -> State: ...

    def plan(self, action: Action, state: State, promote_to: float | None) -> Plan: ...

    def execute(self, plan: Plan) -> dict[str, Any]:
        """Make the change; returns the state after it, as the service reports it."""
        ...


class ActionResult(CheckResult):
    """The outcome of one rollback or promotion, as the DAG, the report and the audit bundle see it."""

    check: Literal["rollback", "promotion"]
    action: Action
    method: str
    target: str
    incident_id: str
    dry_run: bool
    outcome: Outcome
    changed: bool = Field(default=False, description="the service's state was changed by this call")
    would_change: bool = Field(default=False, description="a dry run found a change needed")
    idempotent_noop: bool = Field(
        default=False, description="nothing was sent: the state matched, or this incident applied it before"
    )
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime
    finished_at: datetime
    error: str | None = None
    audit_record: str | None = Field(default=None, description="the audit log file holding this record")
    audit_id: str | None = None
    prior_audit_id: str | None = Field(
        default=None, description="the earlier record an already_applied refers to"
    )


class AuditRecord(BaseModel):
    """One line of ``audit/rollback.jsonl``; unknown fields are kept so the log can grow."""

    model_config = ConfigDict(extra="allow")

    id: str
    time: datetime
    incident_id: str
    target: str
    method: str
    action: Action
    dry_run: bool
    outcome: Outcome
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    leaves: str | None = None
    reaches: str | None = None
    summary: str = ""
    error: str | None = None
    prior_audit_id: str | None = None
    actor: str = ACTOR
