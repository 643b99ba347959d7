"""An incident run's facts for the metrics, from its artifacts: who decided what and when, the gate it
waits at, its rollback, phase 2's crashes; and the cache that re-reads only folders that changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.telemetry import runs as runs_module
from diagnostics.telemetry.runs import Decided, RunCache, grade_label, read_run
from tests.diagnostics.telemetry.conftest import T0, Runs


def test_a_decision_that_acts_alone_is_the_policy_s_at_the_time_it_was_stored(runs: Runs) -> None:
    run = runs.add("incident__a__1").incident("L3", alert_at=T0).decision(at=T0 + 95).rollback(at=T0 + 140)
    facts = read_run(run.folder)
    assert facts.grade == "L3"
    assert facts.decided == Decided("rollback", "policy", T0 + 95)
    assert facts.time_to_decision_s == pytest.approx(95)
    assert facts.rollback is not None and (facts.rollback.method, facts.rollback.result) == (
        "gateway_weight",
        "applied",
    )
    assert facts.time_to_mitigation_s == pytest.approx(140)
    assert facts.gate is None


def test_the_fast_path_s_rollback_stands_whatever_the_full_decision_says_later(runs: Runs) -> None:
    run = runs.add("incident__fast__1").fast_decision(at=T0 + 40).decision(at=T0 + 4000, outcome="continue")
    assert read_run(run.folder).decided == Decided("rollback", "fast_path", T0 + 40)


def test_a_fast_decision_that_did_not_roll_back_is_not_a_decision(runs: Runs) -> None:
    run = runs.add("incident__fast__2").fast_decision(at=T0 + 40, outcome="continue").no_decision()
    assert read_run(run.folder).decided is None


def test_a_human_s_answer_is_the_decision_and_its_time(runs: Runs) -> None:
    run = runs.add("incident__h__1").decision(at=T0 + 100, outcome="insufficient_evidence", needs_human=True)
    run.answer("rollback", by="oncall-ann", at=T0 + 700)
    facts = read_run(run.folder)
    assert facts.decided == Decided("rollback", "human", T0 + 700)
    assert facts.time_to_decision_s == pytest.approx(700)
    assert facts.gate is None


def test_a_gate_nobody_answered_is_decided_by_its_timeout_s_default(runs: Runs) -> None:
    run = runs.add("incident__h__2").decision(at=T0 + 100, needs_human=True, timeout_s=600).no_rollback()
    run.answer("hold", by=None, at=T0 + 700)
    assert read_run(run.folder).decided == Decided("hold", "timeout", T0 + 700)


def test_a_gate_without_an_answer_waits_since_the_decision_was_stored(runs: Runs) -> None:
    run = runs.add("incident__w__1").incident("L4").decision(at=T0 + 100, needs_human=True, timeout_s=600)
    run.no_rollback()
    facts = read_run(run.folder)
    assert facts.decided is None and facts.time_to_decision_s is None
    assert facts.gate is not None and (facts.gate.asked_at, facts.gate.timeout_s) == (T0 + 100, 600.0)


@pytest.mark.parametrize("after", ["rollback", "phase3"])
def test_a_gate_is_not_waiting_once_something_acted_or_phase_3_ran(runs: Runs, after: str) -> None:
    run = runs.add("incident__w__2").decision(at=T0 + 100, needs_human=True).no_rollback()
    getattr(run, after)()
    assert read_run(run.folder).gate is None


def test_phase_2_s_checks_and_the_ones_that_crashed(runs: Runs) -> None:
    run = runs.add("incident__p2__1").phase2(crashed=("clip_consistency",), ok=("asr_check", "drift"))
    facts = read_run(run.folder)
    assert facts.phase2_checks == ("asr_check", "clip_consistency", "drift")
    assert facts.crashed_checks == ("clip_consistency",)


def test_a_rollback_that_changed_nothing_is_no_mitigation(runs: Runs) -> None:
    facts = read_run(runs.add("incident__dry__1").rollback("dry_run").folder)
    assert facts.rollback is not None and facts.rollback.result == "dry_run"
    assert facts.time_to_mitigation_s is None


def test_unreadable_or_odd_files_are_left_out_never_fatal(runs: Runs) -> None:
    run = runs.add("incident__odd__1")
    (run.folder / "decision" / "decision.json").write_text('{"outcome": "rollb')  # half written
    (run.folder / "incident.json").write_text(
        json.dumps({"grade": "P0 <script>", "alert_started_at": "yesterday"})
    )
    facts = read_run(run.folder)
    assert (facts.grade, facts.alert_started_at, facts.decided) == ("other", None, None)
    assert [grade_label(g) for g in ("L1", None, "", "L9", 3)] == [
        "L1",
        "ungraded",
        "ungraded",
        "other",
        "other",
    ]


def test_the_cache_reads_each_run_once_until_one_of_its_files_changes(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = runs.add("incident__c__1"), runs.add("incident__c__2")
    (runs.root / "audit").mkdir()  # not a run: no incident.json
    (runs.root / "stray.json").write_text("{}")
    reads: list[str] = []
    real = runs_module.read_run

    def counting(folder: Path) -> runs_module.RunFacts:
        reads.append(folder.name)
        return real(folder)

    monkeypatch.setattr(runs_module, "read_run", counting)
    cache = RunCache(runs.root)
    assert sorted(r.run_id for r in cache.read()) == ["incident__c__1", "incident__c__2"]
    assert sorted(reads) == ["incident__c__1", "incident__c__2"]
    cache.read()
    assert len(reads) == 2, "nothing changed: nothing re-read"
    second.decision(at=T0 + 5, needs_human=True)
    assert {r.run_id: r.decided for r in cache.read()}["incident__c__2"] is None
    assert reads[2:] == ["incident__c__2"]
    for path in sorted(first.folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    assert [r.run_id for r in cache.read()] == ["incident__c__2"]


def test_an_absent_artifact_root_is_no_runs_yet(tmp_path: Path) -> None:
    assert RunCache(tmp_path / "nothing-yet").read() == []
