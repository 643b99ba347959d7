"""The decision benchmark's phase-2 cases on a few trials: each scenario's evidence decides as the
benchmark counts it (missing and shared: no action; the canary's own drift: a rollback), and the
router probe replay reproduces the issue's figures."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.decision import (
    Params,
    Scenario,
    run_scenario,
    summarize,
)
from benchmarks.decision_phase2 import PHASE2_CHECKS, PHASE2_SCENARIOS, phase2_for, router_probe_verdicts
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks

BOOKS = load_runbooks()
P = Params(horizon_min=4)  # 4 looks a trial: enough for the 2 % stage's evidence, fast


def test_the_benchmark_checks_are_sop_yamls_phase_2() -> None:
    assert tuple(next(p.checks for p in BOOKS.sop.phases if p.id == "deep_diagnosis")) == PHASE2_CHECKS
    healthy = phase2_for("healthy", PHASE2_CHECKS)
    assert healthy is not None and all(
        ev.canary is Status.OK and ev.stable is Status.OK for ev in healthy.checks.values()
    )
    assert phase2_for("not_run", PHASE2_CHECKS) is None
    assert "router_dispatch" not in phase2_for("check_absent", PHASE2_CHECKS).checks  # type: ignore[union-attr]


def _run(name: str, kind: str, trials: int = 3) -> dict[str, object]:
    sc = Scenario(name, P.stable_error_rate, P.stable_scale_ms, P.canary_share, phase2=kind)
    rng = np.random.default_rng(1)
    return run_scenario(sc, trials, P, BOOKS.decision, BOOKS.thresholds.canary_gates, rng)


@pytest.mark.parametrize(("name", "kind"), [s for s in PHASE2_SCENARIOS if not s[0].startswith("canary")])
def test_missing_or_shared_phase_2_evidence_takes_no_action(name: str, kind: str) -> None:
    r = _run(name, kind)
    assert [t.action for t in r["triage24"]] == ["none"] * 3  # type: ignore[attr-defined]
    assert r["look_outcomes"] == {"insufficient_evidence": 3 * P.steps // P.look_steps}


def test_the_canarys_own_drift_rolls_back_at_the_first_look() -> None:
    r = _run("canary_only_drift_level2", "canary_drift")
    assert [t.action for t in r["triage24"]] == ["rollback"] * 3  # type: ignore[attr-defined]
    assert r["look_rules"] == {"phase2_evidence": 3}


def test_a_healthy_phase_2_lets_the_a_a_canary_continue() -> None:
    r = _run("aa", "healthy")
    assert r["look_outcomes"] == {"continue": 3 * P.steps // P.look_steps}


def test_summarize_counts_actions_per_group() -> None:
    names = [n for n, _ in PHASE2_SCENARIOS]
    raw = {"aa": _run("aa", "healthy", 1)} | {n: _run(n, k, 1) for n, k in PHASE2_SCENARIOS}
    missing = [n for n in names if n.startswith("missing")]
    shared = [n for n in names if n.startswith("shared")]
    out = summarize(raw, [], missing, [], shared)
    assert out["missing_data_actions"] == 0 and out["shared_degradation_actions"] == 0
    assert out["canary_only_rollback_rate"] == 1.0
    assert set(out["shared_degradation_by_scenario"]) == {"shared_drift_level2", "shared_clip_failure"}


def test_the_router_probe_replay_reproduces_the_issues_figures() -> None:
    v = router_probe_verdicts(4000, np.random.default_rng(0))
    assert v["rule"] == {"probes": 40, "max_probes": 120, "tolerance": 0.05, "confidence": 0.95, "looks": 3}
    by = v["by_misrouted_share"]
    # before: 0 or 1 misroutes of 24 (<= 5 %) passed; a 12 % router about one time in five (0.199)
    assert by["0.12"]["before_24_probes"]["ok"] == pytest.approx(0.199, abs=0.02)
    assert by["0.12"]["now"]["ok"] == 0.0
    # a clean router: ok after 80 probes (0 of 80: bound 4.99 %), every time
    assert by["0"]["now"] == {"ok": 1.0, "failed": 0.0, "insufficient": 0.0, "mean_probes": 80.0}
    # at the tolerance: an ok is wrong, and it stays under 1 - confidence
    assert by["0.05"]["now"]["ok"] < 0.05
    assert by["0.3"]["now"]["failed"] == 1.0 and by["0.3"]["now"]["mean_probes"] == pytest.approx(40, abs=1)
