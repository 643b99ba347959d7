"""Phase-1 check ``model_integrity``: is every expected model loaded, with the pinned SHA-256?

The expected models and their SHA-256 come from ``runbooks/targets.yaml``; what each version has
loaded comes from its health endpoint. The comparison is made here against the pins, not taken from
the service's own ``checksum_ok`` (a service with a wrong pin would vouch for itself).

Per model, ``verdict``:

- ``checksum_mismatch``: the reported sha256 differs from the pin; ``not_loaded``: the service says
  ``loaded: false`` (the testbed's ``model_not_loaded`` fault reports both). Either is a critical
  ``model_not_loaded`` finding, which rolls a canary back with no human;
- ``unverifiable``: the health endpoint does not say what was loaded (no entry for the model, no
  sha256, no ``loaded`` flag). That is missing evidence, not a mismatch: no finding, the model's
  ``status`` and (absent a real problem) the check's are ``insufficient_evidence``, and ``reason``
  names what the health report lacked;
- ``ok`` / ``unpinned`` (no pin in targets.yaml: reported, not judged).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.golden_window.health import EndpointHealth, snapshot
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.runbooks.schemas import ExpectedModel, HealthConfirmation, PriorityMatrix, Target

CHECK = "model_integrity"


class ModelState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    module: str
    name: str
    expected_sha256: str | None
    reported_sha256: str | None = None
    loaded: bool = False
    verdict: str = Field(description="ok / checksum_mismatch / not_loaded / unverifiable / unpinned")
    status: Status = Field(
        default=Status.OK, description="failed (mismatch, not loaded), insufficient_evidence (unverifiable)"
    )
    reason: str = Field(default="", description="the verdict in words, naming what the health report lacked")
    error: str | None = None


class ModelIntegrityResult(CheckResult):
    models: list[ModelState] = Field(default_factory=list)


def _short(sha: str | None) -> str:
    return f"{sha[:12]}…" if sha else "none"


def compare(version: str, expected: ExpectedModel, reported: list[dict[str, Any]]) -> ModelState:
    """One expected model against what a version reports (pure; the unit tests' entry point)."""
    entry = next((m for m in reported if m.get("name") == expected.name), None)
    base = {"version": version, "module": expected.module.value, "name": expected.name}
    if entry is None:
        listed = ", ".join(str(m.get("name")) for m in reported) or "no models at all"
        return ModelState(
            **base,
            expected_sha256=expected.sha256,
            verdict="unverifiable",
            status=Status.INSUFFICIENT_EVIDENCE,
            reason=f"the health report lists no model {expected.name!r} (it lists {listed})",
        )
    sha = entry.get("sha256") if isinstance(entry.get("sha256"), str) and entry.get("sha256") else None
    flag = entry.get("loaded")
    error = str(entry["error"])[:300] if entry.get("error") else None
    status, reason = Status.FAILED, ""
    if expected.sha256 is not None and sha is not None and sha.lower() != expected.sha256:
        verdict, reason = "checksum_mismatch", f"sha256 {_short(sha)} ≠ pinned {_short(expected.sha256)}"
    elif flag is False:
        verdict, reason = "not_loaded", "the service reports it not loaded"
    elif flag is not True:
        verdict, status = "unverifiable", Status.INSUFFICIENT_EVIDENCE
        reason = f"the health report does not say whether it is loaded (loaded: {flag!r})"
    elif expected.sha256 is None:
        verdict, status, reason = "unpinned", Status.OK, "no sha256 pinned in targets.yaml"
    elif sha is None:
        verdict, status = "unverifiable", Status.INSUFFICIENT_EVIDENCE
        reason = "loaded, but the health report gives no sha256 to compare with the pin"
    else:
        verdict, status, reason = "ok", Status.OK, f"sha256 {_short(sha)} = pinned"
    return ModelState(
        **base,
        expected_sha256=expected.sha256,
        reported_sha256=sha,
        loaded=flag is True,
        verdict=verdict,
        status=status,
        reason=reason,
        error=error,
    )


def _summary(target: Target, states: list[ModelState], unanswered: list[str]) -> tuple[Status, str]:
    """failed on a mismatch or an unloaded model; else insufficient evidence when a model could not be
    verified or a version did not answer; else ok."""
    checked = sorted({s.version for s in states})
    if not checked:
        reason = "; ".join(unanswered or ["no models pinned"])
        return Status.INSUFFICIENT_EVIDENCE, f"no version of {target.name} reported its models: {reason}"
    bad = [s for s in states if s.status is Status.FAILED]
    unknown = [s for s in states if s.status is Status.INSUFFICIENT_EVIDENCE]
    verified = sum(1 for s in states if s.verdict == "ok")
    summary = f"{verified}/{len(states)} models verified on {', '.join(checked)}"
    if bad:
        summary += f"; {len(bad)} wrong: " + ", ".join(f"{s.version} {s.name} {s.verdict}" for s in bad)
    if unknown:
        summary += f"; {len(unknown)} unverifiable: " + ", ".join(
            f"{s.version} {s.name} ({s.reason})" for s in unknown
        )
    if unanswered:
        summary += f"; not checked: {'; '.join(unanswered)}"
    if bad:
        return Status.FAILED, summary
    return (Status.INSUFFICIENT_EVIDENCE if unknown or unanswered else Status.OK), summary


def assess(target: Target, endpoints: list[EndpointHealth], matrix: PriorityMatrix) -> ModelIntegrityResult:
    """Every expected model of ``target`` on every version whose health answered."""
    problem = matrix.get("model_not_loaded")
    states: list[ModelState] = []
    findings: list[Finding] = []
    unanswered: list[str] = []
    for ep in endpoints:
        if ep.name == "gateway":
            continue
        if ep.failed:
            unanswered.append(f"{ep.name} ({ep.error})")
            continue
        for expected in target.models:
            state = compare(ep.name, expected, ep.models)
            states.append(state)
            if state.status is not Status.FAILED or problem is None:
                continue  # unverifiable is missing evidence, never a finding
            findings.append(
                Finding.from_problem(
                    problem,
                    CHECK,
                    f"{ep.name} {state.name} ({state.module}): {state.reason}"
                    + (f"; service says: {state.error}" if state.error else ""),
                    version=ep.name,
                    component=state.module,
                )
            )
    status, summary = _summary(target, states, unanswered)
    return ModelIntegrityResult(
        check=CHECK,
        status=status,
        summary=summary,
        details={
            "target": target.name,
            "versions_checked": sorted({s.version for s in states}),
            "unanswered": unanswered,
            "unverifiable": [f"{s.version}/{s.name}" for s in states if s.verdict == "unverifiable"],
        },
        findings=findings,
        models=states,
    )


def check_models(
    target: Target, matrix: PriorityMatrix, timeout_s: float = 5.0, conf: HealthConfirmation | None = None
) -> ModelIntegrityResult:
    """The ``model_integrity`` check (reads health itself, so it runs in parallel with the snapshot;
    a failed GET is retried as the snapshot's are, ``conf``)."""
    return assess(target, snapshot(target, timeout_s, include_gateway=False, conf=conf), matrix)
