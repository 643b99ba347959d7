"""Properties over every combination of missing, stale, partial and crashed inputs (hypothesis): no
rollback and no promotion without the evidence the rule needs; missing data never passes; a
degradation both versions share never rolls the canary back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics.decision import ChannelCounts, DecisionInputs, FindingBrief, Outcome, Phase2Evidence, decide
from diagnostics.decision.model import CheckEvidence, DriftLevel
from diagnostics.golden_window.canary_gate import (
    CanaryGateResult,
    GateVerdict,
    combine_gates,
    evaluate_channel_gate,
)
from diagnostics.incident.results import Status
from diagnostics.runbooks.schemas import Channel, Severity
from tests.diagnostics.decision.builders import (
    CHANNELS,
    END,
    GATES,
    PHASE2_CHECKS,
    POLICY,
    counts,
    failing,
    gate_result,
    healthy,
    phase1,
    phase2,
    window,
)

_counts = st.floats(min_value=0, max_value=1e5, allow_nan=False)
CONTINUE_NEEDS = POLICY.required_evidence.continue_.phase2
PROMOTE_NEEDS = POLICY.required_evidence.promote
# Evidence 'continue' needs, each missing in one way: metrics, gate, counts, phase 1, phase 2.
GAPS = (
    "no_metrics",
    "metrics_insufficient",
    "gate_missing",
    "gate_insufficient",
    "gate_stale",
    "few_canary",
    "no_histogram",
    "idle",
    "phase1_missing",
    "phase1_check_missing",
    "phase1_check_insufficient",
    "phase2_missing",
    "phase2_stale",
    "phase2_absent",
    "phase2_crashed",
    "phase2_insufficient",
)
# Degradations that are not the canary's alone (shared), or not shown to be (stable unmeasured).
SHARED = ("shared_drift", "shared_check", "shared_finding", "shared_gate", "unshown_check", "unshown_drift")
# A kind that takes away what another breaks: only its own reason is then expected.
HIDES: dict[str, set[str]] = {
    "no_metrics": {"metrics_insufficient", "gate_missing", "gate_insufficient", "gate_stale", "few_canary",
                   "no_histogram", "idle", "shared_gate"},
    "gate_missing": {"gate_insufficient", "gate_stale", "shared_gate"},
    "gate_insufficient": {"gate_stale", "shared_gate"},
    "shared_gate": {"gate_stale"},
    "unshown_drift": {"shared_drift"},
    "idle": {"few_canary", "no_histogram"},
    "phase1_missing": {"phase1_check_missing", "phase1_check_insufficient", "shared_finding"},
    "phase2_missing": {"phase2_stale", "phase2_absent", "phase2_crashed", "phase2_insufficient",
                       "shared_drift", "shared_check", "unshown_check", "unshown_drift"},
}  # fmt: skip
# The kinds applied last win over those they hide.
ORDER = [k for k in (*GAPS, *SHARED) if k not in HIDES] + [
    "unshown_drift",
    "shared_gate",
    "gate_insufficient",
    "gate_missing",
    "idle",
    "no_metrics",
    "phase1_missing",
    "phase2_missing",
]


def brief(problem: str, version: str) -> FindingBrief:
    return FindingBrief(severity=Severity.CRITICAL, problem=problem, component="embedding", version=version)


def _canary_no_worse(draw: st.DrawFn) -> list[ChannelCounts]:
    """Channels where the canary fails at most as often as stable: nothing argues for a rollback."""
    channels = []
    for ch in draw(st.lists(st.sampled_from(list(Channel)), min_size=1, max_size=4, unique=True)):
        n_s = draw(st.floats(min_value=50, max_value=1e5))
        rate = draw(st.floats(min_value=0, max_value=0.2))
        slow_rate = draw(st.floats(min_value=0, max_value=0.2))
        n_c = draw(st.floats(min_value=50, max_value=1e4))
        c_rate = draw(st.floats(min_value=0, max_value=1)) * rate
        c_slow = draw(st.floats(min_value=0, max_value=1)) * slow_rate
        channels.append(
            counts(
                ch,
                canary=(n_c, n_c * c_rate, n_c * c_slow),
                stable=(n_s, n_s * rate, n_s * slow_rate),
                reference=(draw(_counts), 0, 0),
            )
        )
    return channels


def _shared_gate() -> CanaryGateResult:
    """A backed p99 breach on text and image that stable shows too (1900 ms; the canary 1830 ms)."""
    checks = [
        evaluate_channel_gate(
            GATES,
            ch,
            window(412, p99=1830, ch=ch),
            window(206, p99=1830, ch=ch),
            window(8000, p99=1900, version="stable", ch=ch),
        )
        for ch in CHANNELS
    ]
    return combine_gates(GATES, checks)


def _stale(gate: CanaryGateResult) -> CanaryGateResult:
    channels = [
        c.model_copy(update={"gates": [g.model_copy(update={"recent_requests": 0.0}) for g in c.gates]})
        for c in gate.channels
    ]
    return gate.model_copy(update={"channels": channels})


def _canary(o: dict[str, Any], kind: str, draw: st.DrawFn) -> str:
    """Break the canary's counts: too few, no latency histogram, or no traffic at all."""
    if kind == "idle":
        zero = [
            c.model_copy(update={"canary": c.canary.model_copy(update={"requests": 0})})
            for c in o["channels"]
        ]
        o["channels"] = zero
        return "the canary served no requests on any channel"
    first, rest = o["channels"][0], o["channels"][1:]
    few = {"requests": draw(st.floats(min_value=0.5, max_value=49.9))}
    change: dict[str, Any] = few if kind == "few_canary" else {"slow_requests": None}
    o["channels"] = [first.model_copy(update={"canary": first.canary.model_copy(update=change)}), *rest]
    return "< min_requests 50" if kind == "few_canary" else "not measured (no latency histogram)"


def _phase2_check(o: dict[str, Any], kind: str, name: str, draw: st.DrawFn) -> str:
    """Replace one phase-2 check: absent, crashed, insufficient, failed on both, or stable unmeasured."""
    p2: Phase2Evidence = o["phase2"]
    evidence = {
        "phase2_absent": None,
        "phase2_crashed": CheckEvidence(canary=Status.INSUFFICIENT_EVIDENCE, crashed=True, measure="boom"),
        "phase2_insufficient": CheckEvidence(canary=Status.INSUFFICIENT_EVIDENCE, stable=Status.OK),
        "shared_check": failing(Status.FAILED, False),
        "unshown_check": failing(draw(st.sampled_from([None, Status.INSUFFICIENT_EVIDENCE]))),
    }[kind]
    checks = {k: v for k, v in p2.checks.items() if k != name} | ({name: evidence} if evidence else {})
    consistency = {k: ev.canary for k, ev in checks.items() if k != "drift" and ev.canary is not None}
    o["phase2"] = p2.model_copy(update={"checks": checks, "consistency": consistency})
    return {
        "phase2_absent": f"required phase-2 check {name} has no result",
        "phase2_crashed": f"required phase-2 check {name} crashed",
        "phase2_insufficient": f"required phase-2 check {name}: insufficient evidence on the canary",
        "shared_check": f"{name} failed on both versions, the canary no worse",
        "unshown_check": f"{name} failed on the canary, stable",
    }[kind]


def _apply(kind: str, o: dict[str, Any], draw: st.DrawFn, names: list[str]) -> str:
    """Break one piece of evidence in ``o`` (the inputs' overrides); the reason the decision must give."""
    if kind == "no_metrics":
        o.update(metrics_status=None, gate=None, channels=[])
        return "no metrics_sla result"
    if kind == "metrics_insufficient":
        o["metrics_status"] = Status.INSUFFICIENT_EVIDENCE
        return "metrics_sla insufficient evidence"
    if kind == "gate_missing":
        o["gate"] = None
        return "no canary gate result"
    if kind == "gate_insufficient":
        o["gate"] = CanaryGateResult(
            verdict=GateVerdict.INSUFFICIENT_EVIDENCE, sustained_s=300, min_requests=50
        )
        return "canary gate insufficient evidence"
    if kind == "gate_stale":
        o["gate"] = _stale(o["gate"])
        return "the evidence is stale"
    if kind == "shared_gate":
        o["gate"] = _shared_gate()
        return "p99_latency_ms canary 1830 ms, stable 1900 ms > limit 1200 ms"
    if kind in ("few_canary", "no_histogram", "idle"):
        return _canary(o, kind, draw)
    if kind == "phase1_missing":
        o["phase1"] = None
        return "no phase-1 summary"
    if kind in ("phase1_check_missing", "phase1_check_insufficient"):
        checks = dict(o["phase1"].checks)
        check = draw(st.sampled_from(sorted(set(POLICY.evidence.required_checks) & set(checks))))
        if kind == "phase1_check_missing":
            del checks[check]
        else:
            checks[check] = Status.INSUFFICIENT_EVIDENCE
        o["phase1"] = o["phase1"].model_copy(update={"checks": checks})
        missing = kind == "phase1_check_missing"
        return f"required check {check} has no result" if missing else f"required check {check}: insufficient"
    if kind == "phase2_missing":
        o["phase2"] = None
        return "phase 2 not measured: 'continue' needs evidence from"
    if kind == "phase2_stale":
        early = END - timedelta(minutes=draw(st.integers(1, 600)))
        o["phase2"] = o["phase2"].model_copy(update={"measured_at": early})
        return "phase 2 evidence is stale"
    if kind == "shared_finding":
        both = [brief("model_not_loaded", v) for v in ("canary", "stable")]
        o["phase1"] = o["phase1"].model_copy(update={"findings": both})
        return "shared by both versions, not evidence against the canary: critical model_not_loaded"
    if kind in ("shared_drift", "unshown_drift"):
        stable = 2 if kind == "shared_drift" else None
        levels = {"drift": {Channel.IMAGE: 2}, "stable_drift": {Channel.IMAGE: stable}}
        o["phase2"] = o["phase2"].model_copy(update=levels)
        return "drift level 2 on image on both versions" if stable else "the canary is not shown worse"
    # a distinct check for each: a required one for a gap, any other for a failure
    gap = kind.startswith("phase2_")
    name = next(n for n in reversed(names) if not gap or n in CONTINUE_NEEDS)
    names.remove(name)
    return _phase2_check(o, kind, name, draw)


@st.composite
def broken_inputs(draw: st.DrawFn, gaps: int = 1, shared: int = 0) -> tuple[DecisionInputs, dict[str, str]]:
    """A canary no worse than stable, with at least ``gaps`` kinds of missing evidence and ``shared``
    shared (or unshown) degradations, in any combination; and the reason each must be named by."""
    kinds = draw(st.sets(st.sampled_from(GAPS), min_size=gaps))
    kinds |= draw(st.sets(st.sampled_from(SHARED), min_size=shared))
    o: dict[str, Any] = {
        "channels": _canary_no_worse(draw),
        "grade": draw(st.sampled_from([None, "L1", "L2", "L3", "L4"])),
        "suspected_version": draw(st.sampled_from([None, "stable", "canary"])),
        "phase2": phase2(),
        "gate": gate_result(),
        "phase1": phase1(),
    }
    # the phase-2 checks to break (drift's failures come through its levels)
    names = list(draw(st.permutations([c for c in PHASE2_CHECKS if c != "drift"])))
    expected = {k: _apply(k, o, draw, names) for k in ORDER if k in kinds}
    hidden = set().union(*(HIDES.get(k, set()) for k in kinds))
    return healthy(**o), {k: why for k, why in expected.items() if k not in hidden}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_inputs(gaps=1))
def test_any_gap_in_the_required_evidence_is_insufficient_never_a_rollback_nor_a_promotion(
    case: tuple[DecisionInputs, dict[str, str]],
) -> None:
    inputs, expected = case
    d = decide(inputs, POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE, d.summary
    assert d.status is Status.INSUFFICIENT_EVIDENCE and d.needs_human and d.promote_to is None
    for kind, why in expected.items():  # every gap is named, with what is missing
        assert any(why in r for r in d.reasons), (kind, why, d.reasons)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_inputs(gaps=0, shared=1))
def test_a_shared_or_unshown_degradation_asks_a_human_and_never_rolls_back(
    case: tuple[DecisionInputs, dict[str, str]],
) -> None:
    inputs, expected = case
    d = decide(inputs, POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE, d.summary
    assert d.needs_human and d.promote_to is None and not d.acts_without_human
    for kind, why in expected.items():
        assert any(why in r for r in d.reasons), (kind, why, d.reasons)
    if inputs.suspected_version == "stable" and any(k.startswith("shared") for k in expected):
        assert any(r.endswith("the incident names stable as the suspect") for r in d.reasons)


# --- any evidence at all: a rollback or a promotion stands on what its rule needs ----------------------

_STATUS = st.sampled_from([None, *Status])
_LEVEL: st.SearchStrategy[DriftLevel | None] = st.sampled_from([None, 0, 1, 2])


def _any_check(draw: st.DrawFn) -> CheckEvidence | None:
    """One phase-2 check in any state: absent, crashed, any status on either version, any comparison."""
    if draw(st.integers(0, 5)) == 0:
        return None
    if draw(st.integers(0, 9)) == 0:
        return CheckEvidence(canary=Status.INSUFFICIENT_EVIDENCE, crashed=True, measure="crashed")
    return CheckEvidence(
        canary=draw(_STATUS), stable=draw(_STATUS), canary_worse=draw(st.sampled_from([None, True, False]))
    )


@st.composite
def any_phase2(draw: st.DrawFn) -> Phase2Evidence | None:
    """Phase 2 in any state: a healthy one with a few checks and drift levels changed, or any checks
    and levels at all; absent; measured before or after phase 1."""
    if draw(st.integers(0, 9)) == 0:
        return None
    healthy_p2 = phase2()
    if draw(st.integers(0, 3)):
        checks = dict(healthy_p2.checks)
        for name in draw(st.lists(st.sampled_from(PHASE2_CHECKS), max_size=2, unique=True)):
            checks[name] = _any_check(draw)  # type: ignore[assignment]
        checks = {n: ev for n, ev in checks.items() if ev is not None}
    else:
        checks = {n: ev for n in PHASE2_CHECKS if (ev := _any_check(draw)) is not None}
    drift, stable_drift = dict(healthy_p2.drift), dict(healthy_p2.stable_drift)
    for ch in draw(st.lists(st.sampled_from(list(Channel)), max_size=2, unique=True)):
        drift[ch] = draw(_LEVEL)
        if draw(st.booleans()):
            stable_drift[ch] = draw(_LEVEL)
        else:
            stable_drift.pop(ch, None)
    return Phase2Evidence(
        drift=drift,
        stable_drift=stable_drift,
        consistency={n: ev.canary for n, ev in checks.items() if n != "drift" and ev.canary},
        checks=checks,
        measured_at=END + timedelta(minutes=draw(st.sampled_from([60, 60, 60, 0, -30]))),
    )


@st.composite
def any_inputs(draw: st.DrawFn) -> DecisionInputs:
    """Any counts (the canary may be worse), any gaps, any shared degradation, any phase 2."""
    inputs = (
        draw(broken_inputs(gaps=0))[0] if draw(st.booleans()) else healthy(channels=_canary_no_worse(draw))
    )
    channels = [
        counts(
            ch,
            canary=(draw(_counts), draw(_counts), draw(st.one_of(st.none(), _counts))),
            stable=(draw(_counts), draw(_counts), draw(st.one_of(st.none(), _counts))),
        )
        for ch in draw(st.lists(st.sampled_from(list(Channel)), max_size=4, unique=True))
    ]
    update: dict[str, Any] = {"phase2": draw(any_phase2())}
    if inputs.phase1 is not None and draw(st.integers(0, 3)) == 0:
        versions = draw(st.sampled_from([("canary",), ("stable",), ("canary", "stable")]))
        findings = [brief(draw(st.sampled_from(["model_not_loaded", "cuda_oom"])), v) for v in versions]
        update["phase1"] = inputs.phase1.model_copy(update={"findings": findings})
    if draw(st.integers(0, 2)) == 0:
        update["channels"] = channels
    return inputs.model_copy(update=update)


def _canary_worse_in_phase2(p2: Phase2Evidence, level: int) -> bool:
    for ch, d in p2.drift.items():
        s = p2.stable_drift.get(ch)
        if d is not None and d >= level and s is not None and d > s:
            return True
    for name in set(p2.checks) | set(p2.consistency):
        ev = p2.check(name)
        if name == "drift" or ev is None or ev.canary is not Status.FAILED:
            continue
        if ev.stable in (Status.OK, Status.DEGRADED) or (ev.stable is Status.FAILED and ev.canary_worse):
            return True
    return False


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_inputs())
def test_a_rollback_or_a_promotion_stands_on_the_evidence_its_rule_needs(inputs: DecisionInputs) -> None:
    d = decide(inputs, POLICY)
    if d.rule == "phase2_evidence":
        assert inputs.phase2 is not None
        assert _canary_worse_in_phase2(inputs.phase2, POLICY.evidence.drift_rollback_level)
    if d.rule == "critical_canary_finding":
        assert inputs.phase1 is not None
        on_stable = {(f.problem, f.component) for f in inputs.phase1.findings if f.version == "stable"}
        assert any(
            f.version == "canary" and (f.problem, f.component) not in on_stable
            for f in inputs.phase1.findings
        )
    if d.outcome is not Outcome.CONTINUE:
        assert d.promote_to is None
        return
    # a continue: every check 'continue' requires gave a verdict, from phase 2 after phase 1
    p2 = inputs.phase2
    assert p2 is not None and p2.measured_at is not None and p2.measured_at >= END
    for name in CONTINUE_NEEDS:
        ev = p2.check(name)
        assert ev is not None and not ev.crashed
        assert ev.canary not in (None, Status.INSUFFICIENT_EVIDENCE)
    assert inputs.metrics_status not in (None, Status.INSUFFICIENT_EVIDENCE)
    assert inputs.gate is not None and inputs.gate.verdict is GateVerdict.PASS
    assert all(r.verdict.value == "acceptable" for r in d.risks)
    if d.promote_to is None:
        return
    # a promotion: every check it requires is ok
    assert inputs.phase1 is not None
    assert all(inputs.phase1.checks.get(c) is Status.OK for c in PROMOTE_NEEDS.phase1)
    for name in PROMOTE_NEEDS.phase2:
        ev = p2.check(name)
        assert ev is not None and ev.canary is Status.OK and not ev.crashed


# --- one channel's evidence missing ---------------------------------------------------------------------


@st.composite
def partial_inputs(draw: st.DrawFn) -> DecisionInputs:
    """Any counts at all (the canary may be worse), with one channel's canary evidence missing."""
    channels = [
        counts(
            ch,
            canary=(draw(_counts), draw(_counts), draw(st.one_of(st.none(), _counts))),
            stable=(draw(_counts), draw(_counts), draw(st.one_of(st.none(), _counts))),
        )
        for ch in CHANNELS
    ]
    hole = channels[0].model_copy(
        update={
            "canary": channels[0].canary.model_copy(
                update={"requests": draw(st.floats(min_value=1, max_value=49)), "slow_requests": None}
            )
        }
    )
    return healthy(channels=[hole, channels[1]])


@settings(max_examples=200, deadline=None)
@given(partial_inputs())
def test_a_hole_in_the_evidence_never_continues(inputs: DecisionInputs) -> None:
    d = decide(inputs, POLICY)
    assert d.outcome is not Outcome.CONTINUE
    if d.outcome is Outcome.ROLLBACK:  # only on evidence that is there: another channel's risk
        assert d.rule == "bayesian_risk" and not any(
            r.channel is Channel.TEXT for r in d.risks if r.verdict.value == "risky"
        )
