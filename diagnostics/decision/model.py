"""The decision's typed vocabulary: what it is decided from (:class:`DecisionInputs`: the channels'
counts, phase-1 and phase-2 evidence) and what it decides (:class:`Decision`, with every rule's result,
threshold and reason). Stored as ``decision/decision.json`` and read back with this model."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    model_validator,
)

from diagnostics.decision.risk import ChannelRisk
from diagnostics.golden_window.canary_gate import CanaryGateResult
from diagnostics.incident.model import GateAlert
from diagnostics.incident.results import CheckResult, Status
from diagnostics.runbooks.decision import (
    CanaryStage,
    Evidence,
    HumanGateDefault,
    Outcome,
    RequiredEvidence,
    RiskParameters,
)
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.schemas import Channel, Severity

CHECK = "decision"


def acts_without_human(outcome: object, promote_to: object, needs_human: object) -> bool:
    """The rule behind :attr:`Decision.acts_without_human`, on plain values too: readers of decisions
    stored before the field existed derive it with this same rule."""
    return not needs_human and (outcome == Outcome.ROLLBACK.value or promote_to is not None)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- inputs ---------------------------------------------------------------------------------------


class VersionCounts(_Model):
    """One version on one channel over one window; ``slow_requests`` None = no latency histogram.

    The SLA-slow count is exact only when the SLA is a histogram bucket bound; otherwise the buckets
    bound it (``slow_at_least`` .. ``slow_at_most``) and each side argues with its conservative end."""

    requests: float = Field(ge=0)
    errors: float = Field(ge=0)
    slow_requests: float | None = Field(default=None, ge=0)
    slow_at_least: float | None = Field(default=None, ge=0, description="None: exact (slow_requests)")
    slow_at_most: float | None = Field(default=None, ge=0, description="None: exact (slow_requests)")

    def slow(self, end: Literal["least", "most"]) -> float | None:
        """The SLA-slow count at one end of what the buckets allow (the exact count when exact)."""
        bound = self.slow_at_least if end == "least" else self.slow_at_most
        return self.slow_requests if bound is None or self.slow_requests is None else bound

    @property
    def slow_is_exact(self) -> bool:
        return self.slow_at_least is None or self.slow_at_least == self.slow_at_most


class ChannelCounts(_Model):
    channel: Channel
    canary: VersionCounts = Field(description="current window")
    stable: VersionCounts = Field(description="current window")
    stable_reference: VersionCounts = Field(description="the window before: the canary's prior")


class FindingBrief(_Model):
    severity: Severity
    problem: str
    component: str
    version: str | None = None
    channel: str | None = None
    evidence: str = ""


class Phase1Evidence(_Model):
    status: Status
    checks: dict[str, Status] = Field(default_factory=dict)
    findings: list[FindingBrief] = Field(default_factory=list)


DriftLevel = Literal[0, 1, 2]
DRIFT_CHECK = "drift"
_DRIFT_STATUS: dict[int, Status] = {0: Status.OK, 1: Status.DEGRADED, 2: Status.FAILED}


class CheckEvidence(_Model):
    """One phase-2 check on both versions, as the decision weighs it."""

    canary: Status | None = Field(default=None, description="None: the canary was not measured")
    stable: Status | None = Field(default=None, description="None: stable was not measured")
    crashed: bool = Field(default=False, description="the check crashed: no verdict on either version")
    canary_worse: bool | None = Field(
        default=None,
        description="the canary worse than stable by the check's own measure, beyond its noise; "
        "None: the result holds no comparison",
    )
    measure: str = Field(default="", description="the numbers behind canary_worse, or why none")


class Phase2Evidence(_Model):
    """Phase-2 evidence about both versions; a channel or check that is absent was not measured.

    ``drift`` and ``consistency`` are the canary's (what readers of ``evidence.json`` show); ``checks``
    holds each check on both versions with the check's own comparison, and ``stable_drift`` stable's
    levels: a finding both versions share is no evidence against the canary. Evidence stored before
    these existed has the canary's side only (:meth:`check` derives it), which shows nothing worse.
    """

    drift: dict[Channel, DriftLevel | None] = Field(
        default_factory=dict, description="the canary's, per channel: 0 none, 1 watch, 2 act"
    )
    stable_drift: dict[Channel, DriftLevel | None] = Field(default_factory=dict, description="stable's")
    consistency: dict[str, Status] = Field(default_factory=dict, description="check name -> canary status")
    checks: dict[str, CheckEvidence] = Field(default_factory=dict, description="check name -> both versions")
    measured_at: datetime | None = Field(default=None, description="when phase 2 summed up (UTC)")

    def check(self, name: str) -> CheckEvidence | None:
        """The check's evidence; None when it left no result (absent)."""
        if name in self.checks:
            return self.checks[name]
        if name == DRIFT_CHECK and self.drift:
            levels = [lv for lv in self.drift.values() if lv is not None]
            status = _DRIFT_STATUS[max(levels)] if levels else Status.INSUFFICIENT_EVIDENCE
            return CheckEvidence(canary=status, measure="canary's drift levels only")
        if name in self.consistency:
            return CheckEvidence(canary=self.consistency[name], measure="canary's status only")
        return None


class DecisionInputs(_Model):
    """Everything the decision weighs; stored with the decision so it can be replayed."""

    incident_id: str
    target: str
    grade: GradeId | None = None
    dry_run: bool = False
    suspected_version: str | None = Field(default=None, description="the version the incident names")
    analysed_at: datetime | None = Field(default=None, description="when phase 1 looked; phase 2 comes after")
    canary_weight_percent: float | None = Field(default=None, ge=0, le=100, description="None: unknown")
    rollback_method: str | None = None
    rollback_sensitive: bool = Field(default=False, description="targets.yaml marks the target sensitive")
    metrics_status: Status | None = Field(default=None, description="metrics_sla's status; None: no result")
    metrics_summary: str = ""
    gate: CanaryGateResult | None = Field(default=None, description="None: no gate result")
    channels: list[ChannelCounts] = Field(default_factory=list)
    phase1: Phase1Evidence | None = None
    phase2: Phase2Evidence | None = Field(default=None, description="None: phase 2 not measured")
    gate_alerts: list[GateAlert] = Field(
        default_factory=list, description="the incident's firing alerts with a gate label (canary watch)"
    )


# --- the decision ---------------------------------------------------------------------------------


class RuleResult(_Model):
    rule: str
    outcome: Outcome
    matched: bool
    reasons: list[str] = Field(default_factory=list)


class ThresholdsUsed(_Model):
    """Every threshold the decision applied, copied from the policy and the gate."""

    risk: RiskParameters
    evidence: Evidence
    required_evidence: RequiredEvidence | None = None
    precedence: list[str]
    gate_min_requests: int | None = None
    gate_sustained_s: float | None = None
    stage: CanaryStage | None = Field(default=None, description="the stage the canary is at")
    next_stage: CanaryStage | None = None


class Decision(CheckResult):
    """The decision, with every input, threshold and reason; stored like any check result."""

    check: str = CHECK
    outcome: Outcome
    rule: str = Field(description="the precedence rule that decided")
    rule_description: str
    reasons: list[str] = Field(description="the deciding rule's reasons first, then every other note")
    gate_breach: bool = Field(
        default=False,
        description="a hard canary-gate breach decided it (Prometheus' gate or the canary watch)",
    )
    promote_to: float | None = Field(default=None, description="percent to promote the canary to")
    needs_human: bool
    human_gate: HumanGateDefault = Field(description="the default and timeout for the incident's grade")
    risks: list[ChannelRisk] = Field(default_factory=list)
    max_risk: float | None = None
    thresholds: ThresholdsUsed
    trace: list[RuleResult] = Field(default_factory=list, description="every rule, in precedence order")
    inputs: DecisionInputs

    @model_validator(mode="before")
    @classmethod
    def _derived_fields_are_not_input(cls, data: Any) -> Any:
        # acts_without_human is stored for readers of the JSON; read back, it is derived again.
        # Decisions stored before gate_breach was named called it fast_path.
        if isinstance(data, dict) and ("acts_without_human" in data or "fast_path" in data):
            data = {k: v for k, v in data.items() if k != "acts_without_human"}
            if "fast_path" in data:
                data.setdefault("gate_breach", data.pop("fast_path"))
        # Decisions stored before required_evidence replaced evidence.require_phase2 still read.
        thresholds = data.get("thresholds") if isinstance(data, dict) else None
        evidence = thresholds.get("evidence") if isinstance(thresholds, dict) else None
        if isinstance(evidence, dict) and "require_phase2" in evidence:
            kept = {k: v for k, v in evidence.items() if k != "require_phase2"}
            data = {**data, "thresholds": {**thresholds, "evidence": kept}}  # type: ignore[dict-item]
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def acts_without_human(self) -> bool:
        """The decision changes the service by itself: a rollback or a promotion no human must confirm.
        The DAG, the UI, the report, the audit bundle and the scenario observer all read this one rule."""
        return acts_without_human(self.outcome.value, self.promote_to, self.needs_human)

    @property
    def rolls_back_without_human(self) -> bool:
        """The fast path's test: roll back now, before phase 2 (which can only add reasons to)."""
        return self.acts_without_human and self.outcome is Outcome.ROLLBACK

    def brief(self) -> dict[str, Any]:
        """Small enough for XCom: what the DAG branches on and shows."""
        return {
            "outcome": self.outcome.value,
            "status": self.status.value,
            "rule": self.rule,
            "summary": self.summary,
            "gate_breach": self.gate_breach,
            "acts_without_human": self.acts_without_human,
            "promote_to": self.promote_to,
            "needs_human": self.needs_human,
            "human_gate": self.human_gate.model_dump(mode="json"),
            "max_risk": self.max_risk,
            "reasons": self.reasons[:10],
            "dry_run": self.inputs.dry_run,
        }
