"""Specs of the benchmarks that do not need the stack: ``decision`` (a simulation of the canary
decision against Argo- and Kayenta-style judges) and ``drift`` / ``drift_float64`` (the drift
statistics against Evidently, alibi-detect and a scipy loop)."""

from __future__ import annotations

from typing import Any

from harness.results_md.model import (
    Data,
    Figures,
    Section,
    bullets,
    code,
    fig,
    md_table,
    num,
    pct,
    prose,
    sci,
    text,
    times,
    when,
)

# --- decision ---

JUDGES = ("Triage24", "Argo-style", "Kayenta-style")


def _judged(label: str, key: str, **kw: Any) -> Any:
    """One figure per judge: ``key``, ``argo_<key>``, ``kayenta_<key>``."""
    head, _, rest = key.partition("/")
    paths = (
        key,
        f"argo_{head}" + (f"/{rest}" if rest else ""),
        f"kayenta_{head}" + (f"/{rest}" if rest else ""),
    )
    return fig(label, *paths, **kw)


def _plural(kind: str, n: int) -> str:
    return kind if n == 1 else kind + ("es" if kind.endswith("s") else "s")


def _actions(value: Any) -> str:
    if not isinstance(value, dict):
        return text(value)
    if not value:
        return "none"
    return ", ".join(f"{n} {_plural(k, n)}" for k, n in value.items())


def _rules(value: Any) -> str:
    if not isinstance(value, dict):
        return text(value)
    return ", ".join(f"`{k}` {n}" for k, n in value.items()) or "none"


def _evidence_cases(d: Data) -> str:
    rows = []
    for group, kind in (
        ("missing_data_by_scenario", "missing"),
        ("partial_data_by_scenario", "partial"),
        ("shared_degradation_by_scenario", "shared"),
    ):
        cases = d.get(group)
        for name, c in (cases if isinstance(cases, dict) else {}).items():
            rows.append(
                [
                    code(name),
                    kind,
                    text(c.get("trials")),
                    _actions(c.get("triage24")),
                    _rules(c.get("triage24_look_rules")),
                    _actions(c.get("argo")),
                    _actions(c.get("kayenta")),
                ]
            )
    headers = [
        "scenario",
        "evidence",
        "trials",
        "Triage24: actions",
        "Triage24: rules at its looks",
        *JUDGES[1:],
    ]
    return (
        "Evidence missing, partial or shared by both versions: what each judge did (an action is a "
        "rollback, a continue or a pass; Triage24's looks that ended `insufficient_evidence` are no "
        "action):\n\n" + md_table(headers, rows, right=[2])
    )


def _clopper_pearson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import beta

    lo = float(beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def _decision_reading(d: Data) -> str:
    lines = []
    rate, trials = d.get("false_rollback_rate"), d.get("scenarios/aa/trials")
    if isinstance(rate, int | float) and isinstance(trials, int):
        k = round(rate * trials)
        lo, hi = _clopper_pearson(k, trials)
        lines.append(
            f"Triage24's A/A false rollbacks: {k} of {trials:,}; 95 % Clopper-Pearson interval "
            f"{lo * 100:.2f}–{hi * 100:.2f} %."
        )
    for kind in ("errors_2x", "latency_p99_plus_300ms"):
        ours = d.get(f"requests_to_decide_median/{kind}")
        ratios, never = [], []
        for judge, prefix in (("Argo-style", "argo_"), ("Kayenta-style", "kayenta_")):
            other = d.get(f"{prefix}requests_to_decide_median/{kind}")
            if other is None:
                never.append(judge)
            elif isinstance(ours, int | float) and isinstance(other, int | float) and other:
                ratios.append(f"{ours / other:.2f}× {judge}'s")
        said = []
        if ratios:
            said.append("Triage24 decides with " + " and ".join(ratios) + " canary requests")
        if never:
            said.append(" and ".join(never) + " never decides it")
        if said:
            lines.append(f"`{kind}`: " + "; ".join(said) + ".")
    return "Computed from the table: " + " ".join(lines) if lines else ""


def _router_probes(d: Data) -> str:
    shares = d.get("router_probe_verdicts/by_misrouted_share")
    if not isinstance(shares, dict):
        return ""
    rows = []
    for share, v in shares.items():
        before: dict[str, Any] = next((x for k, x in v.items() if k.startswith("before")), {}) or {}
        now = v.get("now") or {}
        rows.append(
            [
                pct(0)(float(share)),
                *(pct(1)(before.get(k)) for k in ("ok", "failed")),
                *(pct(1)(now.get(k)) for k in ("ok", "failed", "insufficient")),
                num(1)(now.get("mean_probes")),
            ]
        )
    before_key = next((k for v in shares.values() for k in v if k.startswith("before")), "before")
    intro = d.fill(
        "The `router_dispatch` check's verdict on a router misrouting a share of requests, "
        "{router_probe_verdicts/trials:count} trials a share: the rule before "
        f"(`{before_key}`) against the check's (looks of {{router_probe_verdicts/rule/probes}} probes up "
        "to {router_probe_verdicts/rule/max_probes}, tolerance {router_probe_verdicts/rule/tolerance:pct0}, "
        "exact bounds at {router_probe_verdicts/rule/confidence:pct0}):"
    )
    headers = [
        "misrouted",
        "before: ok",
        "before: failed",
        "now: ok",
        "now: failed",
        "now: insufficient",
        "now: mean probes",
    ]
    return intro + "\n\n" + md_table(headers, rows, right=range(0, 7))


DECISION = Section(
    "decision",
    "Canary decision vs Argo-style and Kayenta-style judges",
    about=(
        "A simulation, not the stack (seed {parameters/seed}: a rerun gives the same figures): one "
        "channel at {parameters/total_rps:g} requests/s, {parameters/canary_share:pct0} to the canary, in "
        "{parameters/step_s:g} s steps for {parameters/horizon_min} minutes; Poisson requests, binomial "
        "errors ({parameters/stable_error_rate:pct0} on stable, {parameters/share_5xx:pct0} of them 5xx), "
        "gamma latencies (shape {parameters/gamma_shape:g}, scale {parameters/stable_scale_ms:g} ms: stable "
        "p99 {parameters/canary_p99_ms/stable:n1} ms); a request is SLA-slow above {parameters/sla_ms:g} "
        "ms. Every judge sees the same data (the scenarios and the judges in detail: the docstring of "
        "`benchmarks/decision.py`):",
    ),
    blocks=(
        bullets(
            "**Triage24**: `decide()` with `runbooks/decision.yaml` every {parameters/look_every_s:g} s over "
            "the counts since the canary started, plus the real canary gate over the trailing "
            "{parameters/gates/sustained_s:g} s with thresholds.yaml's default gates (p99 "
            "{parameters/gates/p99_latency_ms:g} ms, 5xx {parameters/gates/rate_5xx:pct1}, errors "
            "{parameters/gates/error_rate:pct0}, at least {parameters/gates/min_requests} requests); "
            "stable's {parameters/reference_min} minutes before the canary are the prior's reference window;",
            "**Argo-style** (AnalysisTemplate semantics): every {parameters/look_every_s:g} s, the canary's "
            "error rate and p99 over the last minute against `{parameters/argo_error_threshold:g}` and "
            "{parameters/argo_p99_threshold_ms:g} ms, `failureLimit: {parameters/argo_failure_limit}`, "
            "`consecutiveErrorLimit: {parameters/argo_consecutive_error_limit}`; no requests (NaN) fails the "
            "condition;",
            "**Kayenta-style** (NetflixACAJudge semantics): every {parameters/kayenta_every_s:g} s over the "
            "data since the start, a two-sided Mann-Whitney U test of per-step error rates and per-step p99 "
            "against a fresh baseline of the canary's size, at {parameters/kayenta_confidence:g} confidence, "
            "once both series have {parameters/kayenta_min_points} points; one failing metric of two scores "
            "below Kayenta's marginal threshold: rollback. A metric without data (NODATA) is left out.",
        ),
        Figures(
            (
                _judged(
                    "A/A false-rollback rate ({scenarios/aa/trials:count} trials)",
                    "false_rollback_rate",
                    fmt=pct(1),
                    goal="goal/false_rollback_rate",
                    bold=True,
                ),
                _judged(
                    "`errors_2x`: canary requests to decide, median",
                    "requests_to_decide_median/errors_2x",
                    fmt=num(0, sep=True, none="never", half=True),
                ),
                _judged(
                    "`errors_2x`: missed ({scenarios/errors_2x/trials:count} trials)",
                    "missed_rate/errors_2x",
                    fmt=pct(1),
                ),
                _judged(
                    "`latency_p99_plus_300ms` (p99 {parameters/canary_p99_ms/stable:n1} → "
                    "{parameters/canary_p99_ms/latency_p99_plus_300ms:n1} ms): canary requests to decide, "
                    "median",
                    "requests_to_decide_median/latency_p99_plus_300ms",
                    fmt=num(0, sep=True, none="never", half=True),
                ),
                _judged(
                    "`latency_p99_plus_300ms`: missed "
                    "({scenarios/latency_p99_plus_300ms/trials:count} trials)",
                    "missed_rate/latency_p99_plus_300ms",
                    fmt=pct(1),
                ),
            ),
            columns=JUDGES,
        ),
        _decision_reading,
        _evidence_cases,
        Figures(
            (
                fig(
                    "Triage24's actions where evidence was missing (`missing_data_actions`)",
                    "missing_data_actions",
                    fmt=num(0),
                    goal="goal/missing_data_actions",
                    op="=",
                ),
                fig(
                    "Triage24's actions on a degradation both versions share (`shared_degradation_actions`)",
                    "shared_degradation_actions",
                    fmt=num(0),
                    goal="goal/shared_degradation_actions",
                    op="=",
                ),
                fig(
                    "canary-only level-2 drift rolled back (`canary_only_rollback_rate`, "
                    "{scenarios/canary_only_drift_level2/trials} trials)",
                    "canary_only_rollback_rate",
                    fmt=pct(0),
                    goal="goal/canary_only_rollback_rate",
                    op="=",
                ),
                fig("A/A trials that asked a human at least once", "aa_human_asked_rate", fmt=pct(1)),
                fig(
                    "A/A canaries recommended for promotion to the next stage",
                    "aa_promotion_recommended_rate",
                    fmt=pct(1),
                ),
                fig(
                    "A/A canary requests until that recommendation, median",
                    "aa_requests_to_promotion_median",
                    fmt=num(0, sep=True),
                ),
                fig(
                    "`errors_2x` canaries recommended for promotion before their rollback",
                    "promoted_before_rollback_rate/errors_2x",
                    fmt=pct(1),
                ),
                fig(
                    "`latency_p99_plus_300ms` canaries recommended for promotion before their rollback",
                    "promoted_before_rollback_rate/latency_p99_plus_300ms",
                    fmt=pct(1),
                ),
                fig(
                    "rollback applied on the real stack, median (s)",
                    "rollback_applied_median_s",
                    fmt=num(1, none="not in this file: `rollback.json`"),
                ),
            )
        ),
        when("router_probe_verdicts", _router_probes),
    ),
)


# --- drift ---


def _drift_rounds(d: Data) -> str:
    rounds = d.get("rounds")
    if not isinstance(rounds, list):
        return ""
    workers = d.raw.get("workers", "–")
    rows = []
    for i, r in enumerate(rounds):
        loads = " → ".join(
            num(2)(r.get(k))
            for k in ("load_average_1m_before", "load_average_1m_after_triage24", "load_average_1m_after")
        )
        calls = " / ".join(f"{x:.2f}" for x in r.get("seconds_repeats") or [])
        rows.append(
            [
                str(i + 1),
                loads,
                f"**{num(2)(r.get('seconds'))}** ({calls})",
                num(1)(r.get("evidently_seconds")),
                times(1)(r.get("speedup_vs_evidently")),
                num(1)(r.get("alibi_detect_seconds")),
                times(1)(r.get("speedup_vs_alibi_detect")),
            ]
        )
    rows.append(
        [
            "**median**",
            "",
            f"**{num(2)(d.get('seconds'))}**",
            f"**{num(1)(d.get('evidently_seconds'))}**",
            f"**{times(1)(d.get('speedup_vs_evidently'))}**",
            f"**{num(1)(d.get('alibi_detect_seconds'))}**",
            f"**{times(1)(d.get('speedup_vs_alibi_detect'))}**",
        ]
    )
    headers = [
        "round",
        "1-min load: before → after Triage24 → end",
        f"Triage24, {workers} threads (s): median (calls)",
        "Evidently (s)",
        "speed-up",
        "alibi-detect (s)",
        "speed-up",
    ]
    return md_table(headers, rows, right=range(2, 7))


def _drift_other(d: Data) -> str:
    rounds = d.get("rounds")
    if not isinstance(rounds, list):
        return ""
    rows = []
    for i, r in enumerate(rounds):
        rows.append(
            [
                str(i + 1),
                num(2)(r.get("seconds_single_thread")),
                num(2)(r.get("seconds_sorted_reference")),
                num(2)(r.get("sort_reference_once_seconds")),
                num(1)(r.get("scipy_loop_seconds")) if "scipy_loop_seconds" in r else "–",
            ]
        )
    headers = [
        "round",
        "Triage24, one thread (s)",
        "reference given sorted (s)",
        "sorting the reference once (s)",
        "scipy loop (s)",
    ]
    return (
        "Other timings, all columns (KS statistic, KS p-value, Wasserstein); the scipy loop is "
        "`ks_2samp` + `wasserstein_distance` per column:\n\n" + md_table(headers, rows, right=range(1, 5))
    )


def _max_abs_diff(d: Data) -> str:
    diffs = d.get("max_abs_diff")
    if not isinstance(diffs, dict) or not diffs:
        return ""
    rows = [[code(against), code(k), sci(1)(v)] for against, kv in diffs.items() for k, v in kv.items()]
    return "Agreement (`max_abs_diff`):\n\n" + md_table(
        ["against", "figure", "max abs diff"], rows, right=[2]
    )


def _detected(d: Data) -> str:
    found = d.get("detected")
    if not isinstance(found, dict):
        return ""
    return (
        d.fill("Columns flagged (of {dims}; {shifted_dims} shifted): ")
        + ", ".join(f"`{k}` {v}" for k, v in found.items())
        + "."
    )


DRIFT_DATA = (
    "Reference and current windows of {rows:count} rows × {dims} dims, `{dtype}`, standard normal; the "
    "current window is shifted on {shifted_dims} dims; {workers} threads. Project: numpy "
    "{versions/numpy}, scipy {versions/scipy}. How the statistics are computed: "
    "`diagnostics/stats/drift.py`; how the comparison venvs are made: `benchmarks/README.md`."
)

DRIFT = Section(
    "drift",
    "Drift statistics: vectorised KS + Wasserstein vs Evidently, alibi-detect and a scipy loop",
    about=(
        DRIFT_DATA,
        "Evidently ({evidently}) and alibi-detect ({versions/alibi_detect_env/alibi_detect}, with numpy "
        "{versions/alibi_detect_env/numpy}, run by `{alibi_detect}`) run in venvs of their own, on the "
        "same arrays. Per round, "
        "Triage24 is timed first (median of {repeats} calls), then Evidently and alibi-detect right after "
        "it (one call each, so a round's ratio compares timings taken under the same load), then the "
        "other Triage24 variants, and in the first round the scipy loop. A figure is the median of the "
        "{runs} rounds.",
    ),
    blocks=(
        _drift_rounds,
        Figures(
            (
                fig(
                    "seconds, {workers} threads, median of the rounds",
                    "seconds",
                    fmt=num(2),
                    goal="goal/seconds",
                    bold=True,
                ),
                fig(
                    "speed-up vs Evidently",
                    "speedup_vs_evidently",
                    fmt=times(1),
                    goal="goal/speedup_vs_evidently",
                    op="≥",
                    bold=True,
                ),
                fig(
                    "speed-up vs alibi-detect (KS only on alibi's side)",
                    "speedup_vs_alibi_detect",
                    fmt=times(1),
                ),
                fig("speed-up vs the scipy loop", "speedup_vs_scipy_loop", fmt=times(1)),
                fig("Triage24, one thread (s)", "seconds_single_thread", fmt=num(2)),
                fig("Triage24, reference given sorted (s)", "seconds_sorted_reference", fmt=num(2)),
                fig("sorting the reference once (s)", "sort_reference_once_seconds", fmt=num(2)),
                fig("scipy loop (s)", "scipy_loop_seconds", fmt=num(1)),
            )
        ),
        when(
            "goal_met",
            prose(
                "The file's own verdict on the goals (`goal_met`): seconds {goal_met/seconds:text}, speed-up "
                "vs Evidently {goal_met/speedup_vs_evidently:text}."
            ),
        ),
        _drift_other,
        _max_abs_diff,
        prose(
            "The KS statistics are the same floats as scipy's and the p-values scipy's own calls, except "
            "the columns in the Smirnov-series branch, summed with numpy; Evidently's p-value is "
            "`ks_2samp`'s, its normalised W divides by pandas' float32 standard deviation; alibi-detect's "
            "`KSDrift` stores statistic and p-value as float32: equal to ours cast to float32."
        ),
        _detected,
        when(
            "cpu_seconds",
            prose(
                "CPU time (less disturbed by other jobs): Triage24 {cpu_seconds:n2} s, Evidently "
                "{evidently_cpu_seconds:n1} s, ratio {cpu_ratio_vs_evidently:x1}."
            ),
        ),
    ),
)


def _runs_fmt(value: Any) -> str:
    return " / ".join(f"{x:.2f}" for x in value) if isinstance(value, list) else text(value)


def _float64_vs_float32(d: Data) -> str:
    other = d.others.get("drift", {}).get("date")
    date = d.raw.get("date")
    if not isinstance(other, str) or not isinstance(date, str) or date >= other:
        return ""
    return (
        f"Recorded before `drift.json` ({other}): it measures the implementation of its own date, which "
        "may not be the current one."
    )


DRIFT_FLOAT64 = Section(
    "drift_float64",
    "Drift statistics on float64 data",
    about=(
        DRIFT_DATA,
        "Evidently: {evidently}. float64 keys take twice float32's radix passes.",
    ),
    blocks=(
        Figures(
            (
                fig(
                    "seconds, {workers} threads, median of the runs",
                    "seconds",
                    fmt=num(2),
                    goal="goal/seconds",
                    bold=True,
                ),
                fig("runs (s)", "seconds_runs", fmt=_runs_fmt),
                fig("one thread, median (s)", "seconds_single_thread", fmt=num(2)),
                fig("one thread, runs (s)", "seconds_single_thread_runs", fmt=_runs_fmt),
                fig("reference given sorted, median (s)", "seconds_sorted_reference", fmt=num(2)),
                fig("reference given sorted, runs (s)", "seconds_sorted_reference_runs", fmt=_runs_fmt),
                fig("sorting the reference once (s)", "sort_reference_once_seconds", fmt=num(2)),
                fig(
                    "speed-up vs Evidently",
                    "speedup_vs_evidently",
                    fmt=times(1),
                    goal="goal/speedup_vs_evidently",
                    op="≥",
                ),
            )
        ),
        _detected,
        _max_abs_diff,
        _float64_vs_float32,
    ),
)

SPECS = (DECISION, DRIFT, DRIFT_FLOAT64)
__all__ = ["SPECS"]
