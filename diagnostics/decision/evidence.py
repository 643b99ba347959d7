"""What the evidence says against the canary, what a shared cause explains, and what an outcome lacks.

Pure helpers of the rules in :mod:`diagnostics.decision.policy`:

- a rollback needs the canary **worse than stable** by the check's own measure: a canary-only
  finding, or a difference beyond the check's noise (:func:`read_phase2`, :func:`gate_shared`). A
  degradation both versions show (an upstream change, a shared dependency, a data shift) is named as
  a shared cause and asks a human; it never rolls back the version that is no worse;
- a failing canary whose stable side was not measured is **not shown worse**: a human decides too;
- ``continue`` needs a verdict from every check ``evidence.required_checks`` and
  ``required_evidence.continue`` list (:func:`missing_for_continue`), a promotion an ``ok`` from every
  check ``required_evidence.promote`` lists (:func:`not_ok_for_promotion`); absent, crashed,
  insufficient or stale evidence is missing evidence, never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diagnostics.decision.model import DRIFT_CHECK, DecisionInputs, Phase2Evidence
from diagnostics.decision.risk import BetaParams, prob_greater
from diagnostics.golden_window.canary_gate import CanaryGateResult, GateCheck, GateVerdict, fmt_gate_value
from diagnostics.incident.results import Status
from diagnostics.runbooks.decision import DecisionPolicy

SHARED_CAUSE = "a shared cause (an upstream change, a shared dependency, a data shift), not the canary"


def shared_line(what: str, inputs: DecisionInputs) -> str:
    """A shared degradation, as a reason: what both versions show, and who the incident suspects."""
    suspect = "; the incident names stable as the suspect" if inputs.suspected_version == "stable" else ""
    return f"shared by both versions, not evidence against the canary: {what}: {SHARED_CAUSE}{suspect}"


# --- phase 2 -------------------------------------------------------------------------------------


@dataclass
class Phase2Reading:
    """Phase 2's evidence, sorted by what it can argue for."""

    decisive: list[str] = field(default_factory=list)  # the canary worse than stable: rollback
    shared: list[str] = field(default_factory=list)  # both versions, the canary no worse: a human
    unshown: list[str] = field(default_factory=list)  # the canary fails, stable unknown: a human
    notes: list[str] = field(default_factory=list)


def _read_drift(p2: Phase2Evidence, level: int, out: Phase2Reading) -> None:
    for ch, d in p2.drift.items():
        if d is None:
            out.notes.append(f"phase 2: {ch.value} drift not measured")
            continue
        if d < level:
            continue
        s = p2.stable_drift.get(ch)
        if s is None:
            out.unshown.append(
                f"drift level {d} on canary {ch.value}, stable's {ch.value} drift not measured: "
                "the canary is not shown worse than stable"
            )
        elif d > s:
            out.decisive.append(f"drift level {d} >= {level} on canary {ch.value}, stable level {s}")
        else:
            out.shared.append(f"drift level {d} on {ch.value} on both versions (stable {s})")


def read_phase2(p2: Phase2Evidence, level: int) -> Phase2Reading:
    """Each canary failure of phase 2 as decisive, shared or not shown worse (module docstring)."""
    out = Phase2Reading()
    _read_drift(p2, level, out)
    for name in sorted((set(p2.checks) | set(p2.consistency)) - {DRIFT_CHECK}):
        ev = p2.check(name)
        assert ev is not None  # listed above
        measure = f" ({ev.measure})" if ev.measure else ""
        if ev.crashed:
            out.notes.append(f"phase 2: {name} crashed{measure}")
        elif ev.canary is Status.INSUFFICIENT_EVIDENCE:
            out.notes.append(f"phase 2: {name} insufficient evidence on the canary")
        if ev.canary is not Status.FAILED:
            continue
        if ev.stable in (Status.OK, Status.DEGRADED):
            out.decisive.append(f"{name} failed on the canary only (stable {ev.stable.value}){measure}")
        elif ev.stable is Status.FAILED and ev.canary_worse:
            out.decisive.append(
                f"{name} failed on both versions, the canary worse by the check's measure{measure}"
            )
        elif ev.stable is Status.FAILED:
            out.shared.append(f"{name} failed on both versions, the canary no worse{measure}")
        else:
            stable = ev.stable.value if ev.stable else "not measured"
            out.unshown.append(
                f"{name} failed on the canary, stable {stable}: the canary is not shown worse than stable"
            )
    return out


def phase2_stale(inputs: DecisionInputs) -> str | None:
    """Why phase 2's evidence does not describe this incident's canary (measured before phase 1
    looked: an earlier try's), or None."""
    p2 = inputs.phase2
    if p2 is None or p2.measured_at is None or inputs.analysed_at is None:
        return None
    if p2.measured_at >= inputs.analysed_at:
        return None
    return (
        f"phase 2 evidence is stale: summed up at {p2.measured_at.isoformat()}, before phase 1 looked "
        f"at {inputs.analysed_at.isoformat()}"
    )


def _phase2_gaps(p2: Phase2Evidence | None, names: list[str], need: str, ok_only: bool) -> list[str]:
    if not names:
        return []
    if p2 is None:
        return [f"phase 2 not measured: {need} needs evidence from " + ", ".join(names)]
    gaps: list[str] = []
    for name in names:
        ev = p2.check(name)
        if ev is None:
            gaps.append(f"required phase-2 check {name} has no result ({need})")
        elif ev.crashed:
            gaps.append(
                f"required phase-2 check {name} crashed ({need})" + (f": {ev.measure}" if ev.measure else "")
            )
        elif ev.canary is None or ev.canary is Status.INSUFFICIENT_EVIDENCE:
            gaps.append(f"required phase-2 check {name}: insufficient evidence on the canary ({need})")
        elif ok_only and ev.canary is not Status.OK:
            gaps.append(f"{name} {ev.canary.value} on the canary ({need} needs ok)")
    return gaps


def missing_for_continue(inputs: DecisionInputs, policy: DecisionPolicy) -> list[str]:
    """The evidence 'continue' needs and lacks: a verdict from every required check."""
    gaps: list[str] = []
    phase1 = [*policy.evidence.required_checks]
    phase1 += [c for c in policy.required_evidence.continue_.phase1 if c not in phase1]
    if inputs.phase1 is None:
        gaps.append("no phase-1 summary")
    else:
        for check in phase1:
            status = inputs.phase1.checks.get(check)
            if status is None:
                gaps.append(f"required check {check} has no result")
            elif status is Status.INSUFFICIENT_EVIDENCE:
                gaps.append(f"required check {check}: insufficient evidence")
    gaps += _phase2_gaps(inputs.phase2, policy.required_evidence.continue_.phase2, "'continue'", False)
    stale = phase2_stale(inputs)
    if stale and policy.required_evidence.continue_.phase2:
        gaps.append(stale)
    return gaps


def not_ok_for_promotion(inputs: DecisionInputs, policy: DecisionPolicy) -> list[str]:
    """The evidence a promotion needs ``ok`` and does not have."""
    needs = policy.required_evidence.promote
    gaps: list[str] = []
    for check in needs.phase1:
        status = inputs.phase1.checks.get(check) if inputs.phase1 else None
        if status is not Status.OK:
            gaps.append(f"{check} {status.value if status else 'absent'} (a promotion needs ok)")
    gaps += _phase2_gaps(inputs.phase2, needs.phase2, "a promotion", True)
    stale = phase2_stale(inputs)
    if stale and needs.phase2:
        gaps.append(stale)
    return gaps


# --- the canary gate -------------------------------------------------------------------------------


def gate_shared(g: GateCheck, stable_requests: float, alpha: float) -> str | None:
    """Why a canary gate breach is not the canary's alone (stable breaches the same limit, and for a
    rate the canary is not significantly above stable: ``P(p_canary > p_stable) <= 1 - alpha`` under
    uniform priors), or None: the canary is worse. A p99 has no counts to test: stable over the limit
    too makes it shared."""
    if g.stable_value is None or g.stable_value <= g.limit or g.value is None:
        return None
    what = (
        f"{g.channel.value} {g.gate} canary {fmt_gate_value(g.gate, g.value)}, stable "
        f"{fmt_gate_value(g.gate, g.stable_value)} > limit {fmt_gate_value(g.gate, g.limit)}"
    )
    if g.gate == "p99_latency_ms":
        return what
    k_c = min(g.value * g.requests, g.requests)
    k_s = min(g.stable_value * stable_requests, stable_requests)
    canary = BetaParams(alpha=1 + k_c, beta=1 + g.requests - k_c)
    stable = BetaParams(alpha=1 + k_s, beta=1 + stable_requests - k_s)
    p = prob_greater(canary, stable)
    if p > 1 - alpha:
        return None
    return f"{what} (P(canary's rate > stable's) {p:.3f} <= {1 - alpha:g})"


def stale_gate_channels(gate: CanaryGateResult | None) -> list[str]:
    """Channels whose gate passed on old data: canary requests over the trailing window, none in its
    recent half (the canary's traffic or its scrape stopped)."""
    if gate is None:
        return []
    stale = []
    for ch in gate.channels:
        passed = ch.verdict is GateVerdict.PASS and ch.requests > 0 and ch.gates
        if passed and max(g.recent_requests for g in ch.gates) <= 0:
            stale.append(
                f"canary gate {ch.channel.value}: {ch.requests:.0f} canary requests in the "
                f"{gate.sustained_s:g} s window, none in its recent half: the evidence is stale"
            )
    return stale
