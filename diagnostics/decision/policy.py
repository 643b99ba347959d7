"""The canary decision: ``rollback``, ``continue`` or ``insufficient_evidence``, from phase-1 (and, when
it exists, phase-2) evidence, under the policy in ``runbooks/decision.yaml``.

Every rule of the policy's ``precedence`` is evaluated and recorded with its reasons; the first that
matches decides (the order is the file's). The rules:

- ``canary_gate_breach``: the phase-1 canary gate is ``breach`` and a breaching gate stands on at
  least the gate's ``min_requests``, half of them in each half of the sustained window, and (for a
  rate) significantly above the limit (see :func:`backed_breaches`) -> rollback, on the **fast
  path** (``gate_breach=True``). A breach that is not so backed is insufficient evidence, never a pass;
- ``critical_canary_finding``: a phase-1 finding on the canary at a rollback severity (model not
  loaded, checksum mismatch, canary unreachable). A finding on stable alone never rolls the canary
  back (there is nothing to roll back to), nor does one stable shares (a rollback would not help):
  both are recorded as reasons. The gate's own findings belong to the first rule;
- ``bayesian_risk``: ``P(p_canary > p_stable + margin) > risk_threshold`` on any channel, for errors
  or SLA-slow requests, with at least ``min_requests`` on both sides (see :mod:`.risk`) -> rollback;
- ``phase2_evidence``: drift at ``drift_rollback_level`` on a channel, or a failed consistency check
  (phase 2 measures the canary), when phase 2 was measured -> rollback;
- ``insufficient_evidence``: no or insufficient metrics, the gate insufficient, a served channel
  whose risk has no verdict, no served channel at all, a required check without evidence (or no
  phase 2 where the policy requires it) -> insufficient_evidence: a human decides. Missing data
  never rolls back and never passes;
- ``continue``: the catch-all. Promotion to the next stage (``promote_to``) only when every risk is
  under the current stage's ``max_risk``, every served channel has the stage's ``min_requests``, and
  no canary finding at a promotion-blocking severity stands.

``needs_human`` is true for ``insufficient_evidence``, and for a change (rollback or promotion) of a
target whose rollback method the policy lists as sensitive, or that targets.yaml marks sensitive.
The human gate's default and timeout for the incident's grade travel with the decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    computed_field,
    model_validator,
)
from scipy import special

from diagnostics.decision.risk import ChannelRisk, Counts, RiskKind, RiskVerdict, channel_risk
from diagnostics.golden_window.canary_gate import CanaryGateResult, GateCheck, GateVerdict
from diagnostics.incident.results import CheckResult, Status
from diagnostics.runbooks.decision import (
    CanaryStage,
    DecisionPolicy,
    Evidence,
    HumanGateDefault,
    Outcome,
    RiskParameters,
)
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.schemas import Channel, Severity, Target

CHECK = "decision"
STATUS_OF: dict[Outcome, Status] = {
    Outcome.ROLLBACK: Status.FAILED,
    Outcome.CONTINUE: Status.OK,
    Outcome.INSUFFICIENT_EVIDENCE: Status.INSUFFICIENT_EVIDENCE,
}
# Findings that block a promotion (they did not roll back, but they are not a clean bill of health).
PROMOTION_BLOCKING = (Severity.CRITICAL, Severity.HIGH)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- inputs ---------------------------------------------------------------------------------------


class VersionCounts(_Model):
    """One version on one channel over one window; ``slow_requests`` None = no latency histogram."""

    requests: float = Field(ge=0)
    errors: float = Field(ge=0)
    slow_requests: float | None = Field(default=None, ge=0)


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


class Phase2Evidence(_Model):
    """Phase-2 evidence about the canary; a channel or check that is absent was not measured."""

    drift: dict[Channel, DriftLevel | None] = Field(
        default_factory=dict, description="0 none, 1 watch, 2 act"
    )
    consistency: dict[str, Status] = Field(default_factory=dict, description="check name -> status")


class DecisionInputs(_Model):
    """Everything the decision weighs; stored with the decision so it can be replayed."""

    incident_id: str
    target: str
    grade: GradeId | None = None
    dry_run: bool = False
    canary_weight_percent: float | None = Field(default=None, ge=0, le=100, description="None: unknown")
    rollback_method: str | None = None
    rollback_sensitive: bool = Field(default=False, description="targets.yaml marks the target sensitive")
    metrics_status: Status | None = Field(default=None, description="metrics_sla's status; None: no result")
    metrics_summary: str = ""
    gate: CanaryGateResult | None = Field(default=None, description="None: no gate result")
    channels: list[ChannelCounts] = Field(default_factory=list)
    phase1: Phase1Evidence | None = None
    phase2: Phase2Evidence | None = Field(default=None, description="None: phase 2 not measured")


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
    gate_breach: bool = Field(default=False, description="a hard canary-gate breach decided it")
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
        if isinstance(data, dict) and "acts_without_human" in data:
            data = {k: v for k, v in data.items() if k != "acts_without_human"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def acts_without_human(self) -> bool:
        """The decision changes the service by itself: a rollback or a promotion no human must confirm.
        The DAG, the UI, the report, the audit bundle and the scenario observer all read this one rule."""
        return not self.needs_human and (self.outcome is Outcome.ROLLBACK or self.promote_to is not None)

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


# --- the rules ------------------------------------------------------------------------------------


class _Context:
    """What the rules share: the inputs, the policy and the risks, computed once."""

    def __init__(self, inputs: DecisionInputs, policy: DecisionPolicy) -> None:
        self.inputs, self.policy = inputs, policy
        self.served = [c for c in inputs.channels if c.canary.requests > 0]
        self.risks = [r for c in self.served for r in channel_risks(c, policy.risk)]
        findings = inputs.phase1.findings if inputs.phase1 else []
        self.canary_findings = [f for f in findings if f.version == "canary"]
        self.stable_findings = [f for f in findings if f.version == "stable"]

    def measured_risks(self) -> list[float]:
        return [r.risk for r in self.risks if r.risk is not None]


def channel_risks(counts: ChannelCounts, params: RiskParameters) -> list[ChannelRisk]:
    """The error and latency risks of one channel."""
    c, s, ref = counts.canary, counts.stable, counts.stable_reference
    return [
        channel_risk(
            counts.channel,
            RiskKind.ERROR,
            Counts(requests=c.requests, failures=c.errors),
            Counts(requests=s.requests, failures=s.errors),
            Counts(requests=ref.requests, failures=ref.errors),
            params,
        ),
        channel_risk(
            counts.channel,
            RiskKind.LATENCY,
            Counts(requests=c.requests, failures=c.slow_requests),
            Counts(requests=s.requests, failures=s.slow_requests),
            Counts(requests=ref.requests, failures=ref.slow_requests),
            params,
        ),
    ]


def _finding_line(f: FindingBrief) -> str:
    where = "/".join(x for x in (f.version, f.channel) if x)
    return f"{f.severity.value} {f.problem} on {f.component} ({where})" + (
        f": {f.evidence}" if f.evidence else ""
    )


def breach_p_value(check: GateCheck) -> float | None:
    """How likely a rate gate's observed breach is noise at the limit: ``P(Binomial(n, limit) >= k)``
    with ``k = value · n`` failing requests out of ``n`` (the regularized incomplete beta
    ``I_limit(k, n - k + 1)``, which takes the fractional counts ``increase()`` gives). ``None`` for
    the p99 gate, whose count of slow requests the gate does not keep."""
    if check.gate == "p99_latency_ms" or check.value is None or check.requests <= 0:
        return None
    k = min(check.value * check.requests, check.requests)
    if k <= 0:
        return 1.0
    return float(special.betainc(k, check.requests - k + 1, check.limit)) if check.limit > 0 else 0.0


def backed_breaches(gate: CanaryGateResult, alpha: float) -> list[GateCheck]:
    """The gate's breaches that stand on enough samples:

    - ``min_requests`` over the trailing window and half of it in each of its halves: a breach whose
      older half had no traffic (a canary younger than ``sustained_s``; ``increase()`` over the
      window then covers only the recent part) was not shown to be sustained;
    - for the rate gates (5xx, errors), the breach is significant: :func:`breach_p_value` < ``alpha``
      (2 of 300 requests is 0.67 % > 0.5 %, and also what a canary at the limit shows 44 % of the time).
    """
    half = gate.min_requests / 2
    backed = []
    for g in gate.breaches():
        p = breach_p_value(g)
        covered = g.recent_requests >= half and g.requests - g.recent_requests >= half
        if g.requests >= gate.min_requests and covered and (p is None or p < alpha):
            backed.append(g)
    return backed


def _unbacked(gate: CanaryGateResult, alpha: float) -> str:
    parts = []
    for g in gate.breaches():
        p = breach_p_value(g)
        parts.append(
            f"{g.channel.value} {g.gate}: {g.requests - g.recent_requests:.0f} + "
            f"{g.recent_requests:.0f} requests"
            + (f", P(noise at the limit) {p:.3g}" if p is not None else "")
        )
    return (
        f"canary gate breach not backed: needs {gate.min_requests} requests with "
        f"{gate.min_requests / 2:g} in each half of the {gate.sustained_s:g} s window and, for a rate, "
        f"P(noise at the limit) < {alpha:g} (" + "; ".join(parts) + ")"
    )


def rule_canary_gate_breach(ctx: _Context) -> tuple[bool, list[str]]:
    gate = ctx.inputs.gate
    if gate is None:
        return False, ["no canary gate result"]
    if gate.verdict is not GateVerdict.BREACH:
        return False, [f"canary gate {gate.verdict.value}: {gate.reason}".rstrip(": ")]
    alpha = ctx.policy.evidence.gate_breach_alpha
    backed = backed_breaches(gate, alpha)
    if not backed:
        return False, [_unbacked(gate, alpha)]
    return True, [
        f"canary gate breach (fast path): {g.channel.value} {g.gate} {_gate_fmt(g.gate, g.value)} > "
        f"{_gate_fmt(g.gate, g.limit)} (recent half {_gate_fmt(g.gate, g.recent_value)}), "
        f"{g.requests:.0f} requests >= min_requests {gate.min_requests}, sustained {gate.sustained_s:g} s"
        + (f"; stable {_gate_fmt(g.gate, g.stable_value)}" if g.stable_value is not None else "")
        + (f"; P(noise at the limit) {p:.2g} < {alpha:g}" if (p := breach_p_value(g)) is not None else "")
        for g in backed
    ]


def _gate_fmt(gate: str, value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:.0f} ms" if gate.endswith("_ms") else f"{value:.2%}"


def rule_critical_canary_finding(ctx: _Context) -> tuple[bool, list[str]]:
    severities = set(ctx.policy.evidence.canary_finding_severities)
    shared = {(f.problem, f.component) for f in ctx.stable_findings}
    decisive: list[str] = []
    notes: list[str] = []
    for f in ctx.canary_findings:
        if f.severity not in severities or f.problem == "canary_gate_breach":
            continue
        if (f.problem, f.component) in shared:
            notes.append(f"also on stable, a rollback would not help: {_finding_line(f)}")
        else:
            decisive.append(f"critical canary finding: {_finding_line(f)}")
    for f in ctx.stable_findings:
        if f.severity in severities:
            notes.append(f"finding on stable, not a reason to roll the canary back: {_finding_line(f)}")
    if ctx.inputs.phase1 is None:
        notes.append("no phase-1 summary: findings unknown")
    elif not decisive:
        notes.insert(0, "no canary-only finding at " + "/".join(s.value for s in sorted(severities)))
    return bool(decisive), decisive + notes


def rule_bayesian_risk(ctx: _Context) -> tuple[bool, list[str]]:
    risky = [r for r in ctx.risks if r.verdict is RiskVerdict.RISKY]
    if risky:
        return True, [r.reason for r in risky]
    measured = [r for r in ctx.risks if r.risk is not None]
    if not measured:
        return False, ["no channel with enough requests for a risk"]
    top = max(measured, key=lambda r: r.risk or 0.0)
    return False, [
        f"max risk {top.risk:.4f} ({top.channel.value} {top.kind.value}) ≤ {ctx.policy.risk.risk_threshold:g}"
    ]


def rule_phase2_evidence(ctx: _Context) -> tuple[bool, list[str]]:
    phase2 = ctx.inputs.phase2
    if phase2 is None:
        return False, ["phase 2 not measured: drift and consistency unknown (not counted as a pass)"]
    level = ctx.policy.evidence.drift_rollback_level
    decisive = [
        f"drift level {d} >= {level} on canary {ch.value}"
        for ch, d in phase2.drift.items()
        if d is not None and d >= level
    ]
    decisive += [
        f"consistency check {name} failed on canary"
        for name, s in phase2.consistency.items()
        if s is Status.FAILED
    ]
    notes = [f"phase 2: {ch.value} drift not measured" for ch, d in phase2.drift.items() if d is None]
    notes += [
        f"phase 2: {name} insufficient evidence"
        for name, s in phase2.consistency.items()
        if s is Status.INSUFFICIENT_EVIDENCE
    ]
    if not decisive:
        notes.insert(0, f"phase 2: no drift at level {level} and no failed consistency check")
    return bool(decisive), decisive + notes


def rule_insufficient_evidence(ctx: _Context) -> tuple[bool, list[str]]:
    inputs, reasons = ctx.inputs, []
    if inputs.metrics_status is None:
        reasons.append("no metrics_sla result")
    elif inputs.metrics_status is Status.INSUFFICIENT_EVIDENCE:
        reasons.append(f"metrics_sla insufficient evidence: {inputs.metrics_summary or 'no reason given'}")
    if inputs.gate is None:
        reasons.append("no canary gate result")
    elif inputs.gate.verdict is GateVerdict.INSUFFICIENT_EVIDENCE:
        reasons.append(f"canary gate insufficient evidence: {inputs.gate.reason or 'no reason given'}")
    elif inputs.gate.verdict is GateVerdict.BREACH:
        alpha = ctx.policy.evidence.gate_breach_alpha
        if not backed_breaches(inputs.gate, alpha):
            reasons.append(_unbacked(inputs.gate, alpha))
    if not ctx.served:
        reasons.append("the canary served no requests on any channel in the window")
    reasons += [r.reason for r in ctx.risks if r.verdict is RiskVerdict.INSUFFICIENT_EVIDENCE]
    if inputs.phase1 is None:
        reasons.append("no phase-1 summary")
    else:
        for check in ctx.policy.evidence.required_checks:
            status = inputs.phase1.checks.get(check)
            if status is None:
                reasons.append(f"required check {check} has no result")
            elif status is Status.INSUFFICIENT_EVIDENCE:
                reasons.append(f"required check {check}: insufficient evidence")
    if ctx.policy.evidence.require_phase2 and inputs.phase2 is None:
        reasons.append("phase 2 not measured, and the policy requires it")
    return bool(reasons), reasons or ["evidence complete: metrics, gate, every served channel's risk"]


def rule_continue(ctx: _Context) -> tuple[bool, list[str]]:
    risks = ctx.measured_risks()
    top = max(risks) if risks else None
    line = "nothing argues for rollback" + (f"; max risk {top:.4f}" if top is not None else "")
    return True, [line]


RULES: dict[str, Callable[[_Context], tuple[bool, list[str]]]] = {
    "canary_gate_breach": rule_canary_gate_breach,
    "critical_canary_finding": rule_critical_canary_finding,
    "bayesian_risk": rule_bayesian_risk,
    "phase2_evidence": rule_phase2_evidence,
    "insufficient_evidence": rule_insufficient_evidence,
    "continue": rule_continue,
}


def promotion(ctx: _Context) -> tuple[float | None, CanaryStage | None, CanaryStage | None, list[str]]:
    """``promote_to`` (percent or None), the current and next stage, and why."""
    weight, stages = ctx.inputs.canary_weight_percent, ctx.policy.canary
    if weight is None:
        return None, None, None, ["canary weight unknown: no promotion"]
    current, nxt = stages.current(weight), stages.next_after(weight)
    if nxt is None:
        return None, current, None, [f"canary at {weight:g} %: no further stage"]
    bound_stage = current or stages.stages[0]
    assert bound_stage.max_risk is not None  # every stage but the last has one (schema)
    risks = ctx.measured_risks()
    top = max(risks) if risks else None
    blockers: list[str] = []
    if top is None or top >= bound_stage.max_risk:
        shown = "no risk" if top is None else f"max risk {top:.4f}"
        blockers.append(
            f"{shown} not under the {bound_stage.percent:g} % stage's bound {bound_stage.max_risk:g}"
        )
    young = [c for c in ctx.served if c.canary.requests < bound_stage.min_requests]
    if young:
        blockers.append(
            f"fewer than the {bound_stage.percent:g} % stage's {bound_stage.min_requests} canary requests on "
            + ", ".join(f"{c.channel.value} ({c.canary.requests:.0f})" for c in young)
        )
    blocking = [f for f in ctx.canary_findings if f.severity in PROMOTION_BLOCKING]
    if blocking:
        blockers.append("canary findings stand: " + "; ".join(_finding_line(f) for f in blocking))
    if blockers:
        return None, current, nxt, [f"stay at {weight:g} %: " + "; ".join(blockers)]
    return (
        nxt.percent,
        current,
        nxt,
        [
            f"promote {weight:g} % -> {nxt.percent:g} %: max risk {top:.4f} < {bound_stage.max_risk:g}, "
            f"every served channel has >= {bound_stage.min_requests} canary requests"
        ],
    )


def decide(inputs: DecisionInputs, policy: DecisionPolicy) -> Decision:
    """The decision for one incident (rules and precedence in the module docstring). Pure: no I/O."""
    ctx = _Context(inputs, policy)
    trace = [
        RuleResult(rule=rule.id, outcome=rule.outcome, matched=matched, reasons=reasons)
        for rule in policy.precedence
        for matched, reasons in [RULES[rule.id](ctx)]
    ]
    fired = next(r for r in trace if r.matched)  # 'continue' always matches and is last (schema)
    promote_to: float | None = None
    stage = next_stage = None
    promo_notes: list[str] = []
    if fired.outcome is Outcome.CONTINUE:
        promote_to, stage, next_stage, promo_notes = promotion(ctx)
    elif inputs.canary_weight_percent is not None:
        stage = policy.canary.current(inputs.canary_weight_percent)
        next_stage = policy.canary.next_after(inputs.canary_weight_percent)
    others = [f"{r.rule}: {line}" for r in trace if r is not fired for line in r.reasons]
    reasons = fired.reasons + promo_notes + others
    sensitive = inputs.rollback_sensitive or policy.is_sensitive(inputs.rollback_method)
    changes = fired.outcome is Outcome.ROLLBACK or promote_to is not None
    needs_human = fired.outcome is Outcome.INSUFFICIENT_EVIDENCE or (changes and sensitive)
    if changes and sensitive:
        reasons.append(
            f"rollback method {inputs.rollback_method or '?'} of {inputs.target} is sensitive: "
            "a human approves"
        )
    if inputs.dry_run:
        reasons.append("dry run: the decision is recorded, no change is applied")
    gate_default = policy.human_gate_for(inputs.grade.value if inputs.grade else None)
    risks = ctx.measured_risks()
    summary = _summary(fired, inputs, promote_to, needs_human, gate_default, max(risks) if risks else None)
    return Decision(
        status=STATUS_OF[fired.outcome],
        summary=summary,
        outcome=fired.outcome,
        rule=fired.rule,
        rule_description=policy.rule(fired.rule).description,
        reasons=reasons,
        gate_breach=fired.rule == "canary_gate_breach",
        promote_to=promote_to,
        needs_human=needs_human,
        human_gate=gate_default,
        risks=ctx.risks,
        max_risk=max(risks) if risks else None,
        thresholds=ThresholdsUsed(
            risk=policy.risk,
            evidence=policy.evidence,
            precedence=[r.id for r in policy.precedence],
            gate_min_requests=inputs.gate.min_requests if inputs.gate else None,
            gate_sustained_s=inputs.gate.sustained_s if inputs.gate else None,
            stage=stage,
            next_stage=next_stage,
        ),
        trace=trace,
        inputs=inputs,
    )


def _summary(
    fired: RuleResult,
    inputs: DecisionInputs,
    promote_to: float | None,
    needs_human: bool,
    gate_default: HumanGateDefault,
    max_risk: float | None,
) -> str:
    head = f"{inputs.target}: {fired.outcome.value} ({fired.rule}"
    head += ", fast path)" if fired.rule == "canary_gate_breach" else ")"
    body = fired.reasons[0] if fired.reasons else ""
    if fired.outcome is Outcome.CONTINUE:
        body += f"; promote to {promote_to:g} %" if promote_to is not None else "; no promotion"
    elif max_risk is not None and fired.rule != "bayesian_risk":
        body += f"; max risk {max_risk:.4f}"
    if needs_human:
        grade = inputs.grade.value if inputs.grade else "ungraded"
        default = f"{gate_default.choice.value} after {gate_default.timeout_s:g} s"
        body += f"; needs a human (default {default}, {grade})"
    return f"{head}: {body}"


# --- from the stored results ----------------------------------------------------------------------


class _Lenient(BaseModel):
    """Reads the fields the decision needs from a stored result and ignores the rest."""

    model_config = ConfigDict(extra="ignore")


class _IncidentView(_Lenient):
    incident_id: str = Field(min_length=1)
    target: str = Field(min_length=1)
    dry_run: StrictBool = False
    grade: GradeId | None = None


class _WindowView(_Lenient):
    requests: float = Field(ge=0)
    errors: float = Field(ge=0)


class _ChannelView(_Lenient):
    version: str
    channel: Channel
    current: _WindowView
    reference: _WindowView
    slow_requests: float | None = Field(default=None, ge=0)
    reference_slow_requests: float | None = Field(default=None, ge=0)


class _MetricsView(_Lenient):
    status: Status
    summary: str = ""
    gate: CanaryGateResult
    channels: list[_ChannelView] = Field(default_factory=list)


class _FindingView(_Lenient):
    severity: Severity
    problem: str
    component: str
    version: str | None = None
    channel: str | None = None
    evidence: str = ""


class _SummaryView(_Lenient):
    status: Status
    checks: dict[str, Status]
    findings: list[_FindingView] = Field(default_factory=list)


def _read(model: type[_Lenient], data: object, name: str) -> Any:
    """Validate ``data`` as ``model``; a bad or missing field is a ValueError naming it."""
    if not isinstance(data, dict):
        raise ValueError(f"{name}: expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join([name, *(str(p) for p in first["loc"])])
        given = first.get("input")
        shown = "" if first["type"] == "missing" or isinstance(given, dict | list) else f" (got {given!r})"
        raise ValueError(f"{field}: {first['msg']}{shown}") from None


def _version_counts(window: _WindowView, slow: float | None) -> VersionCounts:
    return VersionCounts(requests=window.requests, errors=window.errors, slow_requests=slow)


def _channel_counts(views: list[_ChannelView]) -> list[ChannelCounts]:
    by = {(v.version, v.channel): v for v in views}
    out: list[ChannelCounts] = []
    zero = VersionCounts(requests=0.0, errors=0.0)
    for channel in Channel:
        stable, canary = by.get(("stable", channel)), by.get(("canary", channel))
        if stable is None and canary is None:
            continue
        out.append(
            ChannelCounts(
                channel=channel,
                canary=_version_counts(canary.current, canary.slow_requests) if canary else zero,
                stable=_version_counts(stable.current, stable.slow_requests) if stable else zero,
                stable_reference=(
                    _version_counts(stable.reference, stable.reference_slow_requests) if stable else zero
                ),
            )
        )
    return out


def inputs_from_results(
    incident: dict[str, Any],
    metrics_sla: dict[str, Any] | None,
    phase_summary: dict[str, Any] | None,
    phase2: dict[str, Any] | None = None,
    *,
    canary_weight_percent: float | None = None,
    target: Target | None = None,
) -> DecisionInputs:
    """The decision's inputs from stored results: ``incident`` (``Incident.summary()`` or
    ``incident.json``), the full ``metrics_sla`` result (``golden_window/metrics_sla.json``), the full
    phase-1 summary (``golden_window/summary.json``: the XCom brief keeps only 5 findings), and the
    phase-2 evidence (``{"drift": {channel: 0|1|2|null}, "consistency": {check: status}}``) or None.

    A result that is missing (None) is missing evidence, which the decision turns into
    ``insufficient_evidence``; a result that is present but malformed is a bug, and raises a
    ValueError naming the field. ``target`` supplies the rollback method and whether it is sensitive.
    """
    inc: _IncidentView = _read(_IncidentView, incident, "incident")
    metrics: _MetricsView | None = (
        _read(_MetricsView, metrics_sla, "metrics_sla") if metrics_sla is not None else None
    )
    summary: _SummaryView | None = (
        _read(_SummaryView, phase_summary, "phase_summary") if phase_summary is not None else None
    )
    p2: Phase2Evidence | None = None
    if phase2 is not None:
        if not isinstance(phase2, dict):
            raise ValueError(f"phase2: expected a JSON object, got {type(phase2).__name__}")
        try:
            p2 = Phase2Evidence.model_validate(phase2)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"phase2.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    if target is not None and target.name != inc.target:
        raise ValueError(f"target: {target.name!r} is not the incident's target {inc.target!r}")
    rollback = target.rollback if target is not None else None
    return DecisionInputs(
        incident_id=inc.incident_id,
        target=inc.target,
        grade=inc.grade,
        dry_run=inc.dry_run,
        canary_weight_percent=canary_weight_percent,
        rollback_method=rollback.method if rollback is not None else None,
        rollback_sensitive=bool(getattr(rollback, "sensitive", False)),
        metrics_status=metrics.status if metrics else None,
        metrics_summary=metrics.summary if metrics else "",
        gate=metrics.gate if metrics else None,
        channels=_channel_counts(metrics.channels) if metrics else [],
        phase1=Phase1Evidence(
            status=summary.status,
            checks=summary.checks,
            findings=[FindingBrief(**f.model_dump()) for f in summary.findings],
        )
        if summary
        else None,
        phase2=p2,
    )
