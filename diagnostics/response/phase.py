"""The decision and the response, as the incident DAG runs them: decide, act, verify, hold.

Like :mod:`diagnostics.golden_window.phase` this is the I/O seam between the DAG and the pure library: it
reads the stored phase-1 results, calls :func:`diagnostics.decision.decide` and
:func:`diagnostics.response.rollback.apply`, and stores every result under
``<artifacts>/<incident id>/<phase>/<name>.json``. XCom gets briefs only. Nothing here raises for an
unreachable dependency: the decision turns missing evidence into ``insufficient_evidence``, an action
that cannot reach its control API is a failed action result (with its audit record).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from diagnostics.config import Settings
from diagnostics.decision import Decision, decide, inputs_from_results
from diagnostics.golden_window.phase import PHASE as PHASE1
from diagnostics.golden_window.phase import EvidenceSources
from diagnostics.incident.model import Incident
from diagnostics.incident.results import CheckResult, Status
from diagnostics.incident.store import ArtifactError, read_result, write_result
from diagnostics.response.rollback import ActionResult, apply
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.decision import HUMAN_OPTIONS

log = logging.getLogger("triage24.response")

DECISION_PHASE = "decision"
ACTION_PHASE = "response"


def state_dir(settings: Settings | None = None) -> Path:
    """Where actions keep their lock, rate limit and audit log (shared by every worker of one host)."""
    return (settings or Settings()).home / "actions"


def _incident(incident: dict[str, Any] | Incident) -> Incident:
    return incident if isinstance(incident, Incident) else Incident.model_validate(incident)


def _stored(root: Path, incident_id: str, phase: str, name: str) -> dict[str, Any] | None:
    try:
        return read_result(root, incident_id, phase, name)
    except ArtifactError:
        return None  # never stored: missing evidence, which the decision weighs as such


def _canary_weight(inc: Incident) -> float | None:
    """The gateway's canary weight now (the staged policy's position), or None when unknown."""
    from diagnostics.response.rollback.base import ActionError, driver_for

    target = load_runbooks().targets.get(inc.target)
    if target.rollback.method != "gateway_weight":
        return None
    try:
        weight = driver_for(target, os.environ).read().summary.get("canary_weight")
    except ActionError as exc:
        log.warning("canary weight unknown: %s", exc.reason)
        return None
    return float(weight) if isinstance(weight, int | float) else None


FAST_DECISION = "fast_decision"


def decide_and_store(incident: dict[str, Any] | Incident, *, fast: bool = False) -> Decision:
    """The incident's decision from its stored results.

    ``fast``: the fast path's decision right after phase 1 (stored as ``fast_decision``), made on
    phase-1 evidence alone; otherwise the full decision, with phase 2's evidence when it summed up
    (absent: "not measured", which never counts as a pass).
    """
    from diagnostics.deep_diagnosis.phase import stored_evidence

    inc = _incident(incident)
    books = load_runbooks()
    root = Settings().artifacts
    target = books.targets.get(inc.target)
    inputs = inputs_from_results(
        inc.model_dump(mode="json"),
        _stored(root, inc.incident_id, PHASE1, "metrics_sla"),
        _stored(root, inc.incident_id, PHASE1, "summary"),
        None if fast else stored_evidence(inc.incident_id),
        canary_weight_percent=_canary_weight(inc),
        target=target,
    )
    decision = decide(inputs, books.decision)
    name = FAST_DECISION if fast else "decision"
    path = write_result(root, inc.incident_id, DECISION_PHASE, name, decision)
    log.info("%s: %s by rule %s (%s)", name, decision.outcome.value, decision.rule, path)
    if not fast:
        from diagnostics.notify import notify

        notify(inc, "decided", summary=f"{decision.outcome.value} ({decision.rule}): {decision.summary}")
    for line in decision.reasons[:10]:
        log.info("  reason: %s", line)
    return decision


def takes_fast_path(decision: Decision) -> bool:
    """Stop the bleeding first: phase-1 evidence alone already rolls back without a human. Phase 2 can
    only add reasons to roll back (its rule comes after every phase-1 rollback rule), so waiting for
    it would change nothing but the time to recover."""
    return decision.outcome.value == "rollback" and not decision.needs_human


def fast_path_taken(incident: dict[str, Any] | Incident) -> bool:
    """Whether this incident's fast path rolled back (the full decision then has nothing to apply)."""
    inc = _incident(incident)
    stored = _stored(Settings().artifacts, inc.incident_id, DECISION_PHASE, FAST_DECISION)
    return bool(stored and stored.get("outcome") == "rollback" and not stored.get("needs_human"))


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


def act_and_store(
    incident: dict[str, Any] | Incident,
    action: Literal["rollback", "promote"],
    *,
    promote_to: float | None = None,
    decided_by: str = "decision",
) -> ActionResult:
    """Apply the target's rollback (or promotion) method; dry runs only read and report."""
    inc = _incident(incident)
    target = load_runbooks().targets.get(inc.target)
    result = apply(
        action,
        target,
        incident_id=inc.incident_id,
        dry_run=inc.dry_run,
        state_dir=state_dir(),
        promote_to=promote_to,
    )
    result.details["decided_by"] = decided_by
    path = write_result(Settings().artifacts, inc.incident_id, ACTION_PHASE, result.check, result)
    log.info("%s: %s - %s (%s)", action, result.status.value, result.summary, path)
    if action == "rollback" and result.changed:
        from diagnostics.notify import notify

        notify(inc, "rolled_back", summary=f"{result.summary} ({decided_by})")
    return result


def verify_and_store(
    incident: dict[str, Any] | Incident, sources: EvidenceSources | None = None
) -> CheckResult:
    """Poll health, the gateway weight and the stable version's metrics until recovered or timeout
    (``verification:`` in runbooks/decision.yaml)."""
    from diagnostics.response.verify import gateway_probe, verify_recovery
    from diagnostics.sources.prometheus import reader_for

    inc = _incident(incident)
    books = load_runbooks()
    cfg = books.decision.verification
    src = sources or EvidenceSources.from_settings()
    reader = reader_for(src.prometheus_url, src.prometheus_headers, src.http_timeout_s)
    probe = gateway_probe(
        books.targets.get(inc.target),
        books.thresholds,
        reader,
        src.http_timeout_s,
        window_s=cfg.window_s,
        min_requests=cfg.min_requests,
    )
    result: CheckResult = verify_recovery(
        probe,
        timeout_s=cfg.timeout_s,
        interval_s=cfg.interval_s,
        required_consecutive=cfg.required_consecutive,
    )
    write_result(Settings().artifacts, inc.incident_id, ACTION_PHASE, result.check, result)
    log.info("recovery: %s - %s", result.status.value, result.summary)
    if result.status is Status.OK:
        from diagnostics.notify import notify

        notify(inc, "recovered", summary=result.summary)
    return result


def hold_and_store(incident: dict[str, Any] | Incident, decided_by: str, escalate: bool) -> CheckResult:
    """Record that the canary is held as it is (no change) and whether the incident escalates."""
    inc = _incident(incident)
    result = CheckResult(
        check="hold",
        status=Status.DEGRADED if escalate else Status.OK,
        summary=f"canary held as it is ({decided_by})"
        + ("; escalated to the next on-call level" if escalate else ""),
        details={"decided_by": decided_by, "escalate": escalate},
    )
    write_result(Settings().artifacts, inc.incident_id, ACTION_PHASE, "hold", result)
    log.warning("%s", result.summary)
    return result
