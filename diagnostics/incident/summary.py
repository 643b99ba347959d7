"""A phase's summary: every check's findings in one list ranked by severity, for the decision and the UI.

The phase status is the worst status among the checks that produced evidence; a phase where no
check produced evidence is ``insufficient_evidence`` (missing data never counts as a pass).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from diagnostics.incident.results import CheckResult, Finding, Status

_WORST = (Status.FAILED, Status.DEGRADED, Status.OK)


class PhaseSummary(CheckResult):
    phase: str
    checks: dict[str, Status] = Field(default_factory=dict)
    check_summaries: dict[str, str] = Field(default_factory=dict)
    suspected_component: str | None = None
    suspected_version: str | None = None
    top_action: str | None = None
    gate: dict[str, Any] | None = Field(default=None, description="the canary gate verdict, when measured")

    def brief(self, findings: int = 5) -> dict[str, Any]:
        """Small enough for XCom and a run note."""
        return {
            "phase": self.phase,
            "status": self.status.value,
            "summary": self.summary,
            "checks": {k: v.value for k, v in self.checks.items()},
            "suspected_component": self.suspected_component,
            "suspected_version": self.suspected_version,
            "top_action": self.top_action,
            "gate": self.gate,
            "findings": [
                {
                    k: f.model_dump(mode="json")[k]
                    for k in ("severity", "problem", "component", "version", "evidence")
                }
                for f in self.findings[:findings]
            ],
        }


def summarize(
    phase: str,
    results: list[CheckResult],
    gate: dict[str, Any] | None = None,
    *,
    check_order: Sequence[str] | None = None,
) -> PhaseSummary:
    """``check_order``: among equally severe findings, the earlier check's ranks first (else by name)."""
    order = {name: i for i, name in enumerate(check_order or ())}

    def rank(f: Finding) -> tuple[int, int, str, str]:
        severity, check, problem = f.rank_key()
        return severity, order.get(check, len(order)), check, problem

    findings = sorted((f for r in results for f in r.findings), key=rank)
    statuses = {r.check: r.status for r in results}
    measured = [s for s in statuses.values() if s != Status.INSUFFICIENT_EVIDENCE]
    status = next((s for s in _WORST if s in measured), Status.INSUFFICIENT_EVIDENCE)
    top = findings[0] if findings else None
    component: str | None = None
    version: str | None = None
    lead: Finding | None = None
    if top is not None:
        # The suspected component is the most severe finding's; ties go to the component most findings name.
        tied = [f for f in findings if f.severity == top.severity]
        component = Counter(f.component for f in tied).most_common(1)[0][0]
        versions = Counter(f.version for f in tied if f.version)
        version = versions.most_common(1)[0][0] if versions else None
        lead = next(f for f in tied if f.component == component)
        summary = (
            f"{len(findings)} finding(s); most severe: {lead.severity} {lead.problem} on {component}"
            + (f" ({version})" if version else "")
        )
    else:
        summary = "no findings" if measured else "no check produced evidence"
    missing = sorted(k for k, v in statuses.items() if v == Status.INSUFFICIENT_EVIDENCE)
    if missing:
        summary += f"; insufficient evidence from {', '.join(missing)}"
    return PhaseSummary(
        check=f"{phase}_summary",
        status=status,
        summary=summary,
        findings=findings,
        phase=phase,
        checks=statuses,
        check_summaries={r.check: r.summary for r in results},
        suspected_component=component,
        suspected_version=version,
        top_action=lead.action if lead else None,
        gate=gate,
    )
