"""Asking a running intake to replay what its journal holds as pending (``POST …/intake/reconcile``),
as the reconciler DAG does every few minutes: the answer becomes a check result, never a crash."""

from __future__ import annotations

import httpx

from diagnostics.incident.results import CheckResult, Status

CHECK = "intake_reconcile"


class TokenRefused(RuntimeError):
    """The intake refused the token: every later call would fail the same way."""


def reconcile_remote(url: str, token: str, timeout_s: float = 300.0) -> CheckResult:
    """``ok`` when nothing is left pending, ``degraded`` when some incident still has no run (the reason
    is in the details), ``insufficient_evidence`` when the intake cannot be reached."""
    try:
        resp = httpx.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return CheckResult(
            check=CHECK,
            status=Status.INSUFFICIENT_EVIDENCE,
            summary=f"intake unreachable at {url}: {type(exc).__name__}",
        )
    if resp.status_code in (401, 403):
        raise TokenRefused(f"the intake refused the token (HTTP {resp.status_code})")
    if resp.status_code != 200:
        return CheckResult(
            check=CHECK,
            status=Status.DEGRADED,
            summary=f"intake answered HTTP {resp.status_code}",
            details={"body": resp.text[:2000]},
        )
    report = resp.json()
    pending = report.get("still_pending", {})
    return CheckResult(
        check=CHECK,
        status=Status.DEGRADED if pending else Status.OK,
        summary=(
            f"replayed {len(report.get('replayed', []))}, still pending {len(pending)}, "
            f"closed {len(report.get('closed', []))}, notes written {report.get('notes_written', 0)}"
        ),
        details=report,
    )
