"""The response, as the incident DAG runs it: act (rollback or promotion), verify recovery, or hold.

Like :mod:`diagnostics.golden_window.phase` this is the I/O seam between the DAG and the pure library: it
calls :func:`diagnostics.response.rollback.apply` and the recovery verification, and stores every
result under ``<artifacts>/<incident id>/response/<name>.json``. XCom gets briefs only. Nothing here
raises for an unreachable dependency: an action that cannot reach its control API is a failed action
result (with its audit record).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from diagnostics.config import Settings
from diagnostics.golden_window.phase import PHASE as PHASE1
from diagnostics.golden_window.phase import EvidenceSources
from diagnostics.incident.model import Incident
from diagnostics.incident.results import CheckResult, Status
from diagnostics.incident.store import ArtifactError, read_result, result_path, write_result
from diagnostics.response.rollback import ActionResult, apply
from diagnostics.response.verify import (
    Phase1Metrics,
    RecoveryProbe,
    RecoveryResult,
    explain_recovery,
    gateway_probe,
    verify_recovery,
)
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


def verify_and_store(
    inc: Incident,
    sources: EvidenceSources | None = None,
    *,
    probe: Callable[[], RecoveryProbe] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RecoveryResult:
    """Poll health, the gateway weight and the stable version's metrics until recovered or timeout
    (``verification:`` in runbooks/decision.yaml). Not recovered is stored and paged (what stays bad,
    against phase 1's figures), never raised: the SOP goes on to phase 2 and 3. ``probe``, ``clock``
    and ``sleep`` replace the target's probe and the wall clock (tests)."""
    from diagnostics.notify import escalate, notify
    from diagnostics.sources.prometheus import reader_for

    books = load_runbooks()
    cfg = books.decision.verification
    if probe is None:
        src = sources or EvidenceSources.from_settings()
        probe = gateway_probe(
            books.targets.get(inc.target),
            books.thresholds,
            reader_for(src.prometheus_url, src.prometheus_headers, src.http_timeout_s),
            src.http_timeout_s,
            window_s=cfg.window_s,
            min_requests=cfg.min_requests,
        )
    result = verify_recovery(
        probe,
        timeout_s=cfg.timeout_s,
        interval_s=cfg.interval_s,
        required_consecutive=cfg.required_consecutive,
        clock=clock,
        sleep=sleep,
    )
    root = Settings().artifacts
    if not result.recovered:
        result = explain_recovery(result, *_phase1_metrics(root, inc))
    write_result(root, inc.incident_id, ACTION_PHASE, result.check, result)
    log.info("recovery: %s - %s", result.verdict, result.summary)
    if result.recovered:
        notify(inc, "recovered", summary=result.summary)
    else:
        bad = {f"{b.part} ({b.cause})": b.evidence for b in result.still_bad[:6]}
        sent = escalate(inc, result.summary, details={"verdict": result.verdict, **bad})
        log.warning("not recovered (%s): escalated, %s", result.verdict, sent.reason)
    return result


def _phase1_metrics(root: Path, inc: Incident) -> tuple[Phase1Metrics | None, str]:
    """Phase 1's ``metrics_sla``: the figures before the rollback (None, and why, where there are none)."""
    if not result_path(root, inc.incident_id, PHASE1, "metrics_sla").exists():
        return None, "no phase-1 metrics_sla stored to compare"
    try:
        return Phase1Metrics.model_validate(read_result(root, inc.incident_id, PHASE1, "metrics_sla")), ""
    except ArtifactError as exc:  # unreadable evidence must not hide the verdict
        return None, f"phase-1 metrics_sla unreadable: {exc}"
    except ValidationError as exc:
        return None, f"phase-1 metrics_sla unreadable: {exc.errors()[0]['msg']}"


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
    if escalate:  # "escalated" means a page to the next on-call level, not only a word in the record
        from diagnostics.notify import escalate as page

        sent = page(inc, result.summary, details={"decided_by": decided_by})
        log.info("hold escalated: %s", sent.reason)
    return result


def supersede_and_store(inc: Incident, by_run: str | None, reason: str, decided_by: str) -> CheckResult:
    """Record that a re-evaluation run on newer evidence decides for this incident now: the canary is
    left as it is here and nobody is paged (the re-evaluation acts, or asks, itself)."""
    who = f"superseded by {by_run}" if by_run else "superseded (no run named)"
    result = CheckResult(
        check="superseded",
        status=Status.OK,
        summary=f"{who}: {reason or 'new evidence'}; the canary is left to that run, not escalated here",
        details={"superseded_by": by_run, "reason": reason, "decided_by": decided_by, "escalate": False},
    )
    write_result(Settings().artifacts, inc.incident_id, ACTION_PHASE, "superseded", result)
    log.info("%s", result.summary)
    return result
