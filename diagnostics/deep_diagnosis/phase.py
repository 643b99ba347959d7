"""Phase 2, the 2-12 h deep diagnosis, as the DAG and the CLI run it: run a check, store it, sum up.

The I/O seam (like :mod:`diagnostics.golden_window.phase` for phase 1): results go to
``<artifacts>/<incident id>/deep_diagnosis/<check>.json``; the summary adds the decision's phase-2
input, ``Phase2Evidence`` — per channel both versions' drift levels, per check both versions' status,
whether it crashed, and whether the canary is worse than stable by the check's own measure
(:mod:`diagnostics.deep_diagnosis.compare`) — stored as ``deep_diagnosis/evidence.json``.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

from diagnostics.checks.registry import checks_of_phase
from diagnostics.config import Settings
from diagnostics.deep_diagnosis.base import PHASE, DeepContext, DeepResult, Progress, log_progress
from diagnostics.deep_diagnosis.runner import run_check
from diagnostics.incident.model import Incident
from diagnostics.incident.results import CheckResult, Status
from diagnostics.incident.store import ArtifactError, read_result, write_json, write_result
from diagnostics.incident.summary import summarize
from diagnostics.runbooks import Runbooks, load_runbooks

log = logging.getLogger("triage24.deep")

DRIFT_CHECK = "drift"


def phase_checks(books: Runbooks | None = None) -> list[str]:
    """The phase's check names, in ``runbooks/sop.yaml`` order (each one resolvable in the registry)."""
    return [spec.name for spec in checks_of_phase(books or load_runbooks(), PHASE)]


def run_deep_check(
    name: str,
    inc: Incident,
    sources: Any | None = None,
    *,
    progress: Progress = log_progress,
) -> DeepResult:
    books = load_runbooks()
    ctx = DeepContext(
        books=books, target=books.targets.get(inc.target), incident=inc, sources=sources, progress=progress
    )
    return run_check(name, ctx)


def brief(result: DeepResult, path: str) -> dict[str, Any]:
    return {
        "check": result.check,
        "status": result.status.value,
        "summary": result.summary[:500],
        "canary": canary.value if (canary := result.canary_status()) else None,
        "findings": len(result.findings),
        "seconds": result.seconds,
        "artifact": path,
    }


def yield_cpu(niceness: int) -> int:
    """Lower this process's CPU priority to ``niceness`` (never raises it; 0 leaves it); returns the
    niceness now. A phase-2 task on the machine of the service it diagnoses must not starve it."""
    current = os.nice(0)
    if niceness > current:
        current = os.nice(niceness - current)
    return current


def run_and_store(
    name: str,
    inc: Incident,
    sources: Any | None = None,
    *,
    progress: Progress = log_progress,
) -> dict[str, Any]:
    settings = Settings()
    if settings.deep_nice:
        log.info("%s: CPU niceness %d (TRIAGE24_DEEP_NICE)", name, yield_cpu(settings.deep_nice))
    result = run_deep_check(name, inc, sources, progress=progress)
    path = write_result(settings.artifacts, inc.incident_id, PHASE, name, result)
    log.info(
        "%s: %s - %s (%s, %.1f s)", name, result.status.value, result.summary[:300], path, result.seconds
    )
    return brief(result, str(path))


def _status(outcome: dict[str, Any] | None) -> str | None:
    status = (outcome or {}).get("status")
    return str(status) if status else None


def phase2_evidence(
    results: dict[str, dict[str, Any] | None], measured_at: datetime | None = None
) -> dict[str, Any]:
    """The decision's phase-2 input from stored results (``Phase2Evidence`` as JSON): both versions'
    drift level per channel, each other check's canary status (``consistency``), and per check both
    versions' status, whether it crashed, and the check's own comparison of the canary with stable.
    A check without a result is left out: not measured (the decision names it when it needs it)."""
    from diagnostics.decision.model import Phase2Evidence
    from diagnostics.deep_diagnosis.compare import compare_versions
    from diagnostics.deep_diagnosis.drift import channel_levels

    drift: dict[str, int | None] = {}
    stable_drift: dict[str, int | None] = {}
    consistency: dict[str, str] = {}
    checks: dict[str, dict[str, Any]] = {}
    for name, data in results.items():
        if data is None:
            continue
        versions = data.get("versions") or {}
        crashed = bool((data.get("details") or {}).get("crashed"))
        canary = _status(versions.get("canary")) or (
            Status.INSUFFICIENT_EVIDENCE.value if crashed or not versions else None
        )
        worse, measure = compare_versions(name, data)
        checks[name] = {
            "canary": canary,
            "stable": _status(versions.get("stable")),
            "crashed": crashed,
            "canary_worse": worse,
            "measure": str(data.get("summary") or "")[:300] if crashed else measure,
        }
        if name == DRIFT_CHECK:
            drift, stable_drift = channel_levels(data, "canary"), channel_levels(data, "stable")
        else:
            consistency[name] = canary or str(data.get("status") or Status.INSUFFICIENT_EVIDENCE.value)
    evidence = Phase2Evidence.model_validate(
        {
            "drift": drift,
            "stable_drift": stable_drift,
            "consistency": consistency,
            "checks": checks,
            "measured_at": measured_at,
        }
    )
    return evidence.model_dump(mode="json")


def summarize_and_store(inc: Incident) -> dict[str, Any]:
    root = Settings().artifacts
    stored: dict[str, dict[str, Any] | None] = {}
    results: list[CheckResult] = []
    names = phase_checks()
    for name in names:
        try:
            data = read_result(root, inc.incident_id, PHASE, name)
        except ArtifactError as exc:
            stored[name] = None
            results.append(
                CheckResult(check=name, status=Status.INSUFFICIENT_EVIDENCE, summary=f"no result: {exc}")
            )
            continue
        stored[name] = data
        results.append(
            CheckResult.model_validate({k: data[k] for k in CheckResult.model_fields if k in data})
        )
    # The SOP lists phase 2 from the most direct measurement (CLIP on golden pairs) to the most derived
    # (the embedding distribution's drift): a broken encoder also fails alignment_quality and drift,
    # and among equally severe findings the earlier check's names the cause.
    summary = summarize(PHASE, results, check_order=names)
    evidence = phase2_evidence(stored, measured_at=datetime.now(UTC))
    path = write_result(root, inc.incident_id, PHASE, "summary", summary)
    write_json(root / inc.incident_id / PHASE / "evidence.json", evidence)
    log.info("phase 2 summary: %s - %s; evidence %s", summary.status.value, summary.summary, evidence)
    return {**summary.brief(), "evidence": evidence, "artifact": str(path)}


def stored_evidence(incident_id: str) -> dict[str, Any] | None:
    """``deep_diagnosis/evidence.json`` of an incident, or None when phase 2 has not summed up."""
    try:
        return read_result(Settings().artifacts, incident_id, PHASE, "evidence")
    except ArtifactError:
        return None


def adopt_pod_results(inc: Incident, returned: list[Any]) -> list[str]:
    """Store results that came back through XCom from check pods (kubernetes mode), where the pod
    could not write to this artifact root. Returns the checks adopted."""
    root = Settings().artifacts
    adopted: list[str] = []
    for item in returned:
        if not isinstance(item, dict) or "versions" not in item or "check" not in item:
            continue  # a local task's brief: its result is already stored
        result = DeepResult.model_validate(item)
        try:
            read_result(root, inc.incident_id, PHASE, result.check)
        except ArtifactError:
            write_result(root, inc.incident_id, PHASE, result.check, result)
            adopted.append(result.check)
    return adopted
