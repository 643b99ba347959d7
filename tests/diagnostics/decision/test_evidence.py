"""Phase-2 evidence and the evidence each outcome requires: a rollback needs the canary worse than
stable by the check's own measure; a shared degradation asks a human; absent, crashed, insufficient or
stale evidence is never a 'continue' and never a promotion."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from diagnostics.decision import Decision, Outcome, Phase2Evidence, decide
from diagnostics.decision.model import CheckEvidence
from diagnostics.golden_window.canary_gate import CanaryGateResult, combine_gates, evaluate_channel_gate
from diagnostics.incident.results import Status
from diagnostics.runbooks import RunbookError, load_runbooks
from diagnostics.runbooks.decision import DecisionPolicy
from diagnostics.runbooks.schemas import Channel
from tests.diagnostics.decision.builders import (
    END,
    GATES,
    POLICY,
    failing,
    gate_result,
    healthy,
    phase1,
    phase2,
    window,
)


def trace(d: Decision) -> dict[str, bool]:
    return {r.rule: r.matched for r in d.trace}


def drifted(canary: dict[Channel, int | None], stable: dict[Channel, int | None]) -> Phase2Evidence:
    return phase2().model_copy(update={"drift": canary, "stable_drift": stable})


def test_level_2_drift_on_the_canary_alone_rolls_back() -> None:
    d = decide(healthy(phase2=drifted({Channel.IMAGE: 2, Channel.TEXT: 0}, {Channel.IMAGE: 0})), POLICY)
    assert (d.outcome, d.rule, d.needs_human) == (Outcome.ROLLBACK, "phase2_evidence", False)
    assert d.reasons[0] == "drift level 2 >= 2 on canary image, stable level 0"


def test_drift_both_versions_share_is_no_rollback_and_asks_a_human() -> None:
    # an upstream change or a data shift moves both versions: rolling back to stable would not help
    shared = drifted({Channel.IMAGE: 2, Channel.TEXT: 0}, {Channel.IMAGE: 2, Channel.TEXT: 0})
    d = decide(healthy(phase2=shared, suspected_version="stable"), POLICY)
    assert (d.outcome, d.rule, d.needs_human, d.promote_to) == (
        Outcome.INSUFFICIENT_EVIDENCE,
        "insufficient_evidence",
        True,
        None,
    )
    assert d.reasons[0] == (
        "shared by both versions, not evidence against the canary: drift level 2 on image on both versions "
        "(stable 2): a shared cause (an upstream change, a shared dependency, a data shift), not the canary; "
        "the incident names stable as the suspect"
    )
    assert not trace(d)["phase2_evidence"]
    # the canary above stable's level is its own, on top of what they share
    worse = drifted({Channel.IMAGE: 2}, {Channel.IMAGE: 1})
    assert decide(healthy(phase2=worse), POLICY).rule == "phase2_evidence"


def test_drift_whose_stable_side_was_not_measured_is_not_shown_worse() -> None:
    d = decide(healthy(phase2=drifted({Channel.IMAGE: 2}, {Channel.IMAGE: None})), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert (
        "drift level 2 on canary image, stable's image drift not measured: the canary is not shown worse "
        "than stable" in d.reasons
    )


def test_a_check_failed_on_the_canary_only_rolls_back() -> None:
    p2 = phase2(clip_consistency=failing(Status.OK, measure="margin canary 0.012, stable 0.934"))
    d = decide(healthy(phase2=p2), POLICY)
    assert (d.outcome, d.rule) == (Outcome.ROLLBACK, "phase2_evidence")
    assert d.reasons[0] == (
        "clip_consistency failed on the canary only (stable ok) (margin canary 0.012, stable 0.934)"
    )


def test_a_check_both_versions_fail_rolls_back_only_when_the_canary_is_worse_by_its_measure() -> None:
    shared = phase2(clip_consistency=failing(Status.FAILED, False, "margin canary 0.101, stable 0.098"))
    d = decide(healthy(phase2=shared), POLICY)
    assert (d.outcome, d.needs_human) == (Outcome.INSUFFICIENT_EVIDENCE, True)
    assert d.reasons[0] == (
        "shared by both versions, not evidence against the canary: clip_consistency failed on both versions, "
        "the canary no worse (margin canary 0.101, stable 0.098): a shared cause (an upstream change, "
        "a shared dependency, a data shift), not the canary"
    )
    worse = phase2(router_dispatch=failing(Status.FAILED, True, "misrouted: canary 30/40, stable 4/40"))
    d = decide(healthy(phase2=worse), POLICY)
    assert (d.outcome, d.rule) == (Outcome.ROLLBACK, "phase2_evidence")
    assert d.reasons[0] == (
        "router_dispatch failed on both versions, the canary worse by the check's measure "
        "(misrouted: canary 30/40, stable 4/40)"
    )


@pytest.mark.parametrize("stable", [None, Status.INSUFFICIENT_EVIDENCE])
def test_a_failed_canary_check_without_stable_is_not_shown_worse(stable: Status | None) -> None:
    d = decide(healthy(phase2=phase2(asr_check=failing(stable))), POLICY)
    assert (d.outcome, d.needs_human) == (Outcome.INSUFFICIENT_EVIDENCE, True)
    shown = stable.value if stable else "not measured"
    assert (
        d.reasons[0]
        == f"asr_check failed on the canary, stable {shown}: the canary is not shown worse than stable"
    )


def test_evidence_stored_before_stable_was_kept_never_rolls_back() -> None:
    # the canary's side only (evidence.json of an earlier version): nothing is shown worse
    legacy = Phase2Evidence(drift={Channel.IMAGE: 2}, consistency={"clip_consistency": Status.FAILED})
    d = decide(healthy(phase2=legacy), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE and not trace(d)["phase2_evidence"]
    assert (
        "clip_consistency failed on the canary, stable not measured: the canary is not shown worse "
        "than stable" in d.reasons
    )


def test_level_1_drift_and_unmeasured_channels_do_not_roll_back() -> None:
    p2 = drifted(
        {Channel.IMAGE: 1, Channel.TEXT: 0, Channel.AUDIO: None}, {Channel.IMAGE: 0, Channel.TEXT: 0}
    )
    d = decide(healthy(phase2=p2), POLICY)
    assert d.outcome is Outcome.CONTINUE
    assert "phase2_evidence: phase 2: audio drift not measured" in d.reasons


# --- what each outcome requires ------------------------------------------------------------------


def test_continue_needs_phase_2_and_every_check_the_runbook_requires() -> None:
    needs = POLICY.required_evidence.continue_.phase2
    assert needs == [
        "clip_consistency",
        "embedding_alignment",
        "alignment_quality",
        "router_dispatch",
        "drift",
    ]
    none = decide(healthy(phase2=None), POLICY)  # the fast path's decision, before phase 2
    assert (none.outcome, none.promote_to, none.needs_human) == (Outcome.INSUFFICIENT_EVIDENCE, None, True)
    assert "phase 2 not measured: 'continue' needs evidence from " + ", ".join(needs) in none.reasons
    absent = decide(healthy(phase2=phase2(router_dispatch=None)), POLICY)
    assert absent.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert "required phase-2 check router_dispatch has no result ('continue')" in absent.reasons
    crash = CheckEvidence(
        canary=Status.INSUFFICIENT_EVIDENCE, crashed=True, measure="check crashed: KeyError: 'x'"
    )
    crashed = decide(healthy(phase2=phase2(clip_consistency=crash)), POLICY)
    assert crashed.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert (
        "required phase-2 check clip_consistency crashed ('continue'): check crashed: KeyError: 'x'"
        in crashed.reasons
    )
    short = CheckEvidence(canary=Status.INSUFFICIENT_EVIDENCE, stable=Status.INSUFFICIENT_EVIDENCE)
    thin = decide(healthy(phase2=phase2(router_dispatch=short)), POLICY)
    assert thin.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert "required phase-2 check router_dispatch: insufficient evidence on the canary ('continue')" in (
        thin.reasons
    )
    # a check 'continue' does not need (asr_check) only holds the promotion back
    no_asr = decide(healthy(phase2=phase2(asr_check=short)), POLICY)
    assert (no_asr.outcome, no_asr.promote_to) == (Outcome.CONTINUE, None)
    assert any(
        "the evidence a promotion requires is not ok: required phase-2 check asr_check: insufficient "
        "evidence on the canary (a promotion)" in r
        for r in no_asr.reasons
    )


def test_stale_phase_2_evidence_is_missing_evidence() -> None:
    early = phase2().model_copy(update={"measured_at": END - timedelta(minutes=5)})
    d = decide(healthy(phase2=early), POLICY)
    assert (d.outcome, d.promote_to) == (Outcome.INSUFFICIENT_EVIDENCE, None)
    assert (
        "phase 2 evidence is stale: summed up at 2026-01-01T11:55:00+00:00, before phase 1 looked at "
        "2026-01-01T12:00:00+00:00" in d.reasons
    )


def test_a_gate_that_passed_on_old_data_is_stale() -> None:
    gate = gate_result()
    frozen = gate.model_copy(
        update={
            "channels": [
                c.model_copy(
                    update={"gates": [g.model_copy(update={"recent_requests": 0.0}) for g in c.gates]}
                )
                for c in gate.channels
            ]
        }
    )
    d = decide(healthy(gate=frozen), POLICY)
    assert (d.outcome, d.promote_to) == (Outcome.INSUFFICIENT_EVIDENCE, None)
    assert (
        "canary gate text: 400 canary requests in the 300 s window, none in its recent half: "
        "the evidence is stale" in d.reasons
    )


def test_a_promotion_needs_every_required_check_ok() -> None:
    degraded = CheckEvidence(canary=Status.DEGRADED, stable=Status.OK)
    d = decide(healthy(phase2=phase2(embedding_alignment=degraded)), POLICY)
    assert (d.outcome, d.promote_to) == (Outcome.CONTINUE, None)
    assert any("embedding_alignment degraded on the canary (a promotion needs ok)" in r for r in d.reasons)
    logs = decide(healthy(phase1=phase1(metrics_sla=Status.DEGRADED)), POLICY)
    assert (logs.outcome, logs.promote_to) == (Outcome.CONTINUE, None)
    assert any("metrics_sla degraded (a promotion needs ok)" in r for r in logs.reasons)


# --- the canary gate: a breach stable shows too ----------------------------------------------------------


def _gate(
    canary_5xx: float, stable_5xx: float, p99: float = 120.0, stable_p99: float = 110.0
) -> CanaryGateResult:
    """A text gate over 400 canary requests (200 in the recent half) and 8000 stable ones."""
    c, s = canary_5xx * 400, stable_5xx * 8000
    trailing = window(400, errors=c, p99=p99).model_copy(update={"errors_5xx": c})
    recent = window(200, errors=c / 2, p99=p99).model_copy(update={"errors_5xx": c / 2})
    stable = window(8000, errors=s, p99=stable_p99, version="stable").model_copy(update={"errors_5xx": s})
    return combine_gates(GATES, [evaluate_channel_gate(GATES, Channel.TEXT, trailing, recent, stable)])


def test_a_gate_breach_stable_shows_too_is_no_fast_path_unless_the_canary_is_worse() -> None:
    # 5xx 3 % on both versions (limit 0.5 %): an upstream 5xx burst, not the canary
    shared = decide(healthy(gate=_gate(0.03, 0.03)), POLICY)
    assert (shared.outcome, shared.gate_breach, shared.needs_human) == (
        Outcome.INSUFFICIENT_EVIDENCE,
        False,
        True,
    )
    assert shared.reasons[0].startswith(
        "shared by both versions, not evidence against the canary: canary gate breach text rate_5xx canary "
        "3.00%, stable 3.00% > limit 0.50% (P(canary's rate > stable's) 0."
    )
    # 10 % against stable's 1 % (both over the limit): the canary is significantly worse, it rolls back
    worse = decide(healthy(gate=_gate(0.10, 0.01)), POLICY)
    assert (worse.rule, worse.gate_breach) == ("canary_gate_breach", True) and worse.rolls_back_without_human
    # a p99 has no counts to compare: stable over the limit too makes it shared
    slow = decide(healthy(gate=_gate(0.0, 0.0, p99=1830, stable_p99=1900)), POLICY)
    assert slow.outcome is Outcome.INSUFFICIENT_EVIDENCE and any(
        "text p99_latency_ms canary 1830 ms, stable 1900 ms > limit 1200 ms" in r for r in slow.reasons
    )


def test_every_required_check_is_a_check_of_its_phase_in_sop_yaml(tmp_path: Path) -> None:
    books = load_runbooks()
    phases = {p.id: set(p.checks) for p in books.sop.phases}
    req = books.decision.required_evidence
    for needs in (req.continue_, req.promote):
        assert set(needs.phase1) <= phases["golden_window"]
        assert set(needs.phase2) <= phases["deep_diagnosis"]
    # and the loader refuses one that is not, naming the field and the checks it could be
    copy = tmp_path / "runbooks"
    shutil.copytree(books.directory, copy)
    text = (copy / "decision.yaml").read_text()
    (copy / "decision.yaml").write_text(text.replace("router_dispatch, drift]", "router_dispatch, drfit]"))
    with pytest.raises(RunbookError) as info:
        load_runbooks(copy)
    assert "required_evidence.continue.phase2[4]: drfit is not a deep_diagnosis check in sop.yaml" in str(
        info.value
    )


def test_the_runbook_names_a_replaced_or_inconsistent_requirement() -> None:
    data = POLICY.model_dump(mode="json", by_alias=True)
    data["evidence"]["require_phase2"] = True
    with pytest.raises(ValueError, match="require_phase2 is replaced by required_evidence"):
        DecisionPolicy.model_validate(data)
    data = POLICY.model_dump(mode="json", by_alias=True)
    data["required_evidence"]["promote"]["phase2"] = ["drift"]
    with pytest.raises(ValueError, match=r"promote\.phase2 must list every check continue\.phase2 lists"):
        DecisionPolicy.model_validate(data)
