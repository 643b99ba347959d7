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
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # as the other benchmarks: run as a script, import the repo's packages

from benchmarks import canary_watch_sim  # noqa: E402
from diagnostics.config import Settings  # noqa: E402
from harness.scenario.results import ScenarioOutcome, checkout_commit, machine, write_json  # noqa: E402
from harness.scenario.runner import SuiteRunner  # noqa: E402
from harness.scenario.schema import Scenario, load_scenario  # noqa: E402
from harness.scenario.scoring import ScenarioObservation, score, suite_figures  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SCENARIOS = REPO / "benchmarks" / "scenarios"
FAULTS = ["error_burst_canary", "cuda_oom_canary", "latency_spike_canary", "model_not_loaded"]
HEALTHY = ["healthy_control", "healthy_noisy_latency"]
NO_PROBES = "golden probes for silent faults are not built yet (issue 20 §3): not measured"


def _say(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


Outcomes = dict[tuple[str, str], ScenarioOutcome]  # (scenario, "baseline" | "watch") -> its outcome


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


def run_live(runner: SuiteRunner, out: Path, faults: list[str], healthy: list[str]) -> Outcomes:
    outcomes: Outcomes = {}
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
        outcomes[name, mode] = outcome
        took = outcome.score.timings.get("fault_to_rollback_s")
        _say(f"{name} ({mode}): {outcome.score.status}, fault -> rollback {took} s")
    return outcomes


def stored_outcomes(out: Path) -> Outcomes:
    """The outcomes a run left in ``out`` ({baseline,watch}/<name>.json), scored again from their
    stored definitions: the figures can be recomputed without running anything."""
    found: Outcomes = {}
    for mode in ("baseline", "watch"):
        for path in sorted((out / mode).glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            sc = Scenario.model_validate(data["definition"])
            obs = ScenarioObservation.model_validate(data["observation"])
            found[sc.id, mode] = ScenarioOutcome(Path(data["file"]), sc, obs, score(sc, obs))
    return found


def figures(outcomes: Outcomes, faults: list[str], healthy: list[str]) -> dict[str, Any]:
    """The headline figures: the suite's own (``suite_figures``) over each group of outcomes."""

    def group(names: list[str], mode: str) -> list[ScenarioOutcome]:
        return [outcomes[n, mode] for n in names if (n, mode) in outcomes]

    def suite(names: list[str], mode: str) -> dict[str, Any]:
        return suite_figures([(o.scenario, o.observation, o.score) for o in group(names, mode)])

    def median(names: list[str], mode: str) -> float | None:
        value = suite(names, mode)["fault_to_rollback_median_s"]
        return None if value is None else round(value, 1)

    def rolled_back(mode: str) -> int:
        return sum(o.score.timings.get("fault_to_rollback_s") is not None for o in group(faults, mode))

    med, base_med = median(faults, "watch"), median(faults, "baseline")
    calm = suite(healthy, "watch")
    return {
        "fault_to_rollback_median_s": med,
        "baseline_fault_to_rollback_median_s": base_med,
        "speedup": round(base_med / med, 2) if med and base_med else None,
        "fault_scenarios_rolled_back": {
            "watch": rolled_back("watch"),
            "baseline": rolled_back("baseline"),
            "of": len(faults),
        },
        "watch_rejections": [
            o.scenario.id
            for o in group(faults, "watch")
            if o.observation.canary_watch is not None and o.observation.canary_watch.outcome == "rejected"
        ],
        "healthy_rollbacks": calm["healthy_rollbacks"],
        "healthy_rollback_scenarios": calm["healthy_rollback_scenarios"],
        "silent_to_incident_median_s": None,
        "probe_cpu_share": None,
        "not_measured": {"silent_to_incident_median_s": NO_PROBES, "probe_cpu_share": NO_PROBES},
    }


def scenario_rows(outcomes: Outcomes) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for (name, mode), o in outcomes.items():
        rows.setdefault(name, {})[mode] = _row(o)
    return rows


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
        outcomes = run_live(runner, out, args.faults, args.healthy)
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
        **figures(outcomes, args.faults, args.healthy),
        "goal": {
            "fault_to_rollback_median_s": 30,
            "silent_to_incident_median_s": 300,
            "healthy_rollbacks": 0,
        },
        "scenarios": scenario_rows(outcomes),
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
