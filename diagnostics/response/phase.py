"""The response, as the incident DAG runs it: act (rollback or promotion), verify recovery, or hold.

Like :mod:`diagnostics.golden_window.phase` this is the I/O seam between the DAG and the pure library: it
calls :func:`diagnostics.response.rollback.apply` and the recovery verification, and stores every
result under ``<artifacts>/<incident id>/response/<name>.json``. XCom gets briefs only. Nothing here
raises for an unreachable dependency: an action that cannot reach its control API is a failed action
result (with its audit record).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from diagnostics.config import Settings
from diagnostics.golden_window.phase import EvidenceSources
from diagnostics.incident.model import Incident
from diagnostics.incident.results import CheckResult, Status
from diagnostics.incident.store import write_result
from diagnostics.response.rollback import ActionResult, apply
from diagnostics.runbooks import load_runbooks

log = logging.getLogger("triage24.response")

ACTION_PHASE = "response"


def state_dir(settings: Settings | None = None) -> Path:
    """Where actions keep their lock, rate limit and audit log (shared by every worker of one host)."""
    return (settings or Settings()).home / "actions"


def act_and_store(
    inc: Incident,
    action: Literal["rollback", "promote"],
    *,
    promote_to: float | None = None,
    decided_by: str = "decision",
) -> ActionResult:
    """Apply the target's rollback (or promotion) method; dry runs only read and report."""
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


def verify_and_store(inc: Incident, sources: EvidenceSources | None = None) -> CheckResult:
    """Poll health, the gateway weight and the stable version's metrics until recovered or timeout
    (``verification:`` in runbooks/decision.yaml)."""
    from diagnostics.response.verify import gateway_probe, verify_recovery
    from diagnostics.sources.prometheus import reader_for

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


def hold_and_store(inc: Incident, decided_by: str, escalate: bool) -> CheckResult:
    """Record that the canary is held as it is (no change) and whether the incident escalates."""
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
