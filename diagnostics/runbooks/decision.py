"""Schema of ``runbooks/decision.yaml``: the canary decision's policy, as data a human can review.

The decision (``diagnostics/decision/``) reads everything it weighs from here: the Bayesian risk
parameters, which evidence must be present before the canary may go on or be promoted
(``evidence.required_checks`` and ``required_evidence``), the ordered precedence of
the rules (first match wins), the staged canary (2 % -> 15 % -> 100 %) with the risk bound a stage
must be under to be promoted, and the human gate's safe default and timeout per grade.

The rules themselves are code (one function per rule id in ``diagnostics/decision/policy.py``); the
file decides their order and documents them. Each rule's outcome is fixed by what it tests (a gate
breach can only argue for rollback), so the file must state the same outcome: a mismatch is a typo
or a misunderstanding, and fails validation instead of silently meaning something else.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Any, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.schemas import (
    ArgoRollback,
    GatewayRollback,
    Identifier,
    KubernetesRollback,
    Severity,
    Strict,
)

# The rollback methods targets.yaml knows (the discriminator values of its rollback configs).
ROLLBACK_METHODS: tuple[str, ...] = tuple(
    value
    for model in (GatewayRollback, KubernetesRollback, ArgoRollback)
    for value in get_args(model.model_fields["method"].annotation)
)


class Outcome(StrEnum):
    ROLLBACK = "rollback"
    CONTINUE = "continue"
    # Missing data is its own outcome: never a rollback, never a pass; a human decides.
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"


# Every rule the decision implements, with the only outcome it can argue for.
RULE_OUTCOMES: dict[str, Outcome] = {
    "canary_gate_breach": Outcome.ROLLBACK,
    "canary_watch_rejection": Outcome.ROLLBACK,
    "critical_canary_finding": Outcome.ROLLBACK,
    "bayesian_risk": Outcome.ROLLBACK,
    "phase2_evidence": Outcome.ROLLBACK,
    "insufficient_evidence": Outcome.INSUFFICIENT_EVIDENCE,
    "continue": Outcome.CONTINUE,
}


class RiskParameters(Strict):
    """Beta-Binomial canary risk: ``risk = P(p_canary > p_stable + margin)`` per channel and kind.

    Canary prior ``Beta(1 + w·fail_ref, 1 + w·ok_ref)`` from the stable version's reference window,
    ``w = prior_weight`` lowered so that ``w·n_ref <= max_prior_requests``; stable's own posterior is
    ``Beta(1 + fail, 1 + ok)`` over the current window.
    """

    risk_threshold: float = Field(gt=0.5, lt=1, description="risk above this argues for rollback")
    error_margin: float = Field(ge=0, lt=1, description="absolute error-rate margin")
    latency_margin: float = Field(ge=0, lt=1, description="absolute margin on the share of SLA-slow requests")
    prior_weight: float = Field(ge=0, le=1, description="weight of one stable reference request in the prior")
    max_prior_requests: float = Field(ge=0, description="cap on the prior's effective sample size")
    min_requests: int = Field(ge=1, description="fewer canary (or stable) requests on a channel: no verdict")

    def margin(self, kind: str) -> float:
        return self.error_margin if kind == "error" else self.latency_margin


class Evidence(Strict):
    """What must be measured before the canary may go on, and which findings roll it back."""

    required_checks: list[Identifier] = Field(
        min_length=1,
        description="phase-1 checks that must have produced evidence (absent or insufficient_evidence "
        "blocks 'continue')",
    )
    canary_finding_severities: list[Severity] = Field(
        min_length=1, description="a phase-1 finding on the canary at these severities rolls it back"
    )
    drift_rollback_level: int = Field(default=2, ge=1, le=2, description="drift level that rolls back")
    gate_breach_alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="a rate gate's breach takes the fast path only when P(Binomial(n, limit) >= observed) "
        "is below this: the samples show the canary above the limit, not noise around it",
    )

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: Any) -> Any:
        if isinstance(data, dict) and "require_phase2" in data:
            raise ValueError(
                "require_phase2 is replaced by required_evidence: list the phase-2 checks 'continue' "
                "needs under required_evidence.continue.phase2 (and a promotion's under promote.phase2)"
            )
        return data


class EvidenceNeeds(Strict):
    """The checks whose evidence one outcome needs, by phase."""

    phase1: list[Identifier] = Field(default_factory=list, description="golden_window checks")
    phase2: list[Identifier] = Field(default_factory=list, description="deep_diagnosis checks")

    @field_validator("phase1", "phase2")
    @classmethod
    def _unique(cls, checks: list[str]) -> list[str]:
        dupes = sorted({c for c in checks if checks.count(c) > 1})
        if dupes:
            raise ValueError(f"each check once; repeated: {', '.join(dupes)}")
        return checks


class RequiredEvidence(Strict):
    """The evidence each outcome needs. ``continue``: every listed check has a verdict on the canary
    (ok, degraded or failed); ``promote``: every listed check is ``ok`` on the canary. A listed check
    that is absent, crashed or insufficient on the canary is missing evidence: no 'continue' (a human
    decides), and never a promotion. Phase-1 checks every outcome needs are ``evidence.required_checks``.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    continue_: EvidenceNeeds = Field(alias="continue", description="what 'continue' needs a verdict from")
    promote: EvidenceNeeds = Field(description="what must be ok before a promotion to the next stage")

    @model_validator(mode="after")
    def _promotion_is_a_continue(self) -> RequiredEvidence:
        # a promotion is a 'continue' that also moves the weight: it needs at least the same evidence
        missing = [c for c in self.continue_.phase2 if c not in self.promote.phase2]
        if missing:
            raise ValueError(
                "promote.phase2 must list every check continue.phase2 lists (a promotion is a 'continue' "
                f"that also moves the weight); missing: {', '.join(missing)}"
            )
        return self


class PrecedenceRule(Strict):
    id: Identifier
    description: str = Field(min_length=1)
    outcome: Outcome


class CanaryStage(Strict):
    """One step of the staged canary; promotion from it needs the risk under ``max_risk`` and at least
    ``min_requests`` canary requests on every served channel (a young canary has not shown much yet)."""

    percent: float = Field(gt=0, le=100)
    max_risk: float | None = Field(default=None, ge=0, le=1, description="none only for the last stage")
    min_requests: int = Field(default=0, ge=0)


class CanaryPolicy(Strict):
    stages: list[CanaryStage] = Field(min_length=1)

    @field_validator("stages")
    @classmethod
    def _ordered(cls, stages: list[CanaryStage]) -> list[CanaryStage]:
        percents = [s.percent for s in stages]
        if any(b <= a for a, b in itertools.pairwise(percents)):
            raise ValueError(f"stages must be in increasing percent order, got {percents}")
        if percents[-1] != 100:
            raise ValueError(f"the last stage must be 100 percent, got {percents[-1]:g}")
        missing = [f"{s.percent:g} %" for s in stages[:-1] if s.max_risk is None]
        if missing:
            raise ValueError(f"every stage but the last needs max_risk; missing at {', '.join(missing)}")
        return stages

    def current(self, weight_percent: float) -> CanaryStage | None:
        """The stage the canary is at: the largest stage at or below its weight (None: below the first)."""
        at = [s for s in self.stages if s.percent <= weight_percent]
        return at[-1] if at else None

    def next_after(self, weight_percent: float) -> CanaryStage | None:
        """The stage a promotion goes to: the first above the weight (None: already at 100 %)."""
        return next((s for s in self.stages if s.percent > weight_percent), None)


class HumanChoice(StrEnum):
    ROLLBACK = "rollback"
    HOLD = "hold"
    CONTINUE = "continue"


# What the on-call engineer reads at the human gate (the Airflow HITL options), per choice.
HUMAN_OPTIONS: dict[str, str] = {
    HumanChoice.ROLLBACK.value: "Roll back the canary",
    HumanChoice.HOLD.value: "Hold and escalate",
    HumanChoice.CONTINUE.value: "Continue the release",
}

# Not a choice a grade's default can name: the intake answers a waiting gate with it when new evidence
# (a raised grade, a gate breach) started a re-evaluation run that decides instead. Routed like "hold"
# (the canary stays as it is) but not escalated: the re-evaluation run owns the incident now.
SUPERSEDED = "superseded"
SUPERSEDED_OPTION = "Superseded by new evidence"
GATE_OPTIONS: dict[str, str] = {**HUMAN_OPTIONS, SUPERSEDED: SUPERSEDED_OPTION}


class HumanGateDefault(Strict):
    """What happens when nobody answers the approval request within ``timeout_s``."""

    choice: HumanChoice
    timeout_s: float = Field(gt=0, le=86_400)
    escalate: bool = Field(default=False, description="page the next level when the timeout passes")


class HumanGate(Strict):
    grades: dict[GradeId, HumanGateDefault]
    ungraded: HumanGateDefault = Field(description="manual investigations, which carry no grade")
    sensitive_rollback_methods: list[str] = Field(
        default_factory=list,
        description="rollback methods that need a human's approval even when the decision is automatic",
    )

    @field_validator("sensitive_rollback_methods")
    @classmethod
    def _known(cls, methods: list[str]) -> list[str]:
        unknown = [m for m in methods if m not in ROLLBACK_METHODS]
        if unknown:
            raise ValueError(
                f"unknown rollback method(s) {', '.join(unknown)}; targets.yaml knows: "
                + ", ".join(ROLLBACK_METHODS)
            )
        return methods

    @model_validator(mode="after")
    def _every_grade(self) -> HumanGate:
        missing = [g.value for g in GradeId if g not in self.grades]
        if missing:
            raise ValueError(f"grades must define every grade L1-L4; missing: {', '.join(missing)}")
        return self


class Verification(Strict):
    """How long and how often the response polls for recovery after a rollback."""

    timeout_s: float = Field(default=300.0, gt=0, le=86_400, description="then: not recovered, escalate")
    interval_s: float = Field(default=5.0, gt=0, le=600, description="between two probes")
    required_consecutive: int = Field(default=3, ge=1, le=100, description="good probes in a row")
    window_s: float = Field(default=60.0, gt=0, le=3600, description="stable's metrics window per probe")
    min_requests: int = Field(default=10, ge=1, description="stable requests a metrics probe needs")


class DecisionPolicy(Strict):
    version: int = Field(ge=1)
    risk: RiskParameters
    evidence: Evidence
    required_evidence: RequiredEvidence
    precedence: list[PrecedenceRule] = Field(min_length=1)
    canary: CanaryPolicy
    human_gate: HumanGate
    verification: Verification = Field(default_factory=Verification)

    @field_validator("precedence")
    @classmethod
    def _precedence(cls, precedence: list[PrecedenceRule]) -> list[PrecedenceRule]:
        ids = [r.id for r in precedence]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(dupes)}")
        unknown = [i for i in ids if i not in RULE_OUTCOMES]
        if unknown:
            raise ValueError(
                f"unknown rule(s) {', '.join(unknown)}; the decision implements: " + ", ".join(RULE_OUTCOMES)
            )
        missing = [i for i in RULE_OUTCOMES if i not in ids]
        if missing:
            raise ValueError(f"every rule must be listed; missing: {', '.join(missing)}")
        wrong = [
            f"{r.id} -> {RULE_OUTCOMES[r.id].value}" for r in precedence if r.outcome != RULE_OUTCOMES[r.id]
        ]
        if wrong:
            raise ValueError(f"a rule's outcome is fixed by what it tests: {', '.join(wrong)}")
        if ids[-1] != "continue":
            raise ValueError("'continue' is the catch-all and must come last")
        return precedence

    def human_gate_for(self, grade: str | None) -> HumanGateDefault:
        """The human gate's default choice and timeout for an incident's grade (None: ungraded)."""
        if grade is None:
            return self.human_gate.ungraded
        try:
            return self.human_gate.grades[GradeId(grade)]
        except ValueError:
            raise ValueError(f"grade: {grade!r} is not one of L1-L4") from None

    def is_sensitive(self, rollback_method: str | None) -> bool:
        return rollback_method is not None and rollback_method in self.human_gate.sensitive_rollback_methods

    def rule(self, rule_id: str) -> PrecedenceRule:
        return next(r for r in self.precedence if r.id == rule_id)
