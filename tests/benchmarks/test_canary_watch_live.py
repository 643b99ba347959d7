"""The live canary-watch benchmark's figures come from its scenarios' observations: recomputed from the
observations the committed run left, they are the committed `results/canary_watch.json`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from benchmarks.canary_watch_live import FAULTS, HEALTHY, figures, scenario_rows, stored_outcomes

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_figures_follow_from_the_committed_observations() -> None:
    committed = json.loads((REPO / "benchmarks/results/canary_watch.json").read_text(encoding="utf-8"))
    run = REPO / "benchmarks/scenario_runs" / f"{committed['commit']}-canary-watch"
    outcomes = stored_outcomes(run)
    assert {mode for _, mode in outcomes} == {"baseline", "watch"}
    again = figures(outcomes, FAULTS, HEALTHY)
    assert again == {k: committed[k] for k in again}
    assert scenario_rows(outcomes) == committed["scenarios"]


def test_the_watch_and_todays_rules_are_told_apart_per_scenario() -> None:
    committed = json.loads((REPO / "benchmarks/results/canary_watch.json").read_text(encoding="utf-8"))
    outcomes = stored_outcomes(REPO / "benchmarks/scenario_runs" / f"{committed['commit']}-canary-watch")
    # today's rules never run the watch; every watched scenario carries its verdict
    assert all(o.observation.canary_watch is None for (_, mode), o in outcomes.items() if mode == "baseline")
    assert all(o.observation.canary_watch is not None for (_, mode), o in outcomes.items() if mode == "watch")
    assert figures(outcomes, FAULTS, HEALTHY)["healthy_rollbacks"] == 0
    # the same healthy control, had its canary been rolled back, is a healthy rollback
    control = outcomes["healthy_control", "watch"]
    runs = [r.model_copy(update={"rollback_outcome": "applied"}) for r in control.observation.runs]
    rolled = replace(control, observation=control.observation.model_copy(update={"runs": runs}))
    bad = figures({**outcomes, ("healthy_control", "watch"): rolled}, FAULTS, HEALTHY)
    assert bad["healthy_rollbacks"] == 1 and bad["healthy_rollback_scenarios"] == ["healthy_control"]
