"""The canary decision: ``rollback``, ``continue`` or ``insufficient_evidence``, from phase-1 (and, when
it exists, phase-2) evidence, under the policy in ``runbooks/decision.yaml``.

Every rule of the policy's ``precedence`` is evaluated and recorded with its reasons; the first that
matches decides (the order is the file's). The rules:

- ``canary_gate_breach``: the phase-1 canary gate is ``breach`` and a breaching gate stands on at
  least the gate's ``min_requests``, half of them in each half of the sustained window, and (for a
  rate) significantly above the limit (see :func:`backed_breaches`) -> rollback, on the **fast
  path** (``gate_breach=True``). A breach that is not so backed is insufficient evidence, never a pass;
  so is one stable shows too, unless the canary's rate is significantly above stable's;
- ``canary_watch_rejection``: the incident holds a firing ``CanaryWatchRejected`` alert whose
  annotations carry a rejection that is evidence against the canary: the canary watch's e-value at or
  over its bound ``1/alpha``, at least one canary event, the canary's rate above stable's (see
  :mod:`diagnostics.canary_watch.alert`) -> rollback, on the fast path like a gate breach
  (``gate_breach=True``: the watch is a canary gate, checked continuously). Phase 1's own gate reads
  ``for``-style windows and may see nothing yet seconds after the onset; the watch's evidence decides
  by itself. A malformed alert is ignored with its reason; none -> the rule does not apply;
- ``critical_canary_finding``: a phase-1 finding on the canary at a rollback severity (model not
  loaded, checksum mismatch, canary unreachable). A finding on stable alone never rolls the canary
  back (there is nothing to roll back to); one stable shares asks a human (a rollback would not help).
  The gate's own findings belong to the first rule;
- ``bayesian_risk``: ``P(p_canary > p_stable + margin) > risk_threshold`` on any channel, for errors
  or SLA-slow requests, with at least ``min_requests`` on both sides (see :mod:`.risk`) -> rollback;
- ``phase2_evidence``: drift at ``drift_rollback_level`` on a channel, or a failed phase-2 check, where
  the canary is worse than stable by the check's own measure: canary-only, or beyond the check's
  noise (see :mod:`.evidence`) -> rollback. A degradation both versions share names the shared cause
  and asks a human; a failing canary whose stable side is unmeasured is not shown worse;
- ``insufficient_evidence``: no, insufficient or stale metrics, the gate insufficient, a served
  channel whose risk has no verdict, no served channel at all, evidence ``continue`` requires absent,
  crashed, insufficient or stale (``evidence.required_checks``, ``required_evidence.continue``), or a
  shared degradation -> insufficient_evidence: a human decides. Missing data never rolls back and
  never passes;
- ``continue``: the catch-all. Promotion to the next stage (``promote_to``) only when every risk is
  under the current stage's ``max_risk``, every served channel has the stage's ``min_requests``, no
  canary finding at a promotion-blocking severity stands, and every check
  ``required_evidence.promote`` lists is ``ok`` on the canary.

``needs_human`` is true for ``insufficient_evidence``, and for a change (rollback or promotion) of a
target whose rollback method the policy lists as sensitive, or that targets.yaml marks sensitive.
The human gate's default and timeout for the incident's grade travel with the decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from scipy import special

from diagnostics.canary_watch.alert import ALERTNAME as WATCH_ALERT
from diagnostics.canary_watch.alert import read_rejection
from diagnostics.decision.evidence import (
    Phase2Reading,
    gate_shared,
    missing_for_continue,
    not_ok_for_promotion,
    read_phase2,
    shared_line,
    stale_gate_channels,
)
from diagnostics.decision.model import (
    ChannelCounts,
    Decision,
    DecisionInputs,
    FindingBrief,
    RuleResult,
    ThresholdsUsed,
)
from diagnostics.decision.risk import ChannelRisk, Counts, RiskKind, RiskVerdict, channel_risk
from diagnostics.golden_window.canary_gate import CanaryGateResult, GateCheck, GateVerdict
from diagnostics.incident.results import Status
from diagnostics.runbooks.decision import (
    CanaryStage,
    DecisionPolicy,
    HumanGateDefault,
    Outcome,
    RiskParameters,
)
from diagnostics.runbooks.schemas import Severity

STATUS_OF: dict[Outcome, Status] = {
    Outcome.ROLLBACK: Status.FAILED,
    Outcome.CONTINUE: Status.OK,
    Outcome.INSUFFICIENT_EVIDENCE: Status.INSUFFICIENT_EVIDENCE,
}
# The rules that roll back on the fast path's terms: a hard gate, seen by Prometheus or by the watch.
FAST_PATH_RULES = ("canary_gate_breach", "canary_watch_rejection")
# Findings that block a promotion (they did not roll back, but they are not a clean bill of health).
PROMOTION_BLOCKING = (Severity.CRITICAL, Severity.HIGH)


# --- the rules ------------------------------------------------------------------------------------


class _Context:
    """What the rules share: the inputs, the policy and the risks, computed once."""

    def __init__(self, inputs: DecisionInputs, policy: DecisionPolicy) -> None:
        self.inputs, self.policy = inputs, policy
        self.served = [c for c in inputs.channels if c.canary.requests > 0]
        # Where the buckets only bound the SLA-slow counts, rollback is argued with the canary's
        # lower and stable's upper bound, promotion with the other ends: neither on a guess.
        self.risks = [r for c in self.served for r in channel_risks(c, policy.risk, "rollback")]
        self.promotion_risks = [r for c in self.served for r in channel_risks(c, policy.risk, "promotion")]
        self.bounded = [
            f"{c.channel.value} (canary {c.canary.slow('least'):g}..{c.canary.slow('most'):g}, "
            f"stable {c.stable.slow('least'):g}..{c.stable.slow('most'):g})"
            for c in self.served
            if not (c.canary.slow_is_exact and c.stable.slow_is_exact and c.stable_reference.slow_is_exact)
            and c.canary.slow_requests is not None
            and c.stable.slow_requests is not None
        ]
        findings = inputs.phase1.findings if inputs.phase1 else []
        self.canary_findings = [f for f in findings if f.version == "canary"]
        self.stable_findings = [f for f in findings if f.version == "stable"]
        self.phase2: Phase2Reading | None = (
            read_phase2(inputs.phase2, policy.evidence.drift_rollback_level) if inputs.phase2 else None
        )
        # the gate's backed breaches, split: the canary's own, and those stable shows too
        self.breaches: list[GateCheck] = []
        self.shared_breaches: list[str] = []
        gate, alpha = inputs.gate, policy.evidence.gate_breach_alpha
        if gate is not None and gate.verdict is GateVerdict.BREACH:
            stable_n = {c.channel: c.stable_requests for c in gate.channels}
            for g in backed_breaches(gate, alpha):
                why = gate_shared(g, stable_n.get(g.channel, 0.0), alpha)
                if why:
                    self.shared_breaches.append(why)
                else:
                    self.breaches.append(g)

    def measured_risks(self) -> list[float]:
        """The risks a promotion or ``continue`` stands on (SLA-slow counts at their upper ends)."""
        return [r.risk for r in self.promotion_risks if r.risk is not None]

    def bounds_note(self) -> list[str]:
        if not self.bounded:
            return []
        return [
            "SLA-slow counts bounded by the histogram buckets (the SLA is not a bucket bound) on "
            + "; ".join(self.bounded)
            + ": rollback argued with the canary's lower and stable's upper bound, promotion the other way"
        ]


def channel_risks(
    counts: ChannelCounts, params: RiskParameters, side: Literal["rollback", "promotion"] = "rollback"
) -> list[ChannelRisk]:
    """The error and latency risks of one channel; ``side`` picks the conservative end of bounded
    SLA-slow counts (rollback: canary at least, stable at most; promotion: the reverse)."""
    c, s, ref = counts.canary, counts.stable, counts.stable_reference
    canary_end: Literal["least", "most"] = "least" if side == "rollback" else "most"
    stable_end: Literal["least", "most"] = "most" if side == "rollback" else "least"
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
            Counts(requests=c.requests, failures=c.slow(canary_end)),
            Counts(requests=s.requests, failures=s.slow(stable_end)),
            Counts(requests=ref.requests, failures=ref.slow(stable_end)),
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
    backed = ctx.breaches
    if not backed:
        shared = [f"canary gate breach stable shows too: {why}" for why in ctx.shared_breaches]
        return False, shared or [_unbacked(gate, alpha)]
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


def rule_canary_watch_rejection(ctx: _Context) -> tuple[bool, list[str]]:
    alerts = [a for a in ctx.inputs.gate_alerts if a.labels.get("alertname") == WATCH_ALERT]
    if not alerts:
        return False, ["no canary watch rejection among the incident's alerts"]
    decisive: list[str] = []
    ignored: list[str] = []
    for alert in alerts:
        read = read_rejection(alert.labels, alert.annotations)
        why = read if isinstance(read, str) else read.not_evidence()
        if why is None and not isinstance(read, str):
            decisive.append(read.reason())
        else:
            where = "/".join(alert.labels.get(k, "?") for k in ("target", "version", "channel"))
            ignored.append(f"{WATCH_ALERT} ({where}) ignored: {why}")
    return bool(decisive), decisive + ignored


def rule_critical_canary_finding(ctx: _Context) -> tuple[bool, list[str]]:
    severities = set(ctx.policy.evidence.canary_finding_severities)
    shared = {(f.problem, f.component) for f in ctx.stable_findings}
    decisive: list[str] = []
    notes: list[str] = []
    for f in ctx.canary_findings:
        if f.severity not in severities or f.problem == "canary_gate_breach":
            continue
        if (f.problem, f.component) in shared:
            notes.append(f"also on stable, a rollback would not help (a human decides): {_finding_line(f)}")
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
        return True, [r.reason for r in risky] + ctx.bounds_note()
    measured = [r for r in ctx.risks if r.risk is not None]
    if not measured:
        return False, ["no channel with enough requests for a risk"]
    top = max(measured, key=lambda r: r.risk or 0.0)
    return False, [
        f"max risk {top.risk:.4f} ({top.channel.value} {top.kind.value}) "
        f"≤ {ctx.policy.risk.risk_threshold:g}",
        *ctx.bounds_note(),
    ]


def rule_phase2_evidence(ctx: _Context) -> tuple[bool, list[str]]:
    reading = ctx.phase2
    if reading is None:
        return False, ["phase 2 not measured: drift and consistency unknown (not counted as a pass)"]
    notes = [*reading.notes]
    notes += [f"not a rollback: {shared_line(line, ctx.inputs)}" for line in reading.shared]
    notes += [f"not a rollback: {line}" for line in reading.unshown]
    if not reading.decisive:
        level = ctx.policy.evidence.drift_rollback_level
        notes.insert(0, f"phase 2: no drift at level {level} and no failed check where the canary is worse")
    return bool(reading.decisive), reading.decisive + notes


def shared_degradations(ctx: _Context) -> list[str]:
    """Every degradation both versions show: phase-1 critical findings, gate breaches, phase 2."""
    severities = set(ctx.policy.evidence.canary_finding_severities)
    on_stable = {(f.problem, f.component) for f in ctx.stable_findings}
    lines = [
        f"{f.severity.value} {f.problem} on {f.component}"
        for f in ctx.canary_findings
        if f.severity in severities
        and f.problem != "canary_gate_breach"
        and (f.problem, f.component) in on_stable
    ]
    lines += [f"canary gate breach {why}" for why in ctx.shared_breaches]
    lines += ctx.phase2.shared if ctx.phase2 else []
    return [shared_line(line, ctx.inputs) for line in lines]


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
    reasons += stale_gate_channels(inputs.gate)
    if not ctx.served:
        reasons.append("the canary served no requests on any channel in the window")
    reasons += [r.reason for r in ctx.risks if r.verdict is RiskVerdict.INSUFFICIENT_EVIDENCE]
    reasons += missing_for_continue(inputs, ctx.policy)
    reasons += shared_degradations(ctx)
    reasons += ctx.phase2.unshown if ctx.phase2 else []
    return bool(reasons), reasons or [
        "evidence complete: metrics, gate, every served channel's risk, the checks 'continue' requires"
    ]


def rule_continue(ctx: _Context) -> tuple[bool, list[str]]:
    risks = ctx.measured_risks()
    top = max(risks) if risks else None
    line = "nothing argues for rollback" + (f"; max risk {top:.4f}" if top is not None else "")
    return True, [line]


RULES: dict[str, Callable[[_Context], tuple[bool, list[str]]]] = {
    "canary_gate_breach": rule_canary_gate_breach,
    "canary_watch_rejection": rule_canary_watch_rejection,
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
    not_ok = not_ok_for_promotion(ctx.inputs, ctx.policy)
    if not_ok:
        blockers.append("the evidence a promotion requires is not ok: " + "; ".join(not_ok))
    if blockers:
        return None, current, nxt, [f"stay at {weight:g} %: " + "; ".join(blockers)]
    return (
        nxt.percent,
        current,
        nxt,
        [
            f"promote {weight:g} % -> {nxt.percent:g} %: max risk {top:.4f} < {bound_stage.max_risk:g}, "
            f"every served channel has >= {bound_stage.min_requests} canary requests, "
            "every check a promotion requires is ok",
            *ctx.bounds_note(),
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
        gate_breach=fired.rule in FAST_PATH_RULES,
        promote_to=promote_to,
        needs_human=needs_human,
        human_gate=gate_default,
        risks=ctx.risks,
        max_risk=max(risks) if risks else None,
        thresholds=ThresholdsUsed(
            risk=policy.risk,
            evidence=policy.evidence,
            required_evidence=policy.required_evidence,
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
    head += ", fast path)" if fired.rule in FAST_PATH_RULES else ")"
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
