"""Benchmark: the canary watch on the live local stack, against today's alert rules in the same run.

On one stack (started by the scenario runner, as ``triage24 scenario run`` does), every hard-fault
scenario runs twice back to back: once as today (Prometheus rules -> Alertmanager -> intake -> fast
path) and once with the canary watch looking from the warm-up on (``scenario run --canary-watch``:
a ``CanaryWatchRejected`` alert opens the incident). Then the healthy controls run with the watch on
(a rollback there is a false one), and last the simulation (``benchmarks/canary_watch_sim.py``) on
the same commit, for the A/A false-rollback rate and the requests to detect 2x errors.

    .venv/bin/python benchmarks/canary_watch_live.py [--home DIR] [--replicates 2000]

Writes ``benchmarks/results/canary_watch.json`` (from a clean checkout only; a dirty one writes to
``--out`` alone) and ``benchmarks/results/canary_watch_sim.json``; every scenario's observation goes to
``--out``/{baseline,watch}/<name>.json.

- ``fault_to_rollback_median_s`` / ``baseline_fault_to_rollback_median_s``: seconds from the fault in
  place to the canary's weight 0, the watch's scenarios and today's; per scenario in ``scenarios``;
- ``healthy_rollbacks``: rollbacks in the healthy controls with the watch on (the goal: 0);
- ``aa_false_rollback_rate``, ``requests_to_detect_2x_median``: the simulation's;
- ``silent_to_incident_median_s`` and ``probe_cpu_share``: null, with the reason, until the golden
  probes exist.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import canary_watch_sim  # noqa: E402  (a sibling script, not a package)

from diagnostics.config import Settings  # noqa: E402
from harness.scenario.results import ScenarioOutcome, checkout_commit, machine, write_json  # noqa: E402
from harness.scenario.runner import SuiteRunner  # noqa: E402
from harness.scenario.schema import load_scenario  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SCENARIOS = REPO / "benchmarks" / "scenarios"
FAULTS = ["error_burst_canary", "cuda_oom_canary", "latency_spike_canary", "model_not_loaded"]
HEALTHY = ["healthy_control", "healthy_noisy_latency"]
NO_PROBES = "golden probes for silent faults are not built yet (issue 20 §3): not measured"


def _say(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _row(o: ScenarioOutcome) -> dict[str, Any]:
    obs, t = o.observation, o.score.timings
    primary = obs.primary_run()
    w = obs.canary_watch
    return {
        "status": o.score.status,
        "failed": [f"{e.name}: expected {e.expected}, observed {e.observed}" for e in o.score.failed],
        "errors": obs.errors,
        "opened_by": primary.alert_names[:3] if primary is not None else [],
        "decision_rule": primary.decision_rule if primary is not None else None,
        "rollback": any(r.rollback_outcome == "applied" for r in obs.runs),
        "fault_to_rollback_s": t.get("fault_to_rollback_s"),
        "detection_s": t.get("detection_s"),
        "rollback_applied_s": t.get("rollback_applied_s"),
        "watch": None
        if w is None
        else {k: getattr(w, k) for k in ("outcome", "channel", "test", "evidence", "e_value", "threshold")},
    }


def run_live(runner: SuiteRunner, out: Path, faults: list[str], healthy: list[str]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    plan: list[tuple[str, bool]] = []
    for name in faults:
        plan += [(name, False), (name, True)]
    plan += [(name, True) for name in healthy]
    for i, (name, watch) in enumerate(plan, 1):
        path = SCENARIOS / f"{name}.yaml"
        sc = load_scenario(path)
        mode = "watch" if watch else "baseline"
        _say(f"{i}/{len(plan)}: {name} ({mode})")
        outcome = runner.run_scenario(sc, out / mode, canary_watch=watch)
        outcome.file = path.relative_to(REPO)
        write_json(out / mode / f"{name}.json", outcome.as_json())
        row = _row(outcome)
        rows.setdefault(name, {})[mode] = row
        _say(f"{name} ({mode}): {row['status']}, fault -> rollback {row['fault_to_rollback_s']} s")
    return rows


def figures(rows: dict[str, dict[str, Any]], faults: list[str], healthy: list[str]) -> dict[str, Any]:
    def col(mode: str) -> list[float]:
        return [
            float(rows[n][mode]["fault_to_rollback_s"])
            for n in faults
            if rows.get(n, {}).get(mode, {}).get("fault_to_rollback_s") is not None
        ]

    watch, base = col("watch"), col("baseline")
    by_watch = [
        n
        for n in faults
        if (rows.get(n, {}).get("watch", {}).get("watch") or {}).get("outcome") == "rejected"
    ]
    healthy_rb = [n for n in healthy if rows.get(n, {}).get("watch", {}).get("rollback")]
    med, base_med = _median(watch), _median(base)
    return {
        "fault_to_rollback_median_s": med,
        "baseline_fault_to_rollback_median_s": base_med,
        "speedup": round(base_med / med, 2) if med and base_med else None,
        "fault_scenarios_rolled_back": {"watch": len(watch), "baseline": len(base), "of": len(faults)},
        "watch_rejections": by_watch,
        "healthy_rollbacks": len(healthy_rb),
        "healthy_rollback_scenarios": healthy_rb,
        "silent_to_incident_median_s": None,
        "probe_cpu_share": None,
        "not_measured": {"silent_to_incident_median_s": NO_PROBES, "probe_cpu_share": NO_PROBES},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--home",
        type=Path,
        default=REPO / ".triage24" / "canary-watch-bench",
        help="the stack's state directory",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="per-scenario observations (default <home>/live)"
    )
    parser.add_argument("--faults", nargs="+", default=FAULTS, help="hard-fault scenarios (run twice)")
    parser.add_argument("--healthy", nargs="*", default=HEALTHY, help="healthy controls (watch on)")
    parser.add_argument("--replicates", type=int, default=2000, help="the simulation's A/A replicates")
    parser.add_argument("--bad-replicates", type=int, default=500)
    parser.add_argument("--no-sim", action="store_true", help="skip the simulation (a trial run)")
    args = parser.parse_args(argv)
    for name in [*args.faults, *args.healthy]:
        if not (SCENARIOS / f"{name}.yaml").is_file():
            parser.error(f"no scenario {name!r} in {SCENARIOS}")
    out = args.out or args.home / "live"
    commit = checkout_commit(REPO)
    started = time.time()
    load_start = os.getloadavg()
    settings = Settings(home=args.home.resolve())
    with SuiteRunner(settings, say=_say) as runner:
        rows = run_live(runner, out, args.faults, args.healthy)
        notes = runner.notes
    live_s = time.time() - started
    result: dict[str, Any] = {
        "benchmark": "canary_watch",
        "command": "benchmarks/canary_watch_live.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": machine(),
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
        "live_wall_s": round(live_s, 1),
        "notes": notes,
        **figures(rows, args.faults, args.healthy),
        "goal": {
            "fault_to_rollback_median_s": 30,
            "silent_to_incident_median_s": 300,
            "healthy_rollbacks": 0,
        },
        "scenarios": rows,
    }
    clean = commit is not None and not commit.endswith("-dirty")
    if not args.no_sim:
        sim_out = RESULTS / "canary_watch_sim.json" if clean else out / "canary_watch_sim.json"
        canary_watch_sim.main(
            [
                "--replicates",
                str(args.replicates),
                "--bad-replicates",
                str(args.bad_replicates),
                "--out",
                str(sim_out),
            ]
        )
        sim = json.loads(sim_out.read_text())
        result["aa_false_rollback_rate"] = sim["aa_false_rollback_rate"]
        result["aa_false_rollback_ci95"] = sim["aa_false_rollback_ci95"]
        result["requests_to_detect_2x_median"] = sim["requests_to_detect_2x_median"]
        result["simulation"] = str(sim_out.relative_to(REPO) if clean else sim_out)
    write_json(out / "canary_watch.json", result)
    if clean:
        write_json(RESULTS / "canary_watch.json", result)
        _say(f"wrote {RESULTS / 'canary_watch.json'}")
    else:
        _say(f"checkout {commit}: not committed code, so only {out / 'canary_watch.json'} was written")
    brief = ("fault_to_rollback_median_s", "baseline_fault_to_rollback_median_s", "healthy_rollbacks")
    print(json.dumps({k: result[k] for k in brief}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
