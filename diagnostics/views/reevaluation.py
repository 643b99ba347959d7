"""An incident's re-evaluations, for the Incidents view (issue 19): the run that re-evaluates on new
evidence (which delivery called for it, why, the run it supersedes) and the run it superseded.

Read from the intake journal where it knows the incident, else from what the runs themselves hold: a
re-evaluation run's conf (``reevaluates``, ``reevaluation_reason``, ``delivery_id``) and the superseded
run's ``response/superseded.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from diagnostics.intake.records import IncidentAlerts as Held
from diagnostics.intake.records import Reevaluation
from diagnostics.views.artifacts import RunArtifacts
from diagnostics.views.models import ReevaluationLine, Superseded
from diagnostics.views.values import as_dict, as_str

RECORD = "response record"
JOURNAL = "intake journal"
_STARTED = ("triggered", "done")  # its run exists: it decides now


def _line(r: Reevaluation) -> ReevaluationLine:
    return ReevaluationLine(
        run_id=r.run_id,
        reevaluates=r.previous_run_id,
        delivery_id=r.delivery_id,
        reason=r.reason,
        state=r.state,
        detail=r.last_error or r.detail or None,
        created_at=datetime.fromtimestamp(r.created_at, UTC),
        answered_gate=r.superseded_gate,
    )


def reevaluation_lines(held: Held | None) -> list[ReevaluationLine]:
    """Every re-evaluation of the incident, oldest first (none where the journal does not know it)."""
    return [_line(r) for r in held.reevaluations] if held else []


def own_reevaluation(run_id: str, conf: Mapping[str, Any], held: Held | None) -> ReevaluationLine | None:
    """Why this run runs, when it re-evaluates an earlier run (None: it is an incident's first run)."""
    known = next((r for r in held.reevaluations if r.run_id == run_id), None) if held else None
    if known is not None:
        return _line(known)
    previous = as_str(conf.get("reevaluates"))
    if previous is None:
        return None
    delivery = conf.get("delivery_id")
    return ReevaluationLine(
        run_id=run_id,
        reevaluates=previous,
        delivery_id=delivery if isinstance(delivery, int) and not isinstance(delivery, bool) else None,
        reason=as_str(conf.get("reevaluation_reason")) or "new evidence",
    )


def superseded(run_id: str, art: RunArtifacts, held: Held | None) -> Superseded | None:
    """Whether a re-evaluation took over from this run: the run's own record first, else the journal."""
    record = art.json("response", "superseded.json")
    again = next(
        (r for r in held.reevaluations if r.previous_run_id == run_id and r.state in _STARTED), None
    ) if held else None  # fmt: skip
    if record is not None:
        details = as_dict(record.get("details"))
        return Superseded(
            by_run=as_str(details.get("superseded_by")) or (again.run_id if again else None),
            reason=as_str(details.get("reason")) or (again.reason if again else None),
            gate=again.superseded_gate if again else None,
            source=RECORD,
        )
    if again is None:
        return None
    return Superseded(by_run=again.run_id, reason=again.reason, gate=again.superseded_gate, source=JOURNAL)
