"""Phase-1 check ``model_integrity``: is every expected model loaded, with the pinned SHA-256?

The expected models and their SHA-256 come from ``runbooks/targets.yaml``; what each version has
loaded comes from its health endpoint. The comparison is made here against the pins, not taken from
the service's own ``checksum_ok`` (a service with a wrong pin would vouch for itself).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.golden_window.health import EndpointHealth, snapshot
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.runbooks.schemas import ExpectedModel, PriorityMatrix, Target

CHECK = "model_integrity"


class ModelState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    module: str
    name: str
    expected_sha256: str | None
    reported_sha256: str | None = None
    loaded: bool = False
    verdict: str = Field(description="ok / checksum_mismatch / not_loaded / missing / unpinned")
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
        return ModelState(**base, expected_sha256=expected.sha256, verdict="missing")
    sha = entry.get("sha256") if isinstance(entry.get("sha256"), str) else None
    loaded = entry.get("loaded") is True
    error = str(entry["error"])[:300] if entry.get("error") else None
    if expected.sha256 is not None and sha is not None and sha.lower() != expected.sha256:
        verdict = "checksum_mismatch"
    elif not loaded:
        verdict = "not_loaded"
    elif expected.sha256 is None:
        verdict = "unpinned"
    elif sha is None:
        verdict = "missing"  # loaded, but the service does not say what it loaded: unverifiable
    else:
        verdict = "ok"
    return ModelState(
        **base,
        expected_sha256=expected.sha256,
        reported_sha256=sha,
        loaded=loaded,
        verdict=verdict,
        error=error,
    )


def assess(target: Target, endpoints: list[EndpointHealth], matrix: PriorityMatrix) -> ModelIntegrityResult:
    """Every expected model of ``target`` on every version whose health answered."""
    problem = matrix.get("model_not_loaded")
    states: list[ModelState] = []
    findings: list[Finding] = []
    unanswered: list[str] = []
    for ep in endpoints:
        if ep.name == "gateway":
            continue
        if not ep.reachable or ep.error:
            unanswered.append(f"{ep.name} ({ep.error})")
            continue
        for expected in target.models:
            state = compare(ep.name, expected, ep.models)
            states.append(state)
            if state.verdict in ("ok", "unpinned") or problem is None:
                continue
            evidence = {
                "checksum_mismatch": (
                    f"sha256 {_short(state.reported_sha256)} ≠ pinned {_short(state.expected_sha256)}"
                ),
                "not_loaded": "not loaded",
                "missing": "not reported by the health endpoint (cannot be verified)",
            }[state.verdict]
            findings.append(
                Finding.from_problem(
                    problem,
                    CHECK,
                    f"{ep.name} {state.name} ({state.module}): {evidence}"
                    + (f"; service says: {state.error}" if state.error else ""),
                    version=ep.name,
                    component=state.module,
                )
            )
    checked = sorted({s.version for s in states})
    if not checked:
        status = Status.INSUFFICIENT_EVIDENCE
        summary = f"no version of {target.name} reported its models: " + "; ".join(
            unanswered or ["no models pinned"]
        )
    else:
        bad = [s for s in states if s.verdict not in ("ok", "unpinned")]
        status = Status.FAILED if bad else Status.OK
        summary = (
            f"{len(states) - len(bad)}/{len(states)} models verified on {', '.join(checked)}"
            + (
                f"; {len(bad)} wrong: " + ", ".join(f"{s.version} {s.name} {s.verdict}" for s in bad)
                if bad
                else ""
            )
            + (f"; not checked: {'; '.join(unanswered)}" if unanswered else "")
        )
    return ModelIntegrityResult(
        check=CHECK,
        status=status,
        summary=summary,
        details={"target": target.name, "versions_checked": checked, "unanswered": unanswered},
        findings=findings,
        models=states,
    )


def check_models(target: Target, matrix: PriorityMatrix, timeout_s: float = 5.0) -> ModelIntegrityResult:
    """The ``model_integrity`` check (reads health itself, so it runs in parallel with the snapshot)."""
    return assess(target, snapshot(target, timeout_s, include_gateway=False), matrix)
