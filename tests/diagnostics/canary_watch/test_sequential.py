"""The count test one look at a time: healthy canaries are not rejected, a 10× canary is, quickly;
resets and missing looks pause and resume without rejecting; the e-value only grows with the canary's
share of the events; the result says it all in one line."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.canary_watch import (
    Counters,
    CountTestParams,
    CountWatch,
    Look,
    WatchResult,
    WatchState,
    WatchStatus,
    slow_counters,
)
from diagnostics.canary_watch.mixture import log_e_value, log_lr_increment

RUNBOOK_LEVEL = 0.005 / 12  # runbooks/canary_watch.yaml: alpha over 4 channels × 3 tests
PARAMS = CountTestParams(alpha=RUNBOOK_LEVEL)
NEVER_REJECTS = CountTestParams(alpha=RUNBOOK_LEVEL, min_events=10**9)  # to follow the e-value anywhere

Delta = tuple[int, int, int, int]  # canary requests, canary events, stable requests, stable events


def _cumulative(deltas: list[Delta]) -> list[Look]:
    """Looks of cumulative counters: the first is all zeros, then one look per delta."""
    looks, c_req, c_ev, s_req, s_ev = [], 0, 0, 0, 0
    looks.append(_look(0, 0, 0, 0))
    for dcr, dce, dsr, dse in deltas:
        c_req, c_ev, s_req, s_ev = c_req + dcr, c_ev + dce, s_req + dsr, s_ev + dse
        looks.append(_look(c_req, c_ev, s_req, s_ev))
    return looks


def _look(c_req: float, c_ev: float, s_req: float, s_ev: float) -> Look:
    return Look(canary=Counters(requests=c_req, events=c_ev), stable=Counters(requests=s_req, events=s_ev))


def _run(watch: CountWatch, looks: list[Look], state: WatchState | None = None) -> list[WatchResult]:
    state = state or watch.start()
    results = []
    for look in looks:
        step = watch.observe(state, look)
        state = step.state
        results.append(step.result)
    return results


def _direct_log_e(params: CountTestParams, deltas: list[Delta]) -> float:
    """The e-value of these deltas straight from the mixture (no state, no looks)."""
    mix = params.mixture
    total = np.zeros(mix.points)
    for dcr, dce, dsr, dse in deltas:
        if dce + dse:
            total += log_lr_increment(mix, dce, dce + dse, dcr / (dcr + dsr))
    return float(log_e_value(mix, total))


def _watch(params: CountTestParams = PARAMS, label: str = "errors") -> CountWatch:
    return CountWatch("errors", "text", label, params)


deltas_strategy = st.lists(
    st.tuples(st.integers(0, 400), st.floats(0, 0.3), st.integers(0, 4000), st.floats(0, 0.3)).map(
        lambda t: (t[0], int(t[0] * t[1]), t[2], int(t[2] * t[3]))
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.floats(0, 1)), min_size=1, max_size=60))
def test_identical_streams_never_reach_the_threshold(looks: list[tuple[int, float]]) -> None:
    """Canary and stable with the same counts look by look: E <= 1 (at w = 1/2, x = n/2 the ratio
    ρ^(n/2) / ((1+ρ)/2)^n is at most 1 by AM-GM), so no level ever rejects them."""
    deltas = [(r, int(r * f), r, int(r * f)) for r, f in looks]
    results = _run(_watch(), _cumulative(deltas))
    assert all(r.status is WatchStatus.CONTINUE for r in results)
    assert results[-1].log_e <= 1e-9


@settings(max_examples=5, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    share=st.floats(0.02, 0.5),
    rate=st.floats(0.002, 0.05),
    per_look=st.integers(50, 2000),
)
def test_healthy_canaries_are_rejected_no_more_often_than_alpha(
    seed: int, share: float, rate: float, per_look: int
) -> None:
    """A/A: 400 canaries × 150 looks at α = 0.05; the share rejected stays under α (+3 standard
    errors). The stateful watch is the same arithmetic, checked in the tests below and in
    tests/benchmarks/test_canary_watch_sim.py; here the streams are many, so the core runs them (on a
    coarser grid: the bound holds for any grid)."""
    rng = np.random.default_rng(seed)
    params = CountTestParams(alpha=0.05, min_events=0, grid_step=0.05, max_ratio=1000)
    mix = params.mixture
    c_req = rng.poisson(per_look * share, (400, 150))
    s_req = rng.poisson(per_look * (1 - share), (400, 150))
    x, y = rng.binomial(c_req, rate), rng.binomial(s_req, rate)
    w = np.divide(c_req, c_req + s_req, out=np.zeros(c_req.shape), where=(c_req + s_req) > 0)
    log_e = log_e_value(mix, np.cumsum(log_lr_increment(mix, x, x + y, w), axis=1))
    rejected = float((log_e >= math.log(params.threshold)).any(1).mean())
    assert rejected <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    share=st.floats(0.02, 0.5),
    rate=st.floats(0.005, 0.05),
    per_look=st.integers(200, 2000),
)
def test_a_canary_failing_ten_times_as_often_is_rejected_within_3000_canary_requests(
    seed: int, share: float, rate: float, per_look: int
) -> None:
    rng = np.random.default_rng(seed)
    watch, state = _watch(), _watch().start()
    c_req = c_ev = s_req = s_ev = 0
    step = watch.observe(state, _look(0, 0, 0, 0))
    while c_req <= 3000 and step.result.status is not WatchStatus.REJECT:
        dc, ds = int(rng.poisson(per_look * share)), int(rng.poisson(per_look * (1 - share)))
        c_req, s_req = c_req + dc, s_req + ds
        c_ev, s_ev = c_ev + int(rng.binomial(dc, 10 * rate)), s_ev + int(rng.binomial(ds, rate))
        step = watch.observe(step.state, _look(c_req, c_ev, s_req, s_ev))
    assert step.result.status is WatchStatus.REJECT, step.result.evidence
    assert step.result.e_value >= step.result.threshold == 2400
    assert step.result.canary_events >= PARAMS.min_events


@settings(max_examples=60, deadline=None)
@given(
    deltas=st.lists(
        st.tuples(st.integers(1, 400), st.integers(0, 5), st.integers(1, 4000), st.integers(0, 9)),
        min_size=2,
        max_size=40,
    ),
    at=st.integers(1, 39),
    who=st.sampled_from(["canary", "stable"]),
)
def test_a_counter_reset_pauses_and_the_test_resumes_from_the_new_values(
    deltas: list[Delta], at: int, who: str
) -> None:
    """The version restarts during look ``at``: its counters start again from zero, then grow by the
    same deltas. That look pauses with the e-value kept; its delta is lost, every later one tested."""
    at = 1 + (at - 1) % (len(deltas) - 1)
    looks, cum = [_look(0, 0, 0, 0)], {"canary": [0, 0], "stable": [0, 0]}
    for i, (dcr, dce, dsr, dse) in enumerate(deltas):
        if i == at:
            cum[who] = [0, 0]
        else:
            cum["canary"] = [cum["canary"][0] + dcr, cum["canary"][1] + min(dce, dcr)]
            cum["stable"] = [cum["stable"][0] + dsr, cum["stable"][1] + min(dse, dsr)]
        looks.append(_look(*cum["canary"], *cum["stable"]))
    results = _run(_watch(NEVER_REJECTS), looks)
    paused = results[at + 1]
    assert paused.status is WatchStatus.PAUSED
    assert paused.reason is not None and paused.reason.startswith(f"counter reset ({who} requests")
    assert paused.log_e == results[at].log_e  # kept: a reset never adds evidence
    kept = [
        (dcr, min(dce, dcr), dsr, min(dse, dsr)) for i, (dcr, dce, dsr, dse) in enumerate(deltas) if i != at
    ]
    assert results[-1].log_e == pytest.approx(_direct_log_e(NEVER_REJECTS, kept), abs=1e-9)
    assert results[-1].paused_looks == 1 and results[-1].looks == len(kept)


def test_a_reset_that_would_look_like_a_burst_of_canary_errors_only_pauses() -> None:
    watch = _watch()
    looks = _cumulative([(25, 0, 475, 5)] * 10)
    # the canary restarted; its new process reports a huge error counter against tiny requests
    looks.append(_look(5, 4, 5225, 55))
    results = _run(watch, looks)
    assert results[-1].status is WatchStatus.PAUSED
    assert results[-1].reason == "counter reset (canary requests went down)"
    assert results[-1].e_value < 1


@settings(max_examples=60, deadline=None)
@given(
    deltas=deltas_strategy, missing=st.integers(1, 38), which=st.sampled_from(["canary", "stable", "both"])
)
def test_a_missing_look_pauses_and_the_next_complete_look_sets_a_fresh_baseline(
    deltas: list[Delta], missing: int, which: str
) -> None:
    looks = _cumulative(deltas)
    missing = 1 + (missing - 1) % (len(looks) - 1)
    gap = looks[missing]
    looks[missing] = Look(
        canary=None if which in ("canary", "both") else gap.canary,
        stable=None if which in ("stable", "both") else gap.stable,
        reason="query timed out",
    )
    results = _run(_watch(NEVER_REJECTS), looks)
    paused = results[missing]
    assert paused.status is WatchStatus.PAUSED and paused.reason is not None
    assert paused.reason.endswith(": query timed out") and paused.log_e == results[missing - 1].log_e
    if missing + 1 < len(looks):
        assert results[missing + 1].status is WatchStatus.CONTINUE  # resumed: the baseline only
        assert results[missing + 1].log_e == paused.log_e
    # the deltas into and out of the gap are not tested; every other one is
    kept = [d for i, d in enumerate(deltas) if i not in (missing - 1, missing)]
    assert results[-1].log_e == pytest.approx(_direct_log_e(NEVER_REJECTS, kept), abs=1e-9)
    assert results[-1].looks == len(kept)


def test_counters_that_contradict_each_other_pause() -> None:
    results = _run(_watch(), [_look(0, 0, 0, 0), _look(10, 12, 100, 1)])
    assert results[-1].status is WatchStatus.PAUSED
    assert results[-1].reason == "more errors than requests since the last look (counters out of step)"


@settings(max_examples=80, deadline=None)
@given(history=deltas_strategy, last=st.tuples(st.integers(1, 400), st.integers(1, 4000)))
def test_more_canary_events_at_the_same_totals_never_lower_the_e_value(
    history: list[Delta], last: tuple[int, int]
) -> None:
    c_req, s_req = last
    events = min(c_req, s_req)  # the last look's events, split between the versions every way
    log_es = [
        _run(_watch(), _cumulative([*history, (c_req, canary, s_req, events - canary)]))[-1].log_e
        for canary in range(0, events + 1, max(1, events // 8))
    ]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(log_es)), log_es


def test_an_e_value_over_the_threshold_waits_for_min_events_then_rejects() -> None:
    watch = _watch(CountTestParams(alpha=0.05, min_events=4))
    results = _run(watch, _cumulative([(10, 3, 990, 0), (10, 1, 990, 0)]))
    waiting, rejected = results[1], results[2]
    assert waiting.status is WatchStatus.CONTINUE and waiting.e_value >= waiting.threshold
    assert waiting.evidence.endswith("but 3 canary errors < min_events 4")
    assert rejected.status is WatchStatus.REJECT and rejected.canary_events == 4


def test_a_rejection_is_final_and_the_evidence_reads_as_one_line() -> None:
    watch = CountWatch("errors_5xx", "text", "5xx", PARAMS)
    started = watch.observe(watch.start(), _look(0, 0, 0, 0)).state
    rejected = watch.observe(started, _look(1200, 42, 22_800, 40))
    mix = PARAMS.mixture
    e = math.exp(float(log_e_value(mix, log_lr_increment(mix, 42, 82, 1200 / 24_000))))
    assert rejected.result.status is WatchStatus.REJECT
    assert rejected.result.e_value == pytest.approx(e) and e > 1e6
    assert rejected.result.evidence == f"text: canary 5xx 42/1,200 vs stable 40/22,800, e={e:.2e} ≥ 2,400"
    # missing data after a rejection changes nothing; before one, it pauses
    after = watch.observe(rejected.state, Look(canary=None, stable=None))
    assert after.result.status is WatchStatus.REJECT and after.state == rejected.state
    assert watch.observe(started, Look(canary=None, stable=None)).result.status is WatchStatus.PAUSED


def test_a_healthy_look_reads_continue_with_the_numbers() -> None:
    results = _run(_watch(), [_look(0, 0, 0, 0), _look(1200, 12, 22_800, 228)])
    assert results[-1].status is WatchStatus.CONTINUE
    assert results[-1].evidence.startswith("text: canary errors 12/1,200 vs stable 228/22,800, e=")
    assert results[-1].evidence.endswith("< 2,400") and results[-1].e_value < 1
    assert results[-1].looks == 1 and results[-1].alpha == RUNBOOK_LEVEL


def test_the_first_look_only_sets_the_baseline() -> None:
    results = _run(_watch(), [_look(5000, 500, 100, 0)])  # counters from before the watch started
    assert results[0].status is WatchStatus.CONTINUE and results[0].looks == 0
    assert results[0].canary_events == 0 and results[0].e_value == 1.0


def test_a_state_started_with_other_parameters_is_refused() -> None:
    other = CountWatch("errors", "text", "errors", CountTestParams(alpha=0.01, grid_step=0.1))
    with pytest.raises(ValueError, match="start a new one"):
        _watch().observe(other.start(), _look(0, 0, 0, 0))


def test_slow_requests_come_from_the_count_and_the_sla_bucket() -> None:
    assert slow_counters(1000, 985) == Counters(requests=1000, events=15)
    with pytest.raises(ValueError, match="same scrape"):
        slow_counters(1000, 1001)


def test_a_paused_result_needs_a_reason_and_only_it() -> None:
    fields = dict(
        test="errors",
        channel="text",
        e_value=1.0,
        log_e=0.0,
        threshold=20.0,
        alpha=0.05,
        canary_events=0,
        canary_requests=0,
        stable_events=0,
        stable_requests=0,
        looks=0,
        paused_looks=0,
        evidence="x",
    )
    with pytest.raises(ValueError, match="needs its reason"):
        WatchResult(status=WatchStatus.PAUSED, **fields)
    with pytest.raises(ValueError, match="needs its reason"):
        WatchResult(status=WatchStatus.CONTINUE, reason="why", **fields)
