"""The decision, as the incident DAG runs it: decide from the stored evidence, store the decision.

The I/O seam between the DAG and the pure policy (:mod:`diagnostics.decision.policy`): it reads the
stored phase-1 results (and phase 2's evidence for the full decision), calls :func:`decide`, and
stores the result under ``<artifacts>/<incident id>/decision/``. Whether a decision acts without a
human is the decision's own property (:attr:`Decision.acts_without_human`), read by everyone alike.
"""

from __future__ import annotations

import logging
import os

from diagnostics.config import Settings
from diagnostics.decision import Decision, decide, inputs_from_results
from diagnostics.golden_window.phase import PHASE as PHASE1
from diagnostics.incident.model import Incident
from diagnostics.incident.store import find_json, find_result, write_result
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.decision import HUMAN_OPTIONS

log = logging.getLogger("triage24.decision")

DECISION_PHASE = "decision"
FAST_DECISION = "fast_decision"
FULL_DECISION = "decision"


def _canary_weight(inc: Incident) -> float | None:
    """The gateway's canary weight now (the staged policy's position), or None when unknown."""
    from diagnostics.response.rollback.contracts import ActionError
    from diagnostics.response.rollback.registry import driver_for

    target = load_runbooks().targets.get(inc.target)
    if target.rollback.method != "gateway_weight":
        return None
    try:
        weight = driver_for(target, os.environ).read().summary.get("canary_weight")
    except ActionError as exc:
        log.warning("canary weight unknown: %s", exc.reason)
        return None
    return float(weight) if isinstance(weight, int | float) else None


def decide_and_store(inc: Incident, *, fast: bool = False) -> Decision:
    """The incident's decision from its stored results.

    ``fast``: the fast path's decision right after phase 1 (stored as ``fast_decision``), made on
    phase-1 evidence alone; otherwise the full decision, with phase 2's evidence when it summed up
    (absent: "not measured", which never counts as a pass).
    """
    from diagnostics.deep_diagnosis.phase import stored_evidence

    books = load_runbooks()
    root = Settings().artifacts
    target = books.targets.get(inc.target)
    inputs = inputs_from_results(
        inc.model_dump(mode="json"),
        find_json(root, inc.incident_id, PHASE1, "metrics_sla"),
        find_json(root, inc.incident_id, PHASE1, "summary"),
        None if fast else stored_evidence(inc.incident_id),
        canary_weight_percent=_canary_weight(inc),
        target=target,
    )
    decision = decide(inputs, books.decision)
    name = FAST_DECISION if fast else FULL_DECISION
    path = write_result(root, inc.incident_id, DECISION_PHASE, name, decision)
    log.info("%s: %s by rule %s (%s)", name, decision.outcome.value, decision.rule, path)
    if not fast:
        from diagnostics.notify import notify

        notify(inc, "decided", summary=f"{decision.outcome.value} ({decision.rule}): {decision.summary}")
    for line in decision.reasons[:10]:
        log.info("  reason: %s", line)
    return decision


def stored_decision(inc: Incident, *, fast: bool = False) -> Decision | None:
    """The incident's stored decision (the fast path's with ``fast``), None when not decided yet."""
    name = FAST_DECISION if fast else FULL_DECISION
    return find_result(Settings().artifacts, inc.incident_id, DECISION_PHASE, name, Decision)


def fast_path_taken(inc: Incident) -> bool:
    """Whether this incident's fast path rolled back (the full decision then has nothing to apply)."""
    fast = stored_decision(inc, fast=True)
    return fast is not None and fast.rolls_back_without_human


def decision_markdown(decision: Decision) -> str:
    """What the on-call engineer reads at the human gate."""
    lines = [
        f"**Decision:** `{decision.outcome.value}` by rule `{decision.rule}` — {decision.rule_description}",
        "",
        f"**Summary:** {decision.summary}",
        "",
        "**Reasons:**",
        *[f"- {r}" for r in decision.reasons[:12]],
        "",
        f"If nobody answers within {decision.human_gate.timeout_s:g} s, the default applies: "
        f"**{HUMAN_OPTIONS[decision.human_gate.choice.value]}**"
        + (" (and the incident escalates)." if decision.human_gate.escalate else "."),
    ]
    return "\n".join(lines)
