"""What an incident decided and did: its decision (full or fast path), when it was decided, its actions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from diagnostics.decision.model import acts_without_human
from diagnostics.incident import task_ids
from diagnostics.views.artifacts import RunArtifacts
from diagnostics.views.models import (
    ActionRecord,
    DecisionBrief,
    DecisionDetail,
    RuleReasons,
    TaskRecord,
)
from diagnostics.views.timeline import HUMAN_GATE_PREFIX
from diagnostics.views.values import as_bool, as_dict, as_float, as_list, as_str


def decision_data(art: RunArtifacts) -> tuple[dict[str, Any] | None, str]:
    full = art.json("decision", "decision.json")
    if full is not None and as_str(full.get("outcome")):
        return full, "decision"
    fast = art.json("decision", "fast_decision.json")
    if fast is not None and as_str(fast.get("outcome")):
        return fast, "fast_decision"
    return None, "decision"


def decision_brief(data: dict[str, Any] | None, source: str) -> DecisionBrief | None:
    if data is None:
        return None
    return DecisionBrief(
        outcome=str(data["outcome"]),
        rule=as_str(data.get("rule")),
        summary=as_str(data.get("summary")),
        needs_human=bool(data.get("needs_human")),
        gate_breach=_gate_breach(data),
        acts_without_human=_acts_without_human(data),
        source=source,
    )


def decision_detail(data: dict[str, Any] | None, source: str) -> DecisionDetail | None:
    if data is None:
        return None
    gate = as_dict(data.get("human_gate"))
    inputs = as_dict(data.get("inputs"))
    reasons = [str(r) for r in as_list(data.get("reasons"))]
    deciding, others = split_reasons(as_str(data.get("rule")), reasons, as_list(data.get("trace")))
    return DecisionDetail(
        outcome=str(data["outcome"]),
        rule=as_str(data.get("rule")),
        rule_description=as_str(data.get("rule_description")),
        summary=as_str(data.get("summary")),
        reasons=reasons,
        deciding_reasons=deciding,
        other_rules=others,
        needs_human=bool(data.get("needs_human")),
        gate_breach=_gate_breach(data),
        acts_without_human=_acts_without_human(data),
        promote_to=as_float(data.get("promote_to")),
        max_risk=as_float(data.get("max_risk")),
        dry_run=as_bool(inputs.get("dry_run")),
        human_default=as_str(gate.get("choice")),
        human_timeout_s=as_float(gate.get("timeout_s")),
        human_escalate=as_bool(gate.get("escalate")),
        source=source,
    )


def split_reasons(
    rule: str | None, reasons: list[str], trace: list[Any]
) -> tuple[list[str], list[RuleReasons]]:
    """The reasons that decided, and the other rules' notes to fold away.

    A decision stores the deciding rule's reasons first, then every other rule's as ``<rule>: <reason>``
    (``trace`` has each rule's own), then notes on the decision itself (a sensitive method, a dry run).
    What decided is every stored reason that is not another rule's; the other rules come from the trace,
    in precedence order, those without a reason left out. Without a trace naming the deciding rule
    (a decision stored before the trace), every reason decided: nothing is hidden."""
    entries = [t for t in trace if isinstance(t, dict) and as_str(t.get("rule"))]
    if rule is None or not any(t["rule"] == rule for t in entries):
        return list(reasons), []
    others = [
        RuleReasons(
            rule=str(t["rule"]),
            outcome=as_str(t.get("outcome")),
            matched=t.get("matched") is True,
            reasons=[str(r) for r in as_list(t.get("reasons"))],
        )
        for t in entries
        if t["rule"] != rule
    ]
    theirs = {f"{o.rule}: {line}" for o in others for line in o.reasons}
    deciding = [r for r in reasons if r not in theirs]
    return deciding, [o for o in others if o.reasons]


def _gate_breach(data: dict[str, Any]) -> bool:
    # decisions stored before gate_breach was named called it fast_path
    return bool(data.get("gate_breach", data.get("fast_path")))


def _acts_without_human(data: dict[str, Any]) -> bool:
    """The stored Decision.acts_without_human; derived the same way for decisions stored before it."""
    if "acts_without_human" in data:
        return bool(data["acts_without_human"])
    return acts_without_human(data.get("outcome"), data.get("promote_to"), data.get("needs_human"))


def _finished_task(tasks: Sequence[TaskRecord], task_id: str) -> TaskRecord | None:
    return next((t for t in tasks if t.task_id == task_id and t.state == "success" and t.end_date), None)


def _fast_rollback(fast: dict[str, Any] | None) -> bool:
    """Decision.rolls_back_without_human, read from the stored fast decision."""
    return bool(fast and fast.get("outcome") == "rollback" and _acts_without_human(fast))


def decided_at(tasks: Sequence[TaskRecord], art: RunArtifacts) -> datetime | None:
    """When the incident was decided: a human gate's answer (or its timeout's default); else the fast
    path's gate when phase 1 alone rolled back; else the decision task, unless it asked a human. None
    while undecided."""
    gates = [t.end_date for t in tasks if t.task_id.startswith(HUMAN_GATE_PREFIX) and t.state == "success"]
    answered = [end for end in gates if end is not None]
    if answered:
        return min(answered)
    if _fast_rollback(art.json("decision", "fast_decision.json")):
        fast = _finished_task(tasks, task_ids.FAST_GATE)
        if fast is not None:
            return fast.end_date
    full = art.json("decision", "decision.json")
    if full is None or full.get("needs_human"):
        return None
    decide = _finished_task(tasks, task_ids.DECIDE)
    return decide.end_date if decide is not None else None


def response_actions(art: RunArtifacts) -> list[ActionRecord]:
    out = []
    for name in art.names("response"):
        data = art.json("response", f"{name}.json")
        if data is None:
            continue
        details = as_dict(data.get("details"))
        out.append(
            ActionRecord(
                name=name,
                status=as_str(data.get("status")),
                summary=as_str(data.get("summary")),
                outcome=as_str(data.get("outcome")),
                decided_by=as_str(details.get("decided_by")),
                recovered=as_bool(data.get("recovered")),
                time_to_recover_s=as_float(data.get("time_to_recover_s")),
            )
        )
    return out
