"""Phase 3, the 12-24 h verified delivery, as the incident DAG runs it: the regression suite on the
version now serving, the phase summary with the deadlines, the diff report, the audit bundle, close.

The I/O seam like :mod:`diagnostics.response.phase`: results go to ``<artifacts>/<id>/verified_delivery/``;
XCom gets briefs. After a rollback the suite verifies **stable** (what serves now); after ``continue``
or a hold it verifies the **canary**.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from diagnostics.config import Settings
from diagnostics.incident.model import Incident
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.incident.store import find_json, write_result
from diagnostics.runbooks.schemas import Severity

log = logging.getLogger("triage24.delivery")

PHASE = "verified_delivery"
ROLLED_BACK = ("applied", "already_applied", "noop")


def serving_version(incident_id: str, root: Path | None = None) -> str:
    """``stable`` when this incident's rollback took effect (not a dry run), else ``canary``."""
    rb = find_json(root or Settings().artifacts, incident_id, "response", "rollback")
    if rb and rb.get("outcome") in ROLLED_BACK and not rb.get("dry_run") and rb.get("status") != "failed":
        return "stable"
    return "canary"


def regression_and_store(inc: Incident) -> dict[str, Any]:
    from diagnostics.deep_diagnosis.base import DeepContext
    from diagnostics.runbooks import load_runbooks
    from diagnostics.verified_delivery.regression import run_suite

    root = Settings().artifacts
    books = load_runbooks()
    target = books.targets.get(inc.target)
    version = serving_version(inc.incident_id, root)
    golden = DeepContext(books=books, target=target).golden()
    result = run_suite(
        books, target, golden, version, trigger=inc.incident_id, history=root / "regression" / "history.jsonl"
    )
    path = write_result(root, inc.incident_id, PHASE, "regression_suite", result)
    log.info("regression suite on %s: %s - %s (%s)", version, result.status.value, result.summary, path)
    return {**result.brief(), "artifact": str(path)}


def summarize_and_store(inc: Incident) -> CheckResult:
    """The phase's summary: recovery (when a rollback happened), the regression verdict, deadlines.
    Its file marks phase 3 done for the deadline checks."""
    from diagnostics.verified_delivery.deadlines import deadline_report

    root = Settings().artifacts
    findings: list[Finding] = []
    statuses: dict[str, Status] = {}
    recovery = find_json(root, inc.incident_id, "response", "recovery_verification")
    if recovery is not None:
        statuses["recovery_verification"] = Status(recovery.get("status", "insufficient_evidence"))
    reg = find_json(root, inc.incident_id, PHASE, "regression_suite")
    statuses["regression_suite"] = Status(reg["status"]) if reg else Status.INSUFFICIENT_EVIDENCE
    if reg and reg.get("status") == "failed":
        failing = [c for c in reg.get("cases", []) if c.get("status") == "failed"]
        findings.append(
            Finding(
                check="regression_suite",
                problem="regression_failed",
                severity=Severity.HIGH,
                component="embedding"
                if any(c["channel"] in ("image", "text") for c in failing)
                else "audio_processor",
                title=f"the golden regression suite fails on {reg.get('version')}",
                evidence="; ".join(
                    f"{c['case']} {c['metric']} {c['value']} (baseline {c['baseline']})" for c in failing[:5]
                ),
                action="keep the incident open; compare the failing cases with the diff report",
                version=reg.get("version"),
            )
        )
    # phase 3 itself is ending now; the earlier phases' deadlines are settled
    deadlines = [d for d in deadline_report(inc.incident_id, root=root) if d.phase != PHASE]
    missed = [d.phase for d in deadlines if d.state in ("missed", "overdue")]
    measured = [s for s in statuses.values() if s is not Status.INSUFFICIENT_EVIDENCE]
    status = (
        Status.FAILED
        if Status.FAILED in measured
        else Status.DEGRADED
        if missed
        else (Status.OK if measured else Status.INSUFFICIENT_EVIDENCE)
    )
    summary = ", ".join(f"{k} {v.value}" for k, v in statuses.items()) + (
        f"; deadlines missed: {', '.join(missed)}" if missed else "; every deadline met"
    )
    result = CheckResult(
        check=f"{PHASE}_summary",
        status=status,
        summary=summary,
        findings=findings,
        details={
            "checks": {k: v.value for k, v in statuses.items()},
            "deadlines": [d.model_dump(mode="json") for d in deadlines],
            "verified_version": reg.get("version") if reg else None,
        },
    )
    write_result(root, inc.incident_id, PHASE, "summary", result)
    return result


def report_and_store(inc: Incident) -> dict[str, Any]:
    from diagnostics.verified_delivery.report import build_report

    report = build_report(Settings().artifacts / inc.incident_id)
    return report.model_dump(mode="json") if hasattr(report, "model_dump") else dict(report.__dict__)


def seal_and_store(inc: Incident, secret: str | None, source: str) -> dict[str, Any]:
    """Build and chain the incident's audit bundle; no key is an error (an unsigned bundle proves nothing)."""
    from diagnostics.verified_delivery.audit import audit_key, seal_incident

    info = seal_incident(inc.incident_id, audit_key(secret, source=source), root=Settings().artifacts)
    return info.model_dump(mode="json")


def close_and_notify(inc: Incident, summary: str) -> None:
    from diagnostics.notify import notify

    notify(inc, "closed", summary=summary)
