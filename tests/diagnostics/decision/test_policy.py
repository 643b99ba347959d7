"""Every precedence rule fires on a crafted input and records its reasons and numbers; missing data
never rolls back and never passes; stable-only findings do not roll the canary back; promotion only
under the stage's bound."""

from __future__ import annotations

import json

import pytest

from diagnostics.decision import (
    Decision,
    FindingBrief,
    Outcome,
    decide,
)
from diagnostics.golden_window.canary_gate import CanaryGateResult, GateVerdict
from diagnostics.incident.results import Status
from diagnostics.runbooks.decision import DecisionPolicy, HumanChoice
from diagnostics.runbooks.schemas import Channel, Severity
from tests.diagnostics.decision.builders import (
    CHANNELS,
    GATES,
    POLICY,
    counts,
    gate_result,
    healthy,
    phase1,
)


def finding(problem: str, version: str | None, severity: Severity = Severity.CRITICAL) -> FindingBrief:
    return FindingBrief(
        severity=severity,
        problem=problem,
        component="embedding",
        version=version,
        evidence=f"{version} clip-shapes (embedding): sha256 9bdaad55… ≠ pinned 1234abcd…",
    )


def with_policy(**changes: object) -> DecisionPolicy:
    """The repo policy with some sections replaced (dotted: 'human_gate.sensitive_rollback_methods')."""
    data = POLICY.model_dump(mode="json")
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    return DecisionPolicy.model_validate(data)


def trace(d: Decision) -> dict[str, bool]:
    return {r.rule: r.matched for r in d.trace}


# --- the healthy baseline and the stored shape -----------------------------------------------------


def test_a_healthy_canary_continues_and_is_promoted() -> None:
    d = decide(healthy(), POLICY)
    assert (d.outcome, d.status, d.rule, d.check) == (Outcome.CONTINUE, Status.OK, "continue", "decision")
    assert d.promote_to == 15 and not d.gate_breach and not d.needs_human
    # a promotion no human must confirm acts on its own, but it is no rollback (no fast path)
    assert d.acts_without_human and not d.rolls_back_without_human
    assert d.max_risk is not None and d.max_risk < 0.1
    assert len(d.risks) == 4  # text and image, errors and latency
    assert d.reasons[0].startswith("nothing argues for rollback; max risk 0.0")
    assert any(r.startswith("promote 2 % -> 15 %: max risk 0.0") for r in d.reasons)
    # every rule is evaluated and recorded, in the file's order
    assert [r.rule for r in d.trace] == [r.id for r in POLICY.precedence]
    assert trace(d) == {
        "canary_gate_breach": False,
        "canary_watch_rejection": False,
        "critical_canary_finding": False,
        "bayesian_risk": False,
        "phase2_evidence": False,
        "insufficient_evidence": False,
        "continue": True,
    }
    assert (
        "phase2_evidence: phase 2: no drift at level 2 and no failed check where the canary is worse"
        in d.reasons
    )
    assert (
        "insufficient_evidence: evidence complete: metrics, gate, every served channel's risk, the checks "
        "'continue' requires" in d.reasons
    )
    # the thresholds used travel with it
    assert d.thresholds.risk == POLICY.risk and d.thresholds.gate_min_requests == 50
    assert d.thresholds.required_evidence == POLICY.required_evidence
    assert d.thresholds.stage is not None and d.thresholds.stage.percent == 2
    assert d.thresholds.next_stage is not None and d.thresholds.next_stage.percent == 15
    assert d.summary == (
        "testbed: continue (continue): nothing argues for rollback; "
        f"max risk {d.max_risk:.4f}; promote to 15 %"
    )


def test_the_decision_round_trips_as_a_stored_result() -> None:
    d = decide(healthy(grade="L4"), POLICY)
    stored = json.loads(json.dumps(d.model_dump(mode="json")))
    assert stored["check"] == "decision" and stored["status"] == "ok" and stored["outcome"] == "continue"
    assert Decision.model_validate(stored) == d
    brief = d.brief()
    assert brief["outcome"] == "continue" and brief["human_gate"]["choice"] == "rollback"
    assert len(json.dumps(brief)) < 4000  # XCom-sized


# --- (a) the fast path -------------------------------------------------------------------------------


def test_a_sustained_gate_breach_is_the_fast_path() -> None:
    d = decide(healthy(gate=gate_result(p99=1830, requests=412)), POLICY)
    assert d.rolls_back_without_human and d.acts_without_human
    assert (d.outcome, d.status, d.rule, d.gate_breach) == (
        Outcome.ROLLBACK,
        Status.FAILED,
        "canary_gate_breach",
        True,
    )
    assert d.reasons[0] == (
        "canary gate breach (fast path): text p99_latency_ms 1830 ms > 1200 ms (recent half 1830 ms), "
        "412 requests >= min_requests 50, sustained 300 s; stable 110 ms"
    )
    assert d.summary.startswith("testbed: rollback (canary_gate_breach, fast path): canary gate breach")
    assert not d.needs_human  # gateway_weight is not sensitive in the repo policy


def test_a_5xx_breach_must_be_significant_to_take_the_fast_path() -> None:
    # 2 of 300 is 0.67 % > 0.5 %, but a canary at the limit shows that 44 % of the time
    from diagnostics.golden_window.canary_gate import combine_gates, evaluate_channel_gate
    from tests.diagnostics.decision.builders import window

    def gate_with(errors_5xx: float, requests: float) -> CanaryGateResult:
        trailing = window(requests, errors=errors_5xx).model_copy(update={"errors_5xx": errors_5xx})
        recent = window(requests / 2, errors=errors_5xx / 2).model_copy(update={"errors_5xx": errors_5xx / 2})
        return combine_gates(GATES, [evaluate_channel_gate(GATES, Channel.TEXT, trailing, recent)])

    weak = gate_with(2, 300)
    assert weak.verdict is GateVerdict.BREACH
    d = decide(healthy(gate=weak), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE and not d.gate_breach and d.needs_human
    assert not d.acts_without_human
    assert "P(noise at the limit) 0.443" in " ".join(d.reasons)
    strong = decide(healthy(gate=gate_with(30, 300)), POLICY)  # 10 %: no doubt
    assert strong.rule == "canary_gate_breach" and strong.gate_breach and strong.rolls_back_without_human
    assert "P(noise at the limit) " in strong.reasons[0] and "< 0.01" in strong.reasons[0]


def test_a_breach_of_a_canary_younger_than_the_window_is_not_sustained() -> None:
    # every request of the 300 s window is in its recent half: the older half had no traffic
    from diagnostics.golden_window.canary_gate import combine_gates, evaluate_channel_gate
    from tests.diagnostics.decision.builders import window

    young = combine_gates(
        GATES, [evaluate_channel_gate(GATES, Channel.TEXT, window(400, p99=2000), window(400, p99=2000))]
    )
    d = decide(healthy(gate=young), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE and not trace(d)["canary_gate_breach"]
    assert any("text p99_latency_ms: 0 + 400 requests" in r for r in d.reasons)


# --- (b) findings ------------------------------------------------------------------------------------


def test_a_critical_canary_finding_rolls_back() -> None:
    d = decide(healthy(phase1=phase1(finding("model_not_loaded", "canary"))), POLICY)
    assert (d.outcome, d.rule, d.gate_breach) == (Outcome.ROLLBACK, "critical_canary_finding", False)
    # not a gate breach, yet it rolls back without a human: the fast path takes it too
    assert d.rolls_back_without_human
    assert d.reasons[0] == (
        "critical canary finding: critical model_not_loaded on embedding (canary): "
        "canary clip-shapes (embedding): sha256 9bdaad55… ≠ pinned 1234abcd…"
    )


def test_a_stable_only_finding_does_not_roll_the_canary_back() -> None:
    d = decide(healthy(phase1=phase1(finding("service_unreachable", "stable"))), POLICY)
    assert d.outcome is Outcome.CONTINUE and d.promote_to == 15
    assert any(
        r.startswith(
            "critical_canary_finding: finding on stable, not a reason to roll the canary back: "
            "critical service_unreachable"
        )
        for r in d.reasons
    )


def test_a_finding_stable_shares_does_not_roll_back_and_asks_a_human() -> None:
    both = phase1(finding("model_not_loaded", "canary"), finding("model_not_loaded", "stable"))
    d = decide(healthy(phase1=both, suspected_version="stable"), POLICY)
    assert (d.outcome, d.rule, d.needs_human, d.promote_to) == (
        Outcome.INSUFFICIENT_EVIDENCE,
        "insufficient_evidence",
        True,
        None,
    )
    assert d.reasons[0] == (
        "shared by both versions, not evidence against the canary: critical model_not_loaded on embedding: "
        "a shared cause (an upstream change, a shared dependency, a data shift), not the canary; "
        "the incident names stable as the suspect"
    )
    assert any("also on stable, a rollback would not help (a human decides)" in r for r in d.reasons)


def test_a_high_canary_finding_does_not_roll_back_but_blocks_promotion() -> None:
    d = decide(healthy(phase1=phase1(finding("http_5xx_burst", "canary", Severity.HIGH))), POLICY)
    assert d.outcome is Outcome.CONTINUE and d.promote_to is None


# --- (c) Bayesian risk -------------------------------------------------------------------------------


def test_a_canary_ten_times_worse_rolls_back_on_risk() -> None:
    bad = [counts(Channel.TEXT, canary=(1000, 100, 5)), counts(Channel.IMAGE)]
    d = decide(healthy(channels=bad), POLICY)
    assert (d.outcome, d.rule) == (Outcome.ROLLBACK, "bayesian_risk")
    assert d.reasons[0].startswith("text errors: risk P(p_canary > p_stable + 0.005) = 1.0000 > 0.95; ")
    assert "canary 100/1000 (10.00%)" in d.reasons[0] and "stable 600/60000 (1.00%)" in d.reasons[0]
    text_error = next(r for r in d.risks if r.channel is Channel.TEXT and r.kind.value == "error")
    assert text_error.verdict.value == "risky" and text_error.risk is not None and text_error.risk > 0.99


def test_slow_requests_roll_back_on_latency_risk() -> None:
    slow = [counts(Channel.TEXT), counts(Channel.IMAGE, canary=(3000, 30, 150))]  # 5 % vs 0.5 % SLA-slow
    d = decide(healthy(channels=slow), POLICY)
    assert (d.outcome, d.rule) == (Outcome.ROLLBACK, "bayesian_risk")
    assert d.reasons[0].startswith("image SLA-slow requests: risk P(p_canary > p_stable + 0.005) = ")


def test_slow_counts_the_buckets_only_bound_argue_each_way_with_the_conservative_end() -> None:
    # The SLA falls between two bucket bounds: the canary's image SLA-slow count is 15..150 of 3000.
    exact = [counts(Channel.TEXT), counts(Channel.IMAGE)]
    bounded = [counts(Channel.TEXT), counts(Channel.IMAGE)]
    bounded[1].canary.slow_at_least, bounded[1].canary.slow_at_most = 15.0, 150.0
    baseline = decide(healthy(channels=exact), POLICY)
    d = decide(healthy(channels=bounded), POLICY)
    # no rollback on the upper end (150 would be 10x stable) ...
    assert d.outcome is Outcome.CONTINUE and d.rule == "continue"
    image_latency = next(r for r in d.risks if r.channel is Channel.IMAGE and r.kind.value == "latency")
    assert image_latency.verdict.value != "risky"
    # ... and no promotion on the lower end: the promotion's risk is the upper end's
    assert baseline.promote_to is not None and d.promote_to is None
    assert any(
        "SLA-slow counts bounded by the histogram buckets" in r and "image (canary 15..150" in r
        for r in d.reasons
    )
    assert not any("bounded by the histogram buckets" in r for r in baseline.reasons)


# --- (e) insufficient evidence -----------------------------------------------------------------------


def test_metrics_missing_is_insufficient_and_asks_a_human() -> None:
    d = decide(
        healthy(metrics_status=Status.INSUFFICIENT_EVIDENCE, metrics_summary="testbed: no metrics: refused"),
        POLICY,
    )
    assert (d.outcome, d.status, d.rule) == (
        Outcome.INSUFFICIENT_EVIDENCE,
        Status.INSUFFICIENT_EVIDENCE,
        "insufficient_evidence",
    )
    assert d.needs_human and d.promote_to is None
    assert d.reasons[0] == "metrics_sla insufficient evidence: testbed: no metrics: refused"
    # the human gate for L3: hold, 900 s, escalate
    assert (d.human_gate.choice, d.human_gate.timeout_s, d.human_gate.escalate) == (
        HumanChoice.HOLD,
        900,
        True,
    )
    assert d.summary.endswith("needs a human (default hold after 900 s, L3)")


def test_gate_insufficient_is_insufficient() -> None:
    gate = CanaryGateResult(
        verdict=GateVerdict.INSUFFICIENT_EVIDENCE,
        sustained_s=300,
        min_requests=50,
        reason="text: 12 canary requests < min_requests 50 in 300 s",
    )
    d = decide(healthy(gate=gate), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert (
        d.reasons[0]
        == "canary gate insufficient evidence: text: 12 canary requests < min_requests 50 in 300 s"
    )


def test_too_few_canary_requests_on_a_served_channel_is_insufficient() -> None:
    few = [counts(Channel.TEXT), counts(Channel.IMAGE, canary=(30, 0, 0))]
    d = decide(healthy(channels=few), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert "image error: canary 30 requests < min_requests 50" in d.reasons


def test_no_latency_histogram_is_insufficient() -> None:
    d = decide(
        healthy(channels=[counts(Channel.TEXT, canary=(3000, 30, None)), counts(Channel.IMAGE)]), POLICY
    )
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert "text latency: canary SLA-slow requests not measured (no latency histogram)" in d.reasons


def test_a_required_check_without_evidence_is_insufficient() -> None:
    d = decide(healthy(phase1=phase1(model_integrity=Status.INSUFFICIENT_EVIDENCE)), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert d.reasons == [
        *d.reasons[:1],
        *d.reasons[1:],
    ] and "required check model_integrity: insufficient evidence" in (d.reasons)
    missing = decide(healthy(phase1=phase1(missing="health_snapshot")), POLICY)
    assert "required check health_snapshot has no result" in missing.reasons
    # log classification is not required: its missing evidence does not stop the canary
    logs = decide(healthy(phase1=phase1(log_classification=Status.INSUFFICIENT_EVIDENCE)), POLICY)
    assert logs.outcome is Outcome.CONTINUE and logs.promote_to == 15


def test_no_canary_traffic_at_all_is_insufficient() -> None:
    idle = [counts(ch, canary=(0, 0, 0)) for ch in CHANNELS]
    d = decide(healthy(channels=idle), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert "the canary served no requests on any channel in the window" in d.reasons


# --- (f) promotion -----------------------------------------------------------------------------------


def test_promotion_only_below_the_stages_bound() -> None:
    # 160 of 12 000 errors (1.33 %) against stable's 1 %: risk ≈ 0.072, under the 2 % stage's bound
    # 0.1 (promote) but not under the 15 % stage's 0.05 (stay)
    mild = [counts(ch, canary=(12000, 160, 60)) for ch in CHANNELS]
    at_2 = decide(healthy(canary_weight_percent=2, channels=mild), POLICY)
    at_15 = decide(healthy(canary_weight_percent=15, channels=mild), POLICY)
    assert at_2.max_risk == at_15.max_risk
    assert at_2.max_risk is not None and 0.05 < at_2.max_risk < 0.1
    assert (at_2.outcome, at_2.promote_to) == (Outcome.CONTINUE, 15)
    assert (at_15.outcome, at_15.promote_to) == (Outcome.CONTINUE, None)
    assert (
        f"stay at 15 %: max risk {at_15.max_risk:.4f} not under the 15 % stage's bound 0.05" in at_15.reasons
    )
    clean = [counts(ch, canary=(12000, 120, 60)) for ch in CHANNELS]
    assert decide(healthy(canary_weight_percent=15, channels=clean), POLICY).promote_to == 100


def test_promotion_needs_the_stages_requests() -> None:
    young = [counts(ch, canary=(1500, 15, 7)) for ch in CHANNELS]  # 1500 < the 2 % stage's 2000
    d = decide(healthy(channels=young), POLICY)
    assert d.outcome is Outcome.CONTINUE and d.promote_to is None
    assert any(
        "fewer than the 2 % stage's 2000 canary requests on text (1500), image (1500)" in r for r in d.reasons
    )


def test_no_promotion_without_a_known_weight_or_beyond_100() -> None:
    assert decide(healthy(canary_weight_percent=None), POLICY).promote_to is None
    full = decide(healthy(canary_weight_percent=100), POLICY)
    assert full.promote_to is None and "canary at 100 %: no further stage" in full.reasons
    between = decide(healthy(canary_weight_percent=5), POLICY)  # between stages: at 2 %'s bound, to 15 %
    assert between.promote_to == 15


# --- the policy is data -------------------------------------------------------------------------------


def test_the_order_of_the_rules_is_the_files() -> None:
    # insufficient evidence before the gate: a breach on text with too few requests on image asks a human
    reordered = [
        r for r in POLICY.model_dump(mode="json")["precedence"] if r["id"] != "insufficient_evidence"
    ]
    reordered.insert(
        0, next(r.model_dump(mode="json") for r in POLICY.precedence if r.id == "insufficient_evidence")
    )
    policy = with_policy(precedence=reordered)
    inputs = healthy(
        gate=gate_result(p99=1830, requests=412),
        channels=[counts(Channel.TEXT), counts(Channel.IMAGE, canary=(30, 0, 0))],
    )
    assert decide(inputs, POLICY).rule == "canary_gate_breach"
    assert decide(inputs, policy).rule == "insufficient_evidence"


def test_a_sensitive_method_needs_a_human_even_for_an_automatic_rollback() -> None:
    sensitive = with_policy(**{"human_gate.sensitive_rollback_methods": ["gateway_weight"]})
    bad = healthy(gate=gate_result(p99=1830, requests=412))
    assert not decide(bad, POLICY).needs_human
    d = decide(bad, sensitive)
    assert d.outcome is Outcome.ROLLBACK and d.needs_human
    assert d.reasons[-1] == "rollback method gateway_weight of testbed is sensitive: a human approves"
    # targets.yaml can mark one target sensitive, and a promotion is a change too
    assert decide(healthy(rollback_sensitive=True), POLICY).needs_human
    # no change, no human: a healthy canary that stays where it is
    assert not decide(healthy(rollback_sensitive=True, canary_weight_percent=None), POLICY).needs_human


def test_the_human_gate_default_per_grade() -> None:
    assert POLICY.human_gate_for("L4").choice is HumanChoice.ROLLBACK
    assert POLICY.human_gate_for("L4").timeout_s == 300
    for grade in ("L1", "L2", "L3"):
        gate = POLICY.human_gate_for(grade)
        assert gate.choice is HumanChoice.HOLD and gate.escalate
    assert POLICY.human_gate_for(None).choice is HumanChoice.HOLD
    with pytest.raises(ValueError, match="grade: 'L9' is not one of L1-L4"):
        POLICY.human_gate_for("L9")
    d = decide(healthy(grade=None, metrics_status=Status.INSUFFICIENT_EVIDENCE), POLICY)
    assert d.summary.endswith("needs a human (default hold after 1800 s, ungraded)")


def test_a_dry_run_decides_the_same_and_says_so() -> None:
    wet, dry = decide(healthy(), POLICY), decide(healthy(dry_run=True), POLICY)
    assert (dry.outcome, dry.promote_to) == (wet.outcome, wet.promote_to)
    assert dry.reasons[-1] == "dry run: the decision is recorded, no change is applied"


def test_a_stored_decision_reads_back_with_its_derived_rule() -> None:
    """decision.json carries acts_without_human for JSON readers; read back, the model derives it again."""
    d = decide(healthy(), POLICY)
    stored = d.model_dump(mode="json")
    assert stored["acts_without_human"] is True and "fast_path" not in stored
    again = Decision.model_validate(stored)
    assert again == d and again.acts_without_human


def test_a_decision_stored_before_gate_breach_was_named_still_reads() -> None:
    stored = decide(healthy(), POLICY).model_dump(mode="json")
    stored.pop("gate_breach")
    stored["fast_path"] = True
    assert Decision.model_validate(stored).gate_breach is True
