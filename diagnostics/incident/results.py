"""Result vocabulary shared by every check: a status, a summary, details and ranked findings."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.runbooks.schemas import Problem, Severity


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"
    # Missing data is its own outcome: it can never cause an automatic rollback or count as a pass.
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"


SEVERITY_RANK: dict[Severity, int] = {
    Severity.CRITICAL: 0,
    Severity.HIGH: 1,
    Severity.MEDIUM: 2,
    Severity.LOW: 3,
}


class Finding(BaseModel):
    """One thing a check found wrong, with the numbers behind it and what to do about it.

    ``problem`` is a priority-matrix problem id where one applies (so ``action`` and ``runbook`` come
    from the matrix), else a check-specific id such as ``canary_gate_breach``.
    """

    model_config = ConfigDict(extra="forbid")

    check: str
    problem: str
    severity: Severity
    component: str = Field(description="the suspected module (runbooks Component value) or 'gateway'")
    title: str
    evidence: str = Field(description="the numbers behind the finding, for a human")
    action: str = ""
    runbook: str | None = None
    version: str | None = None
    channel: str | None = None

    @classmethod
    def from_problem(
        cls,
        problem: Problem,
        check: str,
        evidence: str,
        *,
        version: str | None = None,
        channel: str | None = None,
        component: str | None = None,
    ) -> Finding:
        """A finding of a priority-matrix problem: its title, severity, component and action."""
        return cls(
            check=check,
            problem=problem.id,
            severity=problem.severity,
            component=component or problem.first_component.value,
            title=problem.title,
            evidence=evidence,
            action=problem.action,
            runbook=problem.runbook,
            version=version,
            channel=channel,
        )

    def rank_key(self) -> tuple[int, str, str]:
        return (SEVERITY_RANK[self.severity], self.check, self.problem)


class CheckResult(BaseModel):
    """The common shape of a check's outcome; checks subclass it to add their figures."""

    model_config = ConfigDict(extra="forbid")

    check: str
    status: Status
    summary: str
    details: dict[str, object] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)
