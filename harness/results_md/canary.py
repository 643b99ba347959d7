"""The spec of ``canary_watch_sim`` (issue 20): the canary watch's anytime-valid tests against today's
Prometheus gates, Argo-, Kayenta-style and fixed-horizon checks on the same simulated traffic."""

from __future__ import annotations

from typing import Any

from harness.results_md.model import Data, Figures, Section, fig, md_table, num, pct

METHODS = (
    ("watch", "canary watch (mixture e-process)"),
    ("today_rules", "today's canary gate alerts"),
    ("argo", "Argo-style"),
    ("kayenta", "Kayenta-style"),
    ("fixed_every_look", "fixed-horizon test at every look"),
    ("fixed_once_at_end", "fixed-horizon test once, at the end"),
)
EFFECTS = ("errors_2x", "errors_10x", "failure_100pct", "latency_p99_plus_300ms")


def _ci(value: Any) -> str:
    if not isinstance(value, list) or len(value) != 2:
        return "–"
    return f"{pct(2)(value[0])} – {pct(2)(value[1])}"


def _detect(m: dict[str, Any], effect: str) -> str:
    reqs = (m.get("requests_to_detect_median") or {}).get(effect)
    secs = (m.get("seconds_to_detect_median") or {}).get(effect)
    missed = (m.get("missed_rate") or {}).get(effect)
    if reqs is None or (missed is not None and missed >= 1):
        return "never"  # a median over the runs that did detect, when some did
    out = f"{num(0, sep=True, half=True)(reqs)} ({num(0)(secs)} s)"
    return out + (f", missed {pct(1)(missed)}" if missed else "")


def _methods_table(d: Data) -> str:
    methods = d.get("methods")
    if not isinstance(methods, dict):
        return ""
    intro = d.fill(
        "A/A: {replicates:count} runs of {parameters/traffic/horizon_min} minutes of a healthy canary; "
        "each bad canary {bad_replicates:count} runs. Canary requests (and seconds) until the method "
        "acts, median of the runs in which it did; `missed`: runs in which it never did."
    )
    headers = ["method", "A/A false rollbacks", "95 % CI", *(f"`{e}`" for e in EFFECTS)]
    rows = []
    for key, label in METHODS:
        m = methods.get(key)
        if not isinstance(m, dict):
            continue
        rows.append(
            [
                label,
                pct(2)(m.get("aa_false_rollback_rate")),
                _ci(m.get("aa_false_rollback_ci95")),
                *(_detect(m, e) for e in EFFECTS),
            ]
        )
    return intro + "\n\n" + md_table(headers, rows, right=range(1, 3 + len(EFFECTS)))


CANARY_WATCH_SIM = Section(
    "canary_watch_sim",
    "Canary watch: anytime-valid tests vs today's gates, Argo, Kayenta (simulation)",
    about=(
        "A simulation, not the stack (`benchmarks/canary_watch_sim.py`, seed {seed}): one channel at "
        "{parameters/traffic/total_rps:g} requests/s, {parameters/traffic/canary_share:pct0} to the canary, "
        "stable errors {parameters/traffic/stable_error_rate:pct0} ({parameters/traffic/share_5xx:pct0} of "
        "them 5xx), looks every {parameters/eval_every_s:g} s for {parameters/traffic/horizon_min} minutes. "
        "The watch runs its three tests (errors, 5xx, SLA-slow above {parameters/slow_above_ms:g} ms) at "
        "level {parameters/watch_test/alpha:g} each (e-value bound {parameters/watch_test/threshold:g}): "
        "by Ville's inequality a healthy canary is rejected with probability at most "
        "{parameters/runbook/alpha:g} over any number of looks (the runbook splits it over all channels and "
        "its tests). Today's gates are the Prometheus rules of `deploy/prometheus/rules/testbed.yml` "
        "(windows of {parameters/rule_window_s:g} s, at least {parameters/gates/min_requests} requests, "
        "`for` {parameters/gates/sustained_s:g} s) and count when "
        "the gate ALERT fires: in the pipeline, phase 1 then rolls back only a breach its own "
        "significance test backs (`decision/policy.py`), so their A/A figure is a rate of pages and "
        "fast-path candidates, not of rollbacks; nor does it include the time from the alert to the "
        "rollback (Alertmanager, the intake, phase 1).",
    ),
    blocks=(_methods_table,),
)


def _live_table(d: Data) -> str:
    rows_in = d.get("scenarios")
    if not isinstance(rows_in, dict):
        return ""
    secs = num(1, unit="s")
    rows = []
    for name, modes in rows_in.items():
        base, watch = modes.get("baseline") or {}, modes.get("watch") or {}
        w = watch.get("watch") or {}
        verdict = w.get("outcome") or "–"
        if verdict == "rejected":
            verdict = (
                f"rejected: {w.get('channel')}/{w.get('test')}, e = {num(0, sep=True)(w.get('e_value'))}"
            )
        rows.append(
            [
                f"`{name}`",
                secs(base.get("fault_to_rollback_s")) if base else "not run",
                secs(watch.get("fault_to_rollback_s")) if watch.get("rollback") else "no rollback",
                verdict,
                ", ".join(watch.get("opened_by") or []) or "–",
                str(watch.get("status", "–")),
            ]
        )
    headers = [
        "scenario",
        "today: fault → weight zero",
        "with the watch",
        "the watch",
        "incident opened by",
        "scenario",
    ]
    return md_table(headers, rows, right=(1, 2))


CANARY_WATCH_LIVE = Section(
    "canary_watch",
    "Canary watch on the live stack: fault to rollback, with and without it",
    about=(
        "The local stack (`benchmarks/canary_watch_live.py`, one stack, one commit): each hard-fault "
        "scenario runs as today (Prometheus rules, Alertmanager, the intake, the fast path) and again "
        "with the canary watch looking from its warm-up on; the healthy controls run with the watch. "
        "Times run from the fault in place to the canary's weight at zero. The A/A rate and the "
        "requests to detect doubled errors are the simulation's, run by the same command on the same "
        "commit (`{simulation}`).",
        "A rejection needs enough canary events to outweigh its bound: at an even split, a test at level "
        "alpha / (channels × tests) needs at least the binary logarithm of its bound in events even "
        "when every event is the canary's, so the seconds to a rejection are set by the canary's "
        "failure rate (the scenarios send a few requests a second), not by the look interval.",
    ),
    blocks=(
        Figures(
            (
                fig(
                    "fault → weight zero with the watch, median (s)",
                    "fault_to_rollback_median_s",
                    fmt=num(1),
                    goal="goal/fault_to_rollback_median_s",
                    bold=True,
                ),
                fig(
                    "the same with today's rules, same run (s)",
                    "baseline_fault_to_rollback_median_s",
                    fmt=num(1),
                ),
                fig(
                    "rollbacks of a healthy canary",
                    "healthy_rollbacks",
                    fmt=num(0),
                    goal="goal/healthy_rollbacks",
                    op="=",
                ),
                fig(
                    "silent fault → incident, median (s)",
                    "silent_to_incident_median_s",
                    fmt=num(1, none="not measured"),
                    goal="goal/silent_to_incident_median_s",
                ),
                fig("A/A false rollbacks (simulation)", "aa_false_rollback_rate", fmt=pct(2), goal=0.005),
                fig(
                    "canary requests to detect doubled errors (simulation)",
                    "requests_to_detect_2x_median",
                    fmt=num(0, sep=True, half=True),
                ),
            )
        ),
        _live_table,
    ),
)

SPECS = (CANARY_WATCH_SIM, CANARY_WATCH_LIVE)

__all__ = ["CANARY_WATCH_LIVE", "CANARY_WATCH_SIM", "SPECS"]
