"""The canary-watch simulation on small inputs: its vectorised watch is the library's CountWatch look
by look, its rule, Argo and Prometheus arithmetic does what the real ones do, and a tiny run writes
the figures the lead's full run reports."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.canary_watch_sim import (
    NEVER,
    Sim,
    Version,
    argo_run,
    bucket_bounds_s,
    fixed_run,
    held_for,
    histogram_quantile,
    main,
    scenarios,
    simulate,
    today_rules_run,
    watch_first_reject,
)
from benchmarks.decision import Params
from diagnostics.canary_watch import Counters, CountTestParams, CountWatch, Look, WatchStatus
from diagnostics.runbooks import load_runbooks

SIM = Sim(replace(Params(), step_s=5.0, horizon_min=10, look_every_s=60.0))
GATES = load_runbooks().thresholds.gates_for("testbed")


def test_the_vectorised_watch_is_the_librarys_count_watch_look_by_look() -> None:
    base = SIM.base
    rng = np.random.default_rng(7)
    healthy, bad = scenarios(base)[0], scenarios(base)[2]  # 3 canaries at 10× stable's errors, 3 healthy
    sick, fine = (
        simulate(rng, SIM, 3, 5.0, bad, buckets=False),
        simulate(rng, SIM, 3, 5.0, healthy, buckets=False),
    )
    fields = ("requests", "errors", "e5xx", "slow")
    canary = Version(
        **{f: np.concatenate([getattr(sick, f), getattr(fine, f)]) for f in fields}, buckets=None
    )
    stable = simulate(rng, SIM, 6, 95.0, healthy, buckets=False)
    params = CountTestParams(alpha=0.01, min_events=3)
    total = canary.requests + stable.requests
    w = canary.requests / total
    first = watch_first_reject(
        params.mixture,
        canary.errors,
        canary.errors + stable.errors,
        w,
        math.log(params.threshold),
        3,
        block=7,
    )
    watch = CountWatch("errors", "text", "errors", params)
    for r in range(6):
        state = watch.observe(
            watch.start(), Look(canary=Counters(requests=0, events=0), stable=Counters(requests=0, events=0))
        ).state
        cum = np.cumsum([canary.requests[r], canary.errors[r], stable.requests[r], stable.errors[r]], axis=1)
        rejected_at = NEVER
        for t in range(SIM.steps):
            step = watch.observe(
                state,
                Look(
                    canary=Counters(requests=cum[0, t], events=cum[1, t]),
                    stable=Counters(requests=cum[2, t], events=cum[3, t]),
                ),
            )
            state = step.state
            if step.result.status is WatchStatus.REJECT:
                rejected_at = t
                break
        assert rejected_at == first[r]
    assert (first[:3] != NEVER).all() and (first[3:] == NEVER).all()


def test_histogram_quantile_interpolates_as_prometheus_does() -> None:
    le = bucket_bounds_s()
    counts = np.zeros((3, le.size), dtype=np.int64)
    counts[0, list(le).index(0.75)] = 100  # every request in (0.5 s, 0.75 s]
    counts[1, -1] = 10  # every request above 30 s: the highest finite bound
    q = histogram_quantile(0.99, counts)
    assert q[0] == pytest.approx(0.5 + 0.25 * 0.99)
    assert q[1] == 30.0 and math.isnan(q[2])


def test_for_60s_at_5s_evaluations_needs_13_true_evaluations_in_a_row() -> None:
    cond = np.zeros((2, 40), dtype=bool)
    cond[0, 5:17] = True  # 12 evaluations: pending, never firing
    cond[1, 5:18] = True  # 13: fires at the 13th (60 s after the first)
    held = held_for(cond, 13)
    assert not held[0].any() and np.flatnonzero(held[1]).tolist() == [17]


def _version(requests: int, errors: int, e5xx: int, slow_bucket: bool = False) -> Version:
    shape = (1, SIM.steps)
    buckets = np.zeros((*shape, bucket_bounds_s().size), dtype=np.int64)
    buckets[..., list(bucket_bounds_s()).index(1.5 if slow_bucket else 0.1)] = requests
    full = np.full(shape, requests, dtype=np.int64)
    return Version(
        full, np.full(shape, errors), np.full(shape, e5xx), np.zeros(shape, dtype=np.int64), buckets
    )


def test_todays_gates_fire_a_minute_after_their_evidence_is_complete() -> None:
    # 25 requests a step, all 5xx: >= 50 requests in the window from the 2nd step; held for 60 s after
    assert today_rules_run(_version(25, 25, 25), GATES, SIM).tolist() == [1 + 12]
    assert today_rules_run(_version(25, 0, 0, slow_bucket=True), GATES, SIM).tolist() == [13]  # p99 1.5 s
    assert today_rules_run(_version(25, 1, 0), GATES, SIM).tolist() == [NEVER]  # 4 % errors: under 5 %


def test_argo_rolls_back_when_a_metric_fails_more_than_its_failure_limit() -> None:
    # every minute fails the error rate (100 %): the 4th failed measurement aborts, at 4 minutes
    assert argo_run(_version(25, 25, 0), SIM).tolist() == [4 * 12 - 1]
    assert argo_run(_version(25, 0, 0), SIM).tolist() == [NEVER]


def test_the_fixed_horizon_test_rejects_a_bad_canary_at_a_look_and_at_the_end() -> None:
    params = CountTestParams(alpha=0.01)
    canary, stable = _version(25, 5, 1), _version(475, 5, 1)
    every, once = fixed_run(canary, stable, params, SIM)
    assert 0 <= every[0] < SIM.steps - 1 and once.tolist() == [SIM.steps - 1]


def test_a_tiny_run_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    assert main(["--replicates", "4", "--bad-replicates", "3", "--horizon-min", "11", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["replicates"] == 4 and d["bad_replicates"] == 3 and d["seed"] == Params().seed
    assert {"aa_false_rollback_rate", "requests_to_detect_2x_median", "machine", "commit", "command"} <= set(
        d
    )
    assert set(d["methods"]) == {
        "watch",
        "today_rules",
        "argo",
        "kayenta",
        "fixed_every_look",
        "fixed_once_at_end",
    }
    watch = d["methods"]["watch"]
    assert watch["missed_rate"]["failure_100pct"] == 0.0
    assert watch["seconds_to_detect_median"]["failure_100pct"] == 5.0  # the first look after the start
    assert d["parameters"]["watch_test"]["alpha"] == pytest.approx(0.005 / 3)


def test_a_sla_bound_that_is_no_bucket_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="not a bucket bound"):
        main(["--replicates", "1", "--slow-above-ms", "800", "--out", "/dev/null"])
