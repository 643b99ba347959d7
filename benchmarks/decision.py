"""Benchmark: the canary decision against an Argo-style and a Kayenta-style judge, on the same
simulated request outcomes.

Simulation (numpy, fixed seed): one channel, 100 requests/s of which 5 % go to the canary, in 10 s
steps for ``--horizon-min`` minutes (30). Per step, requests are Poisson, errors binomial (10 % of
them 5xx), latencies gamma (shape 2, scale 90 ms: stable p99 597 ms); a request is SLA-slow above
``SLA_MS`` (800 ms). Stable's reference window (the canary's prior) is 30 minutes of stable at the
full 100 requests/s before the canary started.

Scenarios:

- ``aa``: a healthy canary, identical to stable -> false-rollback rate over ``--trials`` trials;
- ``errors_2x``: the canary's error rate is 2 % against stable's 1 %;
- ``latency_p99_plus_300ms``: the canary's gamma scale is raised so its p99 is 300 ms above stable's
  (897 ms: under the 1200 ms hard gate) -> requests to decide (median) and missed rate;
- ``missing_*``: no canary requests; Prometheus unreachable; a canary too small to judge (0.02 %,
  fewer than min_requests in 30 min) -> actions (any rollback, or a continue / pass), goal 0 for
  Triage24;
- ``partial_latency_histogram``: a healthy canary whose latency histogram is not exported (errors
  are measured) -> never a pass; a rollback can only come from the error evidence that is there;
- ``missing_phase2_*``, ``shared_*``, ``canary_only_drift_level2``: the A/A metrics with phase-2
  evidence missing, stale or crashed, a degradation both versions share, or drift on the canary
  alone (``benchmarks/decision_phase2.py``); every other scenario carries a phase 2 that passed.
  ``router_probe_verdicts`` replays the router_dispatch check's probe rule against the rule before.

Judges, each looking at the same data:

- **Triage24**: ``decide()`` every minute over the counts since the canary started (stable over the
  same time; the canary gate over the trailing 300 s and its recent half, by the real gate code, with
  thresholds.yaml's default gates), policy ``runbooks/decision.yaml``;
- **Argo-style** (Argo Rollouts AnalysisTemplate semantics): a measurement every minute of the
  canary's error rate over the last minute (``successCondition: result < 0.05``) and p99 over the
  last minute (``successCondition: result < 0.8`` s, the SLA latency); a metric fails when its
  failed measurements exceed ``failureLimit`` = 3 (a typical config; the default 0 aborts on the first
  failure). No data (0/0) is NaN and ``NaN < x`` is false: a failed measurement. A query error is an
  Error measurement; more than ``consecutiveErrorLimit`` = 4 (the default) in a row aborts;
- **Kayenta-style** (NetflixACAJudge semantics): every 5 minutes, over the data since the start,
  Mann-Whitney U (``scipy.stats.mannwhitneyu``, two-sided) of the canary's per-step error rates and
  per-step p99 latencies against a baseline of the same size (Kayenta's practice: a fresh baseline
  deployment with the canary's traffic share, here stable's distribution), at 0.98 confidence, once
  both series have >= 50 points; a metric is "High" when p < 0.02 and the Hodges-Lehmann shift is
  positive, and one High metric of two puts the score (50) under the marginal threshold (75): fail.

    .venv/bin/python benchmarks/decision.py [--trials 1000] [--bad-trials 500] [--missing-trials 100]
        [--probe-trials 20000]

Writes benchmarks/results/decision.json (false_rollback_rate, argo_false_rollback_rate,
kayenta_false_rollback_rate, requests_to_decide_median, kayenta_requests_to_decide_median,
missed_rate, missing_data_actions, shared_degradation_actions, canary_only_rollback_rate,
router_probe_verdicts, rollback_applied_median_s: null, per-scenario breakdowns and the parameters).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks.decision_phase2

from benchmarks.decision_phase2 import (
    CHANNEL,
    END,
    PHASE2_CHECKS,
    PHASE2_SCENARIOS,
    phase2_for,
    router_probe_verdicts,
)
from diagnostics.decision import (
    ChannelCounts,
    DecisionInputs,
    Phase1Evidence,
    Phase2Evidence,
    VersionCounts,
    decide,
)
from diagnostics.decision.model import Decision
from diagnostics.golden_window.canary_gate import (
    CanaryGateResult,
    GateVerdict,
    combine_gates,
    evaluate_channel_gate,
)
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.decision import DecisionPolicy, Outcome
from diagnostics.runbooks.schemas import CanaryGates
from diagnostics.sources.prometheus import WindowStats

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SLA_MS = 800.0
PHASE1 = Phase1Evidence(
    status=Status.OK,
    checks={
        c: Status.OK for c in ("health_snapshot", "model_integrity", "metrics_sla", "log_classification")
    },
)


@dataclass(frozen=True)
class Params:
    seed: int = 20261122
    step_s: float = 10.0
    horizon_min: int = 30
    total_rps: float = 100.0
    canary_share: float = 0.05
    stable_error_rate: float = 0.01
    share_5xx: float = 0.1
    gamma_shape: float = 2.0
    stable_scale_ms: float = 90.0
    sla_ms: float = SLA_MS
    reference_min: int = 30
    look_every_s: float = 60.0
    argo_error_threshold: float = 0.05
    argo_p99_threshold_ms: float = SLA_MS
    argo_failure_limit: int = 3
    argo_consecutive_error_limit: int = 4
    kayenta_every_s: float = 300.0
    kayenta_confidence: float = 0.98
    kayenta_min_points: int = 50

    @property
    def steps(self) -> int:
        return int(self.horizon_min * 60 / self.step_s)

    @property
    def look_steps(self) -> int:
        return int(self.look_every_s / self.step_s)

    def scale_for_p99_plus(self, plus_ms: float) -> float:
        """The gamma scale that puts the p99 ``plus_ms`` above stable's (p99 is linear in the scale)."""
        p99 = float(sps.gamma.ppf(0.99, self.gamma_shape, scale=self.stable_scale_ms))
        return self.stable_scale_ms * (p99 + plus_ms) / p99


@dataclass(frozen=True)
class Scenario:
    name: str
    canary_error_rate: float
    canary_scale_ms: float
    canary_share: float
    prometheus_down: bool = False
    no_histogram: bool = False
    phase2: str = "healthy"  # see phase2_for


@dataclass
class Series:
    """One version's per-step figures."""

    requests: np.ndarray
    errors: np.ndarray
    errors_5xx: np.ndarray
    slow: np.ndarray
    latencies: list[np.ndarray]  # per step, ms (canary and baseline only)
    step_p99: np.ndarray  # per step, ms, NaN for a step without requests (canary and baseline only)


def simulate_version(
    rng: np.random.Generator, p: Params, rps: float, error_rate: float, scale_ms: float, keep_latencies: bool
) -> Series:
    n = rng.poisson(rps * p.step_s, p.steps)
    errors = rng.binomial(n, error_rate)
    e5 = rng.binomial(errors, p.share_5xx)
    lat = rng.gamma(p.gamma_shape, scale_ms, int(n.sum()))
    step_of = np.repeat(np.arange(p.steps), n)
    slow = np.bincount(step_of[lat > p.sla_ms], minlength=p.steps)
    if not keep_latencies:
        return Series(n, errors, e5, slow, [], np.empty(0))
    per_step = np.split(lat, np.cumsum(n)[:-1])
    padded = np.full((p.steps, max(1, int(n.max()))), np.nan)
    padded[step_of, np.arange(lat.size) - np.repeat(np.cumsum(n) - n, n)] = lat
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: steps without requests
        step_p99 = np.nanquantile(padded, 0.99, axis=1)
    return Series(n, errors, e5, slow, per_step, step_p99)


def p99(latencies: list[np.ndarray], lo: int, hi: int) -> float | None:
    window = [x for x in latencies[lo:hi] if x.size]
    return float(np.quantile(np.concatenate(window), 0.99)) if window else None


# --- the judges -----------------------------------------------------------------------------------


def triage24_gate(
    gates: CanaryGates, canary: Series, t: int, p: Params, no_histogram: bool
) -> CanaryGateResult:
    trailing_steps = int(gates.sustained_s / p.step_s)
    lo, mid = max(0, t - trailing_steps), max(0, t - trailing_steps // 2)

    def stats(a: int, window_s: float) -> WindowStats:
        return WindowStats(
            version="canary",
            channel=CHANNEL,
            end=END,
            window_s=window_s,
            requests=float(canary.requests[a:t].sum()),
            errors=float(canary.errors[a:t].sum()),
            errors_5xx=float(canary.errors_5xx[a:t].sum()),
            latency_ms={"p99": None if no_histogram else p99(canary.latencies, a, t)},
        )

    channel = evaluate_channel_gate(
        gates, CHANNEL, stats(lo, gates.sustained_s), stats(mid, gates.sustained_s / 2)
    )
    return combine_gates(gates, [channel])


def triage24_look(
    policy: DecisionPolicy,
    gates: CanaryGates,
    sc: Scenario,
    series: tuple[Series, Series],
    reference: tuple[float, float, float],
    t: int,
    p: Params,
    phase2: Phase2Evidence | None,
) -> Decision:
    canary, stable = series
    suspect = "stable" if sc.name.startswith("shared") else None  # the incident names stable
    incident: dict[str, Any] = {"incident_id": "bench", "target": "bench", "analysed_at": END}
    incident.update(suspected_version=suspect, phase2=phase2)
    if sc.prometheus_down:
        reason = "cannot reach Prometheus at http://127.0.0.1:9090: ConnectionError: Connection refused"
        inputs = DecisionInputs(
            **incident,
            canary_weight_percent=p.canary_share * 100,
            metrics_status=Status.INSUFFICIENT_EVIDENCE,
            metrics_summary=f"bench: no metrics: {reason}",
            gate=CanaryGateResult(
                verdict=GateVerdict.INSUFFICIENT_EVIDENCE,
                sustained_s=gates.sustained_s,
                min_requests=gates.min_requests,
                reason=reason,
            ),
            phase1=PHASE1.model_copy(
                update={"checks": {**PHASE1.checks, "metrics_sla": Status.INSUFFICIENT_EVIDENCE}}
            ),
        )
        return decide(inputs, policy)

    def counts(s: Series) -> VersionCounts:
        return VersionCounts(
            requests=float(s.requests[:t].sum()),
            errors=float(s.errors[:t].sum()),
            slow_requests=None if sc.no_histogram else float(s.slow[:t].sum()),
        )

    ref_n, ref_err, ref_slow = reference
    inputs = DecisionInputs(
        **incident,
        canary_weight_percent=p.canary_share * 100,
        metrics_status=Status.OK,
        gate=triage24_gate(gates, canary, t, p, sc.no_histogram),
        channels=[
            ChannelCounts(
                channel=CHANNEL,
                canary=counts(canary),
                stable=counts(stable),
                stable_reference=VersionCounts(
                    requests=ref_n, errors=ref_err, slow_requests=None if sc.no_histogram else ref_slow
                ),
            )
        ],
        phase1=PHASE1,
    )
    return decide(inputs, policy)


def argo_run(sc: Scenario, canary: Series, p: Params) -> tuple[str | None, int | None]:
    """The Argo-style analysis: ('rollback' | 'pass', canary requests then) or (None, None)."""
    failed = {"error_rate": 0, "p99": 0}
    consecutive_errors = 0
    look = p.look_steps
    for t in range(look, p.steps + 1, look):
        if sc.prometheus_down:
            consecutive_errors += 1  # every query errors
            if consecutive_errors > p.argo_consecutive_error_limit:
                return "rollback", 0
            continue
        n = canary.requests[t - look : t].sum()
        rate = canary.errors[t - look : t].sum() / n if n > 0 else float("nan")
        q = None if sc.no_histogram else p99(canary.latencies, t - look, t)
        q_s = q / 1000 if q is not None else float("nan")
        if not rate < p.argo_error_threshold:  # NaN compares false: a failed measurement
            failed["error_rate"] += 1
        if not q_s < p.argo_p99_threshold_ms / 1000:
            failed["p99"] += 1
        if max(failed.values()) > p.argo_failure_limit:
            return "rollback", int(canary.requests[:t].sum())
    return "pass", int(canary.requests.sum())  # Successful: the rollout proceeds


def hodges_lehmann(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.median(np.subtract.outer(x, y)))


def kayenta_run(sc: Scenario, canary: Series, baseline: Series, p: Params) -> tuple[str | None, int | None]:
    """The Kayenta-style judge: ('rollback' | 'pass', canary requests then) or (None, None).

    Prometheus down: every metric fetch fails, no judgment. No latency histogram: the p99 metric is
    NODATA and left out of the score, the error metric alone is judged."""
    if sc.prometheus_down:
        return None, None
    every = int(p.kayenta_every_s / p.step_s)
    alpha = 1 - p.kayenta_confidence
    judged = False
    for t in range(every, p.steps + 1, every):
        c_ok, b_ok = canary.requests[:t] > 0, baseline.requests[:t] > 0
        if c_ok.sum() < p.kayenta_min_points or b_ok.sum() < p.kayenta_min_points:
            continue  # NODATA: no judgment
        judged = True
        c_rate = canary.errors[:t][c_ok] / canary.requests[:t][c_ok]
        b_rate = baseline.errors[:t][b_ok] / baseline.requests[:t][b_ok]
        c_p99, b_p99 = canary.step_p99[:t][c_ok], baseline.step_p99[:t][b_ok]
        metrics = [(c_rate, b_rate)] if sc.no_histogram else [(c_rate, b_rate), (c_p99, b_p99)]
        for c, b in metrics:
            if np.ptp(np.r_[c, b]) == 0:
                continue  # all equal: no difference to test
            pvalue = sps.mannwhitneyu(c, b, alternative="two-sided").pvalue
            if pvalue < alpha and hodges_lehmann(c, b) > 0:
                return "rollback", int(canary.requests[:t].sum())
    return ("pass", int(canary.requests.sum())) if judged else (None, None)


# --- the scenarios --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """Triage24 over one trial: its first action and the canary requests then."""

    action: str  # rollback | continue (a pass, where evidence is missing) | none (no action by the horizon)
    requests: int
    promoted_at: int | None  # canary requests when a promotion was first recommended
    asked: bool  # a look answered insufficient_evidence: a human was asked


def run_scenario(
    sc: Scenario, trials: int, p: Params, policy: DecisionPolicy, gates: CanaryGates, rng: np.random.Generator
) -> dict[str, Any]:
    t0 = time.perf_counter()
    tri: list[Trial] = []
    phase2 = phase2_for(sc.phase2, PHASE2_CHECKS)
    # where evidence is missing or a degradation is shared, a continue is a pass: an action too
    evidence_missing = sc.name.startswith(("missing", "partial", "shared"))
    argo: list[tuple[str | None, int | None]] = []
    kay: list[tuple[str | None, int | None]] = []
    outcomes: dict[str, int] = {}
    rules: dict[str, int] = {}
    for trial in range(trials):
        canary = simulate_version(
            rng,
            p,
            p.total_rps * sc.canary_share,
            sc.canary_error_rate,
            sc.canary_scale_ms,
            keep_latencies=True,
        )
        stable = simulate_version(
            rng, p, p.total_rps * (1 - p.canary_share), p.stable_error_rate, p.stable_scale_ms, False
        )
        baseline = simulate_version(
            rng, p, p.total_rps * sc.canary_share, p.stable_error_rate, p.stable_scale_ms, keep_latencies=True
        )
        ref_n = float(rng.poisson(p.total_rps * p.reference_min * 60))
        sf = float(sps.gamma.sf(p.sla_ms, p.gamma_shape, scale=p.stable_scale_ms))
        reference = (
            ref_n,
            float(rng.binomial(int(ref_n), p.stable_error_rate)),
            float(rng.binomial(int(ref_n), sf)),
        )
        first: str | None = None
        promoted: int | None = None
        asked = False
        t = p.steps
        for t in range(p.look_steps, p.steps + 1, p.look_steps):
            d = triage24_look(policy, gates, sc, (canary, stable), reference, t, p, phase2)
            outcomes[d.outcome.value] = outcomes.get(d.outcome.value, 0) + 1
            rules[d.rule] = rules.get(d.rule, 0) + 1
            asked = asked or d.outcome is Outcome.INSUFFICIENT_EVIDENCE
            if d.outcome is Outcome.ROLLBACK or (d.outcome is Outcome.CONTINUE and evidence_missing):
                first = d.outcome.value  # where evidence is missing, a continue is a pass: an action too
                break
            if d.outcome is Outcome.CONTINUE and promoted is None and d.promote_to is not None:
                promoted = int(canary.requests[:t].sum())
        tri.append(Trial(first or "none", int(canary.requests[:t].sum()), promoted, asked))
        argo.append(argo_run(sc, canary, p))
        kay.append(kayenta_run(sc, canary, baseline, p))
        if (trial + 1) % max(1, trials // 5) == 0:
            print(f"  {sc.name}: {trial + 1}/{trials} trials, {time.perf_counter() - t0:.1f} s", flush=True)
    return {
        "trials": trials,
        "wall_s": round(time.perf_counter() - t0, 1),
        "triage24": tri,
        "argo": argo,
        "kayenta": kay,
        "look_outcomes": outcomes,
        "look_rules": rules,
    }


def _rate(xs: list[Any], pred: Any) -> float:
    return round(sum(1 for x in xs if pred(x)) / len(xs), 4) if xs else 0.0


def _median(xs: list[int]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def _actions(results: list[Any], action: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        a = action(r)
        if a is not None and a != "none":
            counts[a] = counts.get(a, 0) + 1
    return counts


def summarize(
    raw: dict[str, dict[str, Any]], bad: list[str], missing: list[str], partial: list[str], shared: list[str]
) -> dict[str, Any]:
    aa = raw["aa"]
    tri_aa: list[Trial] = aa["triage24"]
    out: dict[str, Any] = {
        "false_rollback_rate": _rate(tri_aa, lambda x: x.action == "rollback"),
        "argo_false_rollback_rate": _rate(aa["argo"], lambda x: x[0] == "rollback"),
        "kayenta_false_rollback_rate": _rate(aa["kayenta"], lambda x: x[0] == "rollback"),
        "aa_human_asked_rate": _rate(tri_aa, lambda x: x.asked),
        "aa_promotion_recommended_rate": _rate(tri_aa, lambda x: x.promoted_at is not None),
        "aa_requests_to_promotion_median": _median(
            [x.promoted_at for x in tri_aa if x.promoted_at is not None]
        ),
        "requests_to_decide_median": {},
        "argo_requests_to_decide_median": {},
        "kayenta_requests_to_decide_median": {},
        "missed_rate": {},
        "argo_missed_rate": {},
        "kayenta_missed_rate": {},
        "promoted_before_rollback_rate": {},
        "missing_data_actions": 0,
        "shared_degradation_actions": 0,
        "canary_only_rollback_rate": None,
        "missing_data_by_scenario": {},
        "partial_data_by_scenario": {},
        "shared_degradation_by_scenario": {},
    }
    for name in bad:
        r = raw[name]
        tri: list[Trial] = r["triage24"]
        out["requests_to_decide_median"][name] = _median([x.requests for x in tri if x.action == "rollback"])
        out["argo_requests_to_decide_median"][name] = _median([x[1] for x in r["argo"] if x[0] == "rollback"])
        out["kayenta_requests_to_decide_median"][name] = _median(
            [x[1] for x in r["kayenta"] if x[0] == "rollback"]
        )
        out["missed_rate"][name] = _rate(tri, lambda x: x.action != "rollback")
        out["argo_missed_rate"][name] = _rate(r["argo"], lambda x: x[0] != "rollback")
        out["kayenta_missed_rate"][name] = _rate(r["kayenta"], lambda x: x[0] != "rollback")
        out["promoted_before_rollback_rate"][name] = _rate(tri, lambda x: x.promoted_at is not None)
    groups = (
        ("missing_data_by_scenario", missing),
        ("partial_data_by_scenario", partial),
        ("shared_degradation_by_scenario", shared),
    )
    for key, names in groups:
        for name in names:
            r = raw[name]
            out[key][name] = {
                "trials": r["trials"],
                "triage24": _actions(r["triage24"], lambda x: x.action),
                "triage24_look_rules": r["look_rules"],
                "argo": _actions(r["argo"], lambda x: x[0]),
                "kayenta": _actions(r["kayenta"], lambda x: x[0]),
            }
    for key in ("missing_data", "shared_degradation"):
        out[f"{key}_actions"] = sum(sum(v["triage24"].values()) for v in out[f"{key}_by_scenario"].values())
    if "canary_only_drift_level2" in raw:
        own: list[Trial] = raw["canary_only_drift_level2"]["triage24"]
        out["canary_only_rollback_rate"] = _rate(own, lambda x: x.action == "rollback")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=1000, help="A/A trials (false-rollback rate)")
    parser.add_argument("--bad-trials", type=int, default=500, help="trials per bad-canary scenario")
    parser.add_argument("--missing-trials", type=int, default=100, help="trials per missing-data scenario")
    parser.add_argument("--probe-trials", type=int, default=20000, help="router probe runs per share")
    parser.add_argument("--out", type=Path, default=RESULTS / "decision.json")
    args = parser.parse_args()

    p = Params()
    books = load_runbooks()
    policy, gates = books.decision, books.thresholds.canary_gates
    rng = np.random.default_rng(p.seed)
    slow_scale = p.scale_for_p99_plus(300.0)
    aa = (p.stable_error_rate, p.stable_scale_ms, p.canary_share)
    scenarios = [
        (Scenario("aa", *aa), args.trials),
        (Scenario("errors_2x", 2 * p.stable_error_rate, p.stable_scale_ms, p.canary_share), args.bad_trials),
        (
            Scenario("latency_p99_plus_300ms", p.stable_error_rate, slow_scale, p.canary_share),
            args.bad_trials,
        ),
        (
            Scenario("missing_no_canary_requests", p.stable_error_rate, p.stable_scale_ms, 0.0),
            args.missing_trials,
        ),
        (
            Scenario("missing_prometheus_down", p.stable_error_rate, p.stable_scale_ms, p.canary_share, True),
            args.missing_trials,
        ),
        (
            Scenario("missing_canary_too_small", p.stable_error_rate, p.stable_scale_ms, 0.0002),
            args.missing_trials,
        ),
        (Scenario("partial_latency_histogram", *aa, no_histogram=True), args.missing_trials),
    ]
    scenarios += [(Scenario(name, *aa, phase2=kind), args.missing_trials) for name, kind in PHASE2_SCENARIOS]
    started = time.perf_counter()
    raw: dict[str, dict[str, Any]] = {}
    for sc, trials in scenarios:
        print(f"scenario {sc.name}: {trials} trials", flush=True)
        raw[sc.name] = run_scenario(sc, trials, p, policy, gates, rng)
    bad = ["errors_2x", "latency_p99_plus_300ms"]
    missing = [sc.name for sc, _ in scenarios if sc.name.startswith("missing")]
    partial = [sc.name for sc, _ in scenarios if sc.name.startswith("partial")]
    shared = [sc.name for sc, _ in scenarios if sc.name.startswith("shared")]
    figures = summarize(raw, bad, missing, partial, shared)
    figures["router_probe_verdicts"] = router_probe_verdicts(args.probe_trials, rng)
    wall = time.perf_counter() - started
    result: dict[str, Any] = {
        "benchmark": "decision",
        "command": "benchmarks/decision.py "
        + f"--trials {args.trials} --bad-trials {args.bad_trials} --missing-trials {args.missing_trials} "
        + f"--probe-trials {args.probe_trials}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "wall_s": round(wall, 1),
        **figures,
        "rollback_applied_median_s": None,  # measured by the lead on the real stack
        "goal": {
            "false_rollback_rate": 0.005,
            "missing_data_actions": 0,
            "shared_degradation_actions": 0,
            "canary_only_rollback_rate": 1.0,
        },
        "parameters": {
            **asdict(p),
            "canary_p99_ms": {
                "stable": round(float(sps.gamma.ppf(0.99, p.gamma_shape, scale=p.stable_scale_ms)), 1),
                "latency_p99_plus_300ms": round(
                    float(sps.gamma.ppf(0.99, p.gamma_shape, scale=slow_scale)), 1
                ),
            },
            "slow_share": {
                "stable": float(sps.gamma.sf(p.sla_ms, p.gamma_shape, scale=p.stable_scale_ms)),
                "latency_p99_plus_300ms": float(sps.gamma.sf(p.sla_ms, p.gamma_shape, scale=slow_scale)),
            },
            "policy": policy.model_dump(mode="json"),
            "gates": gates.model_dump(mode="json"),
        },
        "scenarios": {
            name: {
                "trials": r["trials"],
                "wall_s": r["wall_s"],
                "triage24_look_outcomes": r["look_outcomes"],
                "triage24_look_rules": r["look_rules"],
            }
            for name, r in raw.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("parameters", "scenarios")}, indent=2))
    print(f"wrote {args.out} in {wall:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
