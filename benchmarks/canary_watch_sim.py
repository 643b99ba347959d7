"""Benchmark: the canary watch's anytime-valid tests against today's alert rules, an Argo/Flagger-style
analysis, a Kayenta-style judge and a fixed-horizon test repeated at every look, on the same simulated
traffic.

Traffic: ``benchmarks/decision.py``'s model (its ``Params``): 100 requests/s of which 5 % go to the
canary, Poisson requests, 1 % errors (10 % of them 5xx), gamma latencies (shape 2, scale 90 ms: p99
597 ms), here in 5 s steps (one look, one scrape, one rule evaluation: ``deploy/prometheus`` scrapes
and evaluates every 5 s) for ``--horizon-min`` (120) minutes, with latencies counted into the
testbed's histogram buckets (``testbed.metrics.LATENCY_BUCKETS``) as Prometheus would. Every method
reads counters, as it would from Prometheus; a Kayenta-style baseline deployment (canary-sized,
stable's behaviour) is simulated beside canary and stable. Vectorised over replicates with numpy.

Scenarios: ``aa`` (a healthy canary: false-rollback rate over ``--replicates``), ``errors_2x``,
``errors_10x`` (the canary's error rate 2 % / 10 %, 5xx the same 10 % of errors),
``failure_100pct`` (every canary request a 5xx), ``latency_p99_plus_300ms`` (the canary's gamma scale
puts its p99 300 ms above stable's), each over ``--bad-replicates``: canary requests (and seconds)
until the method acts, and the share of replicates it misses within the horizon.

Methods:

- **watch**: ``diagnostics.canary_watch`` with ``runbooks/canary_watch.yaml``'s parameters; the
  simulated service has one channel, so its three tests (errors, 5xx, SLA-slow above
  ``--slow-above-ms``) share the runbook's ``alpha`` (each at alpha / 3). The e-process is computed
  with the library's own vectorised functions (``diagnostics.canary_watch.mixture``); a test checks
  them against ``CountWatch.observe`` look by look;
- **today_rules**: the hard canary gates of ``deploy/prometheus/rules/testbed.yml`` (5xx > 0.5 %,
  errors > 5 %, p99 > 1.2 s over ``[1m]``, with >= 50 requests in 60 s, ``for: 60s``, evaluated every
  5 s): the alert fires after 13 consecutive true evaluations. Alertmanager, the intake and the fast
  path (~85-100 s from the fault to weight 0 on the live stack) come on top and are not counted;
- **argo**: Argo Rollouts / Flagger style, as in ``benchmarks/decision.py``: a measurement every 60 s
  over the last minute, error rate < 5 % and p99 < 0.8 s (``histogram_quantile`` of the minute's
  buckets); rollback when a metric's failed measurements exceed ``failureLimit`` = 3;
- **kayenta**: Kayenta style, as in ``benchmarks/decision.py``: every 5 minutes, Mann-Whitney U of the
  canary's 10 s points (error rate, p99) against the baseline deployment's, since the start, once both
  have >= 50 points; p < 0.02 with a positive Hodges-Lehmann shift on either metric fails the canary;
- **fixed_every_look**: the one-sided exact conditional binomial test (the fixed-horizon version of the
  watch's model), on the cumulative counts, at the watch's per-test level, repeated at every look
  (``fixed_once_at_end``: the same test once, at the horizon, for the A/A rate it is designed for).

    .venv/bin/python benchmarks/canary_watch_sim.py [--replicates 2000] [--bad-replicates 500]
        [--seed 20261122] [--out benchmarks/results/canary_watch_sim.json]

Writes (default) ``benchmarks/results/canary_watch_sim.json``: ``aa_false_rollback_rate`` (the watch),
``requests_to_detect_2x_median`` (the watch), a table per method (``methods``: A/A rate with its 95 %
Wilson interval, per scenario the median and 90th percentile of canary requests and seconds to act,
missed rate), the watch's rejections by test (a tie goes to the first of errors, errors_5xx,
sla_slow), the command, machine, commit, load, seed and parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.decision import Params
from diagnostics.canary_watch.mixture import Mixture, log_e_value, log_lr_increment
from diagnostics.canary_watch.sequential import CountTestParams
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.canary_watch import CanaryWatchRunbook, load_canary_watch
from diagnostics.runbooks.schemas import CanaryGates
from testbed.metrics import LATENCY_BUCKETS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
IntA = npt.NDArray[np.int64]
FloatA = npt.NDArray[np.float64]
NEVER = -1  # a method that did not act within the horizon
TESTS = ("errors", "errors_5xx", "sla_slow")
METHODS = ("watch", "today_rules", "argo", "kayenta", "fixed_every_look", "fixed_once_at_end")


@dataclass(frozen=True)
class Sim:
    base: Params  # decision.py's traffic model, argo and kayenta settings
    slow_above_ms: float = 750.0  # the testbed bucket bound at or below decision.py's 800 ms SLA
    rule_window_s: float = 60.0  # rate(...[1m]) and increase(...[60s]) of the generated rules
    eval_every_s: float = 5.0  # deploy/prometheus/prometheus.yml evaluation_interval
    kayenta_point_s: float = 10.0  # one point of a Kayenta series
    chunk: int = 100  # replicates simulated together (memory: ~chunk x 2 MB)

    @property
    def steps(self) -> int:
        return self.base.steps

    def every(self, seconds: float) -> int:
        n = seconds / self.base.step_s
        if n < 1 or abs(n - round(n)) > 1e-9:
            raise ValueError(f"{seconds} s is not a whole number of {self.base.step_s} s steps")
        return round(n)


@dataclass(frozen=True)
class Scenario:
    name: str
    error_rate: float
    share_5xx: float
    scale_ms: float


@dataclass
class Version:
    """One version's counters per step, shape (replicates, steps); ``buckets`` per bucket (last +Inf)."""

    requests: IntA
    errors: IntA
    e5xx: IntA
    slow: IntA
    buckets: IntA | None


def bucket_bounds_s() -> FloatA:
    return np.array([*LATENCY_BUCKETS, np.inf])


def bucket_probs(shape: float, scale_ms: float) -> FloatA:
    cdf = sps.gamma.cdf(bucket_bounds_s() * 1000.0, shape, scale=scale_ms)
    return np.diff(np.r_[0.0, cdf])


def slow_index(sim: Sim) -> int:
    """Index of the bucket whose upper bound is the SLA bound: slower requests are in later buckets."""
    bounds = list(LATENCY_BUCKETS)
    if sim.slow_above_ms / 1000 not in bounds:
        raise ValueError(f"--slow-above-ms {sim.slow_above_ms:g} is not a bucket bound: {bounds}")
    return bounds.index(sim.slow_above_ms / 1000)


def simulate(
    rng: np.random.Generator, sim: Sim, reps: int, rps: float, sc: Scenario, buckets: bool
) -> Version:
    p = sim.base
    n = rng.poisson(rps * p.step_s, (reps, sim.steps))
    errors = rng.binomial(n, sc.error_rate)
    e5 = rng.binomial(errors, sc.share_5xx)
    if not buckets:
        sf = float(sps.gamma.sf(sim.slow_above_ms, p.gamma_shape, scale=sc.scale_ms))
        return Version(n, errors, e5, rng.binomial(n, sf), None)
    b = rng.multinomial(n, bucket_probs(p.gamma_shape, sc.scale_ms))
    return Version(n, errors, e5, b[..., slow_index(sim) + 1 :].sum(-1), b)


# --- shared helpers (tested in tests/benchmarks/test_canary_watch_sim.py) ---------------------------


def rolling_sum(x: npt.NDArray[Any], window: int) -> npt.NDArray[Any]:
    """Sum over the last ``window`` steps (fewer at the start), along axis 1."""
    cs = np.cumsum(x, axis=1)
    out = cs.copy()
    out[:, window:] -= cs[:, :-window]
    return out


def histogram_quantile(q: float, counts: npt.NDArray[Any]) -> FloatA:
    """Prometheus's ``histogram_quantile`` over per-bucket counts (last axis, last bucket +Inf): the
    bucket holding rank ``q·total``, linearly interpolated; the +Inf bucket gives the highest finite
    bound; NaN without observations."""
    le = bucket_bounds_s()
    cum = np.cumsum(counts, axis=-1, dtype=np.float64)
    total = cum[..., -1]
    rank = q * total
    b = (cum[..., :-1] < rank[..., None]).sum(-1)  # Prometheus searches the finite buckets only
    finite = b < le.size - 1
    bi = np.minimum(b, le.size - 2)
    lower = np.where(bi > 0, le[np.maximum(bi - 1, 0)], 0.0)
    below = np.where(bi > 0, np.take_along_axis(cum, np.maximum(bi - 1, 0)[..., None], -1)[..., 0], 0.0)
    inside = np.take_along_axis(counts, bi[..., None], -1)[..., 0].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = lower + (le[bi] - lower) * (rank - below) / inside
    value = np.where(finite, value, le[-2])
    return np.where(total > 0, value, np.nan)


def first_true(mask: npt.NDArray[np.bool_]) -> IntA:
    """Index of the first True along axis 1, or NEVER."""
    return np.where(mask.any(1), mask.argmax(1), NEVER).astype(np.int64)


def held_for(cond: npt.NDArray[np.bool_], evaluations: int) -> npt.NDArray[np.bool_]:
    """True where ``cond`` has been true at this and the previous ``evaluations - 1`` evaluations."""
    idx = np.arange(cond.shape[1])
    last_false = np.maximum.accumulate(np.where(cond, -1, idx), axis=1)
    return (idx - last_false) >= evaluations


# --- the methods: each returns the step at which it acts per replicate (NEVER: it did not) ----------


def watch_first_reject(
    mix: Mixture, x: IntA, n: IntA, w: FloatA, log_threshold: float, min_events: int, block: int = 120
) -> IntA:
    """The e-process of one test over every replicate, in time blocks, replicates that rejected
    dropped; ``max_k log LR_k`` (>= log E) screens out the looks that cannot reach the threshold."""
    reps, steps = x.shape
    first = np.full(reps, NEVER, dtype=np.int64)
    state = np.zeros((reps, mix.points))
    cum_x = np.zeros(reps)
    active = np.arange(reps)
    for t0 in range(0, steps, block):
        if active.size == 0:
            break
        sl = slice(t0, t0 + block)
        inc = log_lr_increment(mix, x[active, sl], n[active, sl], w[active, sl])
        np.cumsum(inc, axis=1, out=inc)
        inc += state[active][:, None, :]
        cx = cum_x[active][:, None] + np.cumsum(x[active, sl], axis=1)
        maybe = (inc.max(-1) >= log_threshold) & (cx >= min_events)
        hit = np.zeros_like(maybe)
        if maybe.any():
            hit[maybe] = log_e_value(mix, inc[maybe]) >= log_threshold
        state[active] = inc[:, -1, :]
        cum_x[active] = cx[:, -1]
        found = hit.any(1)
        first[active[found]] = t0 + hit[found].argmax(1)
        active = active[~found]
    return first


def counts_per_test(canary: Version, stable: Version) -> dict[str, tuple[IntA, IntA]]:
    return {
        "errors": (canary.errors, stable.errors),
        "errors_5xx": (canary.e5xx, stable.e5xx),
        "sla_slow": (canary.slow, stable.slow),
    }


def watch_run(canary: Version, stable: Version, params: CountTestParams) -> tuple[IntA, npt.NDArray[np.str_]]:
    mix, log_thr = params.mixture, math.log(params.threshold)
    total = canary.requests + stable.requests
    w = np.divide(canary.requests, total, out=np.zeros(total.shape), where=total > 0)
    per_test = {
        name: watch_first_reject(mix, c, c + s, w, log_thr, params.min_events)
        for name, (c, s) in counts_per_test(canary, stable).items()
    }
    return _earliest(per_test)


def _earliest(per_test: dict[str, IntA]) -> tuple[IntA, npt.NDArray[np.str_]]:
    """The earliest step over the tests, and which test it was."""
    names = list(per_test)
    steps = np.stack([np.where(per_test[k] == NEVER, np.iinfo(np.int64).max, per_test[k]) for k in names])
    which = steps.argmin(0)
    first = steps.min(0)
    return np.where(first == np.iinfo(np.int64).max, NEVER, first), np.array(names)[which]


def fixed_run(canary: Version, stable: Version, params: CountTestParams, sim: Sim) -> tuple[IntA, IntA]:
    """The exact one-sided conditional binomial test on cumulative counts: (first step it rejects at
    when repeated at every look, step of the single test at the horizon or NEVER)."""
    cr, sr = np.cumsum(canary.requests, 1), np.cumsum(stable.requests, 1)
    w = np.divide(cr, cr + sr, out=np.zeros(cr.shape), where=(cr + sr) > 0)
    rho0 = params.tolerance
    p0 = rho0 * w / (1 + (rho0 - 1) * w)
    every: dict[str, IntA] = {}
    end = np.zeros(cr.shape[0], dtype=bool)
    for name, (c, s) in counts_per_test(canary, stable).items():
        x, n = np.cumsum(c, 1), np.cumsum(c + s, 1)
        pval = sps.binom.sf(x - 1, n, p0)
        reject = (pval <= params.alpha) & (x >= params.min_events)
        every[name] = first_true(reject)
        end |= reject[:, -1]
    return _earliest(every)[0], np.where(end, sim.steps - 1, NEVER)


def today_rules_run(canary: Version, gates: CanaryGates, sim: Sim) -> IntA:
    assert canary.buckets is not None
    window = sim.every(sim.rule_window_s)
    hold = sim.every(gates.sustained_s) // sim.every(sim.eval_every_s) + 1  # `for:` spans hold evals
    req = rolling_sum(canary.requests, window)
    enough = req >= gates.min_requests
    p99 = histogram_quantile(0.99, rolling_sum(canary.buckets, window))
    conds = (
        enough & (rolling_sum(canary.e5xx, window) > gates.rate_5xx * req),
        enough & (rolling_sum(canary.errors, window) > gates.error_rate * req),
        enough & (p99 > gates.p99_latency_ms / 1000),
    )
    ev = sim.every(sim.eval_every_s)
    fired = [first_true(held_for(c[:, ev - 1 :: ev], hold)) for c in conds]
    steps = np.stack([np.where(f == NEVER, NEVER, (f + 1) * ev - 1) for f in fired])
    return np.where((steps == NEVER).all(0), NEVER, np.where(steps == NEVER, sim.steps, steps).min(0))


def argo_run(canary: Version, sim: Sim) -> IntA:
    assert canary.buckets is not None
    p, m = sim.base, sim.every(sim.base.look_every_s)
    req = rolling_sum(canary.requests, m)[:, m - 1 :: m].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = rolling_sum(canary.errors, m)[:, m - 1 :: m] / req  # 0/0: NaN, a failed measurement
    p99 = histogram_quantile(0.99, rolling_sum(canary.buckets, m)[:, m - 1 :: m])
    failed_rate = np.cumsum(~(rate < p.argo_error_threshold), 1)
    failed_p99 = np.cumsum(~(p99 < p.argo_p99_threshold_ms / 1000), 1)
    k = first_true(np.maximum(failed_rate, failed_p99) > p.argo_failure_limit)
    return np.where(k == NEVER, NEVER, (k + 1) * m - 1)


def _points(v: Version, per: int) -> tuple[FloatA, FloatA]:
    """Kayenta's series: per-point error rate and p99 (s)."""
    assert v.buckets is not None
    reps, steps = v.requests.shape
    k = steps // per
    req = v.requests[:, : k * per].reshape(reps, k, per).sum(-1)
    err = v.errors[:, : k * per].reshape(reps, k, per).sum(-1)
    b = v.buckets[:, : k * per].reshape(reps, k, per, -1).sum(2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return err / req, histogram_quantile(0.99, b)


def kayenta_run(canary: Version, baseline: Version, sim: Sim) -> IntA:
    p = sim.base
    per, every = sim.every(sim.kayenta_point_s), sim.every(p.kayenta_every_s)
    c_series, b_series = _points(canary, per), _points(baseline, per)
    alpha = 1 - p.kayenta_confidence
    first = np.full(canary.requests.shape[0], NEVER, dtype=np.int64)
    for t in range(every, sim.steps + 1, every):
        pts = t // per
        live = np.flatnonzero(first == NEVER)
        if pts < p.kayenta_min_points or live.size == 0:
            continue
        for c_all, b_all in zip(c_series, b_series, strict=True):
            c, b = c_all[live, :pts], b_all[live, :pts]
            with np.errstate(divide="ignore", invalid="ignore"):
                pval = sps.mannwhitneyu(c, b, axis=1, alternative="two-sided", method="asymptotic").pvalue
            for i in np.flatnonzero(pval < alpha):  # NaN (no variation, missing points): no judgment
                ci, bi = c[i][np.isfinite(c[i])], b[i][np.isfinite(b[i])]
                if first[live[i]] == NEVER and np.median(np.subtract.outer(ci, bi)) > 0:
                    first[live[i]] = t - 1
    return first


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Per method, the step it acted at per replicate; canary requests up to each step."""

    steps: dict[str, IntA]
    canary_cum_requests: IntA
    watch_test: npt.NDArray[np.str_]


def run_chunk(
    rng: np.random.Generator, sim: Sim, sc: Scenario, reps: int, params: CountTestParams, gates: CanaryGates
) -> Outcome:
    p = sim.base
    healthy = Scenario("stable", p.stable_error_rate, p.share_5xx, p.stable_scale_ms)
    canary_rps = p.total_rps * p.canary_share
    canary = simulate(rng, sim, reps, canary_rps, sc, buckets=True)
    stable = simulate(rng, sim, reps, p.total_rps - canary_rps, healthy, buckets=False)
    baseline = simulate(rng, sim, reps, canary_rps, healthy, buckets=True)
    watch, which = watch_run(canary, stable, params)
    every, once = fixed_run(canary, stable, params, sim)
    steps = {
        "watch": watch,
        "today_rules": today_rules_run(canary, gates, sim),
        "argo": argo_run(canary, sim),
        "kayenta": kayenta_run(canary, baseline, sim),
        "fixed_every_look": every,
        "fixed_once_at_end": once,
    }
    return Outcome(steps, np.cumsum(canary.requests, 1), which)


def run_scenario(
    sim: Sim, sc: Scenario, index: int, reps: int, seed: int, params: CountTestParams, gates: CanaryGates
) -> dict[str, Any]:
    t0 = time.perf_counter()
    parts: list[Outcome] = []
    for c, start in enumerate(range(0, reps, sim.chunk)):
        rng = np.random.default_rng([seed, index, c])
        parts.append(run_chunk(rng, sim, sc, min(sim.chunk, reps - start), params, gates))
    steps = {m: np.concatenate([o.steps[m] for o in parts]) for m in METHODS}
    cum = np.concatenate([o.canary_cum_requests for o in parts])
    which = np.concatenate([o.watch_test for o in parts])
    out: dict[str, Any] = {"replicates": reps, "wall_s": round(time.perf_counter() - t0, 1), "methods": {}}
    for m in METHODS:
        acted = steps[m] != NEVER
        at = steps[m][acted]
        requests = cum[np.flatnonzero(acted), at] if at.size else np.empty(0)
        seconds = (at + 1) * sim.base.step_s
        out["methods"][m] = {
            "acted": int(acted.sum()),
            "acted_rate": round(float(acted.mean()), 5),
            "acted_rate_ci95": wilson(int(acted.sum()), reps),
            "requests_median": _q(requests, 0.5),
            "requests_p90": _q(requests, 0.9),
            "seconds_median": _q(seconds, 0.5),
            "seconds_p90": _q(seconds, 0.9),
        }
    names, counts = np.unique(which[steps["watch"] != NEVER], return_counts=True)
    out["watch_rejections_by_test"] = {str(k): int(v) for k, v in zip(names, counts, strict=True)}
    print(f"  {sc.name}: {reps} replicates in {out['wall_s']} s", flush=True)
    return out


def _q(x: npt.NDArray[Any], q: float) -> float | None:
    return round(float(np.quantile(x, q)), 1) if x.size else None


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    """The Wilson score 95 % interval of a rate k/n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 5), round(min(1.0, centre + half), 5)]


def scenarios(p: Params) -> list[Scenario]:
    slow_scale = p.scale_for_p99_plus(300.0)
    return [
        Scenario("aa", p.stable_error_rate, p.share_5xx, p.stable_scale_ms),
        Scenario("errors_2x", 2 * p.stable_error_rate, p.share_5xx, p.stable_scale_ms),
        Scenario("errors_10x", 10 * p.stable_error_rate, p.share_5xx, p.stable_scale_ms),
        Scenario("failure_100pct", 1.0, 1.0, p.stable_scale_ms),
        Scenario("latency_p99_plus_300ms", p.stable_error_rate, p.share_5xx, slow_scale),
    ]


def summarize(raw: dict[str, dict[str, Any]]) -> dict[str, Any]:
    bad = [name for name in raw if name != "aa"]
    methods: dict[str, Any] = {}
    for m in METHODS:
        aa = raw["aa"]["methods"][m]
        methods[m] = {
            "aa_false_rollback_rate": aa["acted_rate"],
            "aa_false_rollback_ci95": aa["acted_rate_ci95"],
            "requests_to_detect_median": {s: raw[s]["methods"][m]["requests_median"] for s in bad},
            "requests_to_detect_p90": {s: raw[s]["methods"][m]["requests_p90"] for s in bad},
            "seconds_to_detect_median": {s: raw[s]["methods"][m]["seconds_median"] for s in bad},
            "seconds_to_detect_p90": {s: raw[s]["methods"][m]["seconds_p90"] for s in bad},
            "missed_rate": {s: round(1 - raw[s]["methods"][m]["acted_rate"], 5) for s in bad},
        }
    watch = methods["watch"]
    return {
        "aa_false_rollback_rate": watch["aa_false_rollback_rate"],
        "aa_false_rollback_ci95": watch["aa_false_rollback_ci95"],
        "requests_to_detect_2x_median": watch["requests_to_detect_median"].get("errors_2x"),
        "requests_to_detect_10x_median": watch["requests_to_detect_median"].get("errors_10x"),
        "requests_to_detect_100pct_failure_median": watch["requests_to_detect_median"].get("failure_100pct"),
        "requests_to_detect_latency_median": watch["requests_to_detect_median"].get("latency_p99_plus_300ms"),
        "methods": methods,
        "watch_rejections_by_test": {s: raw[s]["watch_rejections_by_test"] for s in raw},
    }


def environment() -> dict[str, Any]:
    """Machine, commit and load, recorded as the other benchmarks record them."""
    from benchmarks.phase1 import machine
    from harness.scenario.results import checkout_commit

    return {"machine": machine(), "commit": checkout_commit(REPO), "load_avg_before": _load()}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def parameters(
    sim: Sim, book: CanaryWatchRunbook, params: CountTestParams, gates: CanaryGates
) -> dict[str, Any]:
    p = sim.base
    slow_scale = p.scale_for_p99_plus(300.0)

    def sf(scale: float) -> float:
        return float(sps.gamma.sf(sim.slow_above_ms, p.gamma_shape, scale=scale))

    return {
        **{k: v for k, v in asdict(sim).items() if k != "base"},
        "traffic": asdict(p),
        "runbook": book.model_dump(mode="json"),
        "watch_test": params.model_dump(mode="json") | {"threshold": params.threshold, "channels": 1},
        "gates": gates.model_dump(mode="json"),
        "bucket_bounds_s": list(LATENCY_BUCKETS),
        "canary_p99_ms": {
            "stable": round(float(sps.gamma.ppf(0.99, p.gamma_shape, scale=p.stable_scale_ms)), 1),
            "latency_p99_plus_300ms": round(float(sps.gamma.ppf(0.99, p.gamma_shape, scale=slow_scale)), 1),
        },
        "slow_share": {"stable": sf(p.stable_scale_ms), "latency_p99_plus_300ms": sf(slow_scale)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--replicates", type=int, default=2000, help="A/A replicates (false rollbacks)")
    parser.add_argument("--bad-replicates", type=int, default=500, help="replicates per bad-canary scenario")
    parser.add_argument("--seed", type=int, default=Params().seed)
    parser.add_argument("--horizon-min", type=int, default=120)
    parser.add_argument("--slow-above-ms", type=float, default=750.0)
    parser.add_argument("--chunk", type=int, default=100, help="replicates simulated together")
    parser.add_argument("--runbook", type=Path, default=REPO / "runbooks" / "canary_watch.yaml")
    parser.add_argument("--out", type=Path, default=RESULTS / "canary_watch_sim.json")
    args = parser.parse_args(argv)
    if args.replicates < 1 or args.bad_replicates < 1 or args.chunk < 1:
        parser.error("--replicates, --bad-replicates and --chunk must be at least 1")

    base = replace(Params(seed=args.seed), step_s=5.0, horizon_min=args.horizon_min, look_every_s=60.0)
    sim = Sim(base, slow_above_ms=args.slow_above_ms, chunk=args.chunk)
    slow_index(sim)  # a bound that is no bucket bound fails here, before any work
    book = load_canary_watch(args.runbook)
    params = CountTestParams.from_runbook(book, channels=1)
    gates = load_runbooks().thresholds.gates_for("testbed")
    env = environment()
    started = time.perf_counter()
    raw: dict[str, dict[str, Any]] = {}
    for i, sc in enumerate(scenarios(base)):
        reps = args.replicates if sc.name == "aa" else args.bad_replicates
        print(f"scenario {sc.name}: {reps} replicates", flush=True)
        raw[sc.name] = run_scenario(sim, sc, i, reps, args.seed, params, gates)
    wall = time.perf_counter() - started
    result: dict[str, Any] = {
        "benchmark": "canary_watch_sim",
        "command": "benchmarks/canary_watch_sim.py "
        + f"--replicates {args.replicates} --bad-replicates {args.bad_replicates} --seed {args.seed} "
        + f"--horizon-min {args.horizon_min} --slow-above-ms {args.slow_above_ms:g} --chunk {args.chunk}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **env,
        "load_avg_after": _load(),
        "wall_s": round(wall, 1),
        "replicates": args.replicates,
        "bad_replicates": args.bad_replicates,
        "seed": args.seed,
        **summarize(raw),
        "goal": {"aa_false_rollback_rate": 0.005},
        "parameters": parameters(sim, book, params, gates),
        "scenarios": {
            name: {"replicates": r["replicates"], "wall_s": r["wall_s"]} for name, r in raw.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    brief = {k: result[k] for k in ("aa_false_rollback_rate", "requests_to_detect_2x_median", "wall_s")}
    print(
        json.dumps(brief | {m: v["aa_false_rollback_rate"] for m, v in result["methods"].items()}, indent=2)
    )
    print(f"wrote {args.out} in {wall:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
