"""What the response did and when, measured from the alert: the action taken, the time to mitigate and
the time to recover.

- **Time to mitigate**: the alert's ``startsAt`` → the rollback applied (the ``finished_at`` the rollback
  stored in ``response/rollback.json``: the canary out of traffic).
- **Time to recover**: the alert's ``startsAt`` → the recovery verified (when the verification stored
  its verdict, ``response/recovery_verification.json``: the file's write time, taken as the scenario
  suite's observer takes it; the result itself holds only durations from its own start).

Neither is ever 0 for want of a time: a step that did not happen (no rollback, a dry run, a failed
rollback, no verification) or whose time is not recorded reads as such (``not mitigated``, ``not
verified``) and its duration is None. The recovery verification's own figure (how long it waited for
the stable version to pass its gates) stays in the response table, labelled as that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from diagnostics.incident import task_ids
from diagnostics.views.artifacts import RunArtifacts
from diagnostics.views.models import TaskRecord
from diagnostics.views.values import as_bool, as_datetime, as_dict, as_float, as_str, seconds_between

RESPONSE = "response"
ROLLBACK = "rollback.json"
RECOVERY = "recovery_verification.json"
CONTINUE_TASK = f"{task_ids.RESPONSE}.continue_release"

NOT_MITIGATED = "not mitigated"
NOT_VERIFIED = "not verified"


@dataclass(frozen=True)
class Timed:
    """A step of the response: when it happened (None: it did not, or its time is unknown), how long
    after the alert, and what a person reads."""

    at: datetime | None
    after_s: float | None
    text: str
    done: bool | None = None  # recovered (True), not recovered (False), not verified (None)


def mitigation(art: RunArtifacts, alert_at: datetime | None) -> Timed:
    """The rollback's effect on traffic, from ``response/rollback.json``."""
    rb = art.json(RESPONSE, ROLLBACK)
    if rb is None:
        return Timed(None, None, NOT_MITIGATED)
    outcome = as_str(rb.get("outcome")) or "unknown"
    if rb.get("dry_run") is True:
        return Timed(None, None, f"{NOT_MITIGATED}: dry run, nothing was changed")
    if outcome == "applied":
        at = as_datetime(rb.get("finished_at"))
        if at is None:
            return Timed(None, None, "rolled back (the time is not recorded)")
        return Timed(at, seconds_between(at, alert_at), "rolled back")
    if outcome == "already_applied":
        return Timed(None, None, "rolled back by an earlier try (its time is in the rollback audit log)")
    if outcome == "noop":
        return Timed(None, None, "the canary already was out of traffic")
    return Timed(None, None, f"{NOT_MITIGATED}: the rollback {outcome.replace('_', ' ')}")


def recovery(art: RunArtifacts, alert_at: datetime | None) -> Timed:
    """The recovery verification's verdict and when it was stored."""
    rv = art.json(RESPONSE, RECOVERY)
    if rv is None:
        return Timed(None, None, NOT_VERIFIED)
    recovered = as_bool(rv.get("recovered"))
    if recovered is None:
        return Timed(None, None, f"{NOT_VERIFIED}: the verification stored no verdict")
    if not recovered:
        verdict = as_str(rv.get("verdict"))
        why = f" ({verdict.replace('_', ' ')})" if verdict and verdict != "not_recovered" else ""
        text = "NOT recovered" + why + (", escalated" if rv.get("escalate") is True else "")
        return Timed(None, None, text, done=False)
    at = art.modified_at(RESPONSE, RECOVERY)
    if at is None:
        return Timed(None, None, "recovered (the time is not recorded)", done=True)
    return Timed(at, seconds_between(at, alert_at), "recovered", done=True)


def _rollback_taken(data: dict[str, Any]) -> str:
    outcome = as_str(data.get("outcome")) or "unknown"
    if data.get("dry_run") is True:
        return "rollback, dry run: nothing changed"
    return {
        "applied": "rolled back",
        "already_applied": "rolled back (by an earlier try)",
        "noop": "rollback: nothing to change",
    }.get(outcome, f"rollback {outcome.replace('_', ' ')}")


def _promotion_taken(data: dict[str, Any]) -> str:
    outcome = as_str(data.get("outcome")) or "unknown"
    weight = as_float(as_dict(data.get("after")).get("canary_weight"))
    if data.get("dry_run") is True:
        return "promotion, dry run: nothing changed"
    if outcome == "applied":
        return "promoted" + (f" to {weight:g} %" if weight is not None else "")
    return f"promotion {outcome.replace('_', ' ')}"


def action_taken(art: RunArtifacts, tasks: Sequence[TaskRecord]) -> str | None:
    """The response's action in a few words (None: nothing yet): a rollback, a promotion, a hold, a
    hand-over to a re-evaluation run, or the release continued."""
    rb = art.json(RESPONSE, ROLLBACK)
    if rb is not None:
        return _rollback_taken(rb)
    promoted = art.json(RESPONSE, "promotion.json")
    if promoted is not None:
        return _promotion_taken(promoted)
    held = art.json(RESPONSE, "hold.json")
    if held is not None:
        escalated = as_dict(held.get("details")).get("escalate") is True
        return "held" + (", escalated" if escalated else "")
    handed = art.json(RESPONSE, "superseded.json")
    if handed is not None:
        by = as_str(as_dict(handed.get("details")).get("superseded_by"))
        return f"superseded by {by}" if by else "superseded"
    if any(t.task_id == CONTINUE_TASK and t.state == "success" for t in tasks):
        return "release continued"
    return None
