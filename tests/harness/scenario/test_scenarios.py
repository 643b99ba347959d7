"""The scenario suite: its format (good files load, bad ones name file, line, field and the fix), what
the runner reads back from a run's artifacts, the scoring, and - as an integration test - the healthy
control and one fault scenario through the real runner on a real local stack."""

from __future__ import annotations

import json
import os
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from harness.scenario.observe import RunObservation, RunTimes, find_values, leaked_pii, observe_run
from harness.scenario.schema import Scenario, ScenarioError, load_scenario, load_suite
from harness.scenario.scoring import ScenarioObservation, score, suite_figures, timings
from testbed.faults import FAULTS
from tests.conftest import REPO

SCENARIOS = REPO / "benchmarks" / "scenarios"
TESTBED_FAULTS = tuple(FAULTS)  # the testbed's own catalogue: every fault it can inject

MINIMAL = """\
description: a test scenario
traffic: {rate: 3, mix: {text: 0.5, image: 0.5}}
faults:
  - {name: error_burst, channel: text, magnitude: 0.5}
expect:
  decision: [rollback]
  rollback: true
"""


def write(tmp_path: Path, text: str, name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return [str(p) for p in info.value.problems]


# --- the format ------------------------------------------------------------------------------------


def test_every_scenario_of_the_suite_loads_and_the_suite_covers_what_it_must() -> None:
    suite = load_suite([SCENARIOS])
    names = {sc.id for _, sc in suite}
    assert len(names) == len(suite) >= 17
    injected = {f.name for _, sc in suite for f in sc.faults}
    assert injected >= set(TESTBED_FAULTS), set(TESTBED_FAULTS) - injected
    healthy = [sc for _, sc in suite if not sc.faults]
    assert healthy and all(sc.expect.rollback is False for sc in healthy)
    assert any(sc.expect.rollback is False and sc.faults for _, sc in suite)  # the noisy healthy canary
    assert any(len({f.name for f in sc.faults}) >= 2 and sc.expect.max_incidents == 1 for _, sc in suite)
    assert any(o.component.value == "prometheus" for _, sc in suite for o in sc.outages)
    ci = [sc.id for _, sc in suite if "ci" in sc.tags]
    assert "healthy_control" in ci and len(ci) == 2


def test_a_good_file_loads_with_its_defaults_and_its_name_from_the_file(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, MINIMAL, "my_case.yaml"))
    assert sc.id == "my_case"
    assert sc.trigger.kind == "alert" and sc.alert_incident == "required"
    assert sc.faults[0].version == "canary"
    assert sc.faults[0].admin_body() == {"fault": "error_burst", "channel": "text", "magnitude": 0.5}
    assert sc.traffic.mix_arg() == "text=0.5,image=0.5"
    assert sc.start_weight == 50 and sc.reset_evidence is True


def test_an_unknown_field_names_its_line_and_where_the_format_is_documented(tmp_path: Path) -> None:
    text = MINIMAL.replace("  rollback: true\n", "  rollback: true\n  rolback: true\n")
    (msg,) = problems(write(tmp_path, text))
    assert msg.startswith(f"{tmp_path / 'case.yaml'}:8: expect.rolback: unknown field")
    assert "benchmarks/README.md" in msg


def test_a_fault_outside_the_testbed_catalogue_is_refused_with_the_testbeds_own_words(tmp_path: Path) -> None:
    (msg,) = problems(write(tmp_path, MINIMAL.replace("magnitude: 0.5", "magnitude: 5")))
    assert ":4: faults[0]: magnitude 5.0 out of range for error_burst: 0..1" in msg
    (msg,) = problems(write(tmp_path, MINIMAL.replace("error_burst", "error_bursts")))
    assert ":4: faults[0]: unknown fault 'error_bursts'; valid faults: embedding_dim_mismatch" in msg
    (msg,) = problems(write(tmp_path, MINIMAL.replace("channel: text", "channel: video")))
    assert "bad channel 'video' for error_burst; valid channels: text, image, audio, router" in msg


def test_enum_and_range_errors_name_the_field_and_the_valid_values(tmp_path: Path) -> None:
    text = MINIMAL.replace("[rollback]", "[rolback]") + "start_weight: 150\n"
    found = problems(write(tmp_path, text))
    assert any(
        ":6: expect.decision[0]: Input should be 'rollback', 'continue' or 'insufficient_evidence'" in m
        for m in found
    )
    assert any(":8: start_weight: Input should be less than or equal to 100 (got 150)" in m for m in found)


def test_a_missing_section_and_contradictions_are_explained(tmp_path: Path) -> None:
    (msg,) = problems(
        write(tmp_path, MINIMAL.replace("traffic: {rate: 3, mix: {text: 0.5, image: 0.5}}\n", ""))
    )
    assert msg.endswith("traffic: required field is missing")
    text = MINIMAL + "trigger: {kind: alert}\n"
    (msg,) = problems(write(tmp_path, text.replace("  rollback: true\n", "  alert_incident: forbidden\n")))
    assert "use trigger.kind: manual" in msg
    manual = MINIMAL + "trigger: {kind: manual, after_s: 30}\n"
    (msg,) = problems(write(tmp_path, manual.replace("  rollback: true\n", "  grade: [L3]\n")))
    assert "a manual investigation has no grade" in msg
    (msg,) = problems(write(tmp_path, "description: x\ntraffic: {rate: 2}\nexpect: {}\n"))
    assert "an alert-triggered scenario needs at least one fault" in msg


def test_not_yaml_and_bad_file_names_and_duplicate_names_are_reported(tmp_path: Path) -> None:
    (msg,) = problems(write(tmp_path, "description: [unclosed\n"))
    assert ":2: not valid YAML" in msg or ":1: not valid YAML" in msg
    (msg,) = problems(write(tmp_path, MINIMAL, "Bad-Name.yaml"))
    assert "name: the file name 'Bad-Name' cannot be the scenario's name" in msg
    d = tmp_path / "suite"
    d.mkdir()
    write(d, MINIMAL, "a.yaml")
    write(d, MINIMAL + "name: a\n", "b.yaml")
    with pytest.raises(ScenarioError) as info:
        load_suite([d])
    assert "'a' is already the name of" in str(info.value)
    with pytest.raises(ScenarioError, match="no such file or directory"):
        load_suite([tmp_path / "missing"])


def test_the_manual_window_covers_the_scenario_so_far() -> None:
    sc = Scenario.model_validate(
        {
            "name": "w",
            "description": "x",
            "warmup_s": 30,
            "traffic": {"rate": 2},
            "trigger": {"kind": "manual", "after_s": 150},
            "expect": {},
        }
    )
    assert sc.window_minutes() == 4  # 30 + 150 + 30 s, rounded up
    assert sc.alert_incident == "any"


# --- reading a run back ----------------------------------------------------------------------------


def _put(path: Path, data: Any, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    os.utime(path, (mtime, mtime))


def fake_run(root: Path, run_id: str, t0: float, *, rollback: bool = True) -> dict[str, Any]:
    base = root / run_id
    _put(base / "golden_window" / "health_snapshot.json", {"status": "failed"}, t0 + 12)
    _put(base / "golden_window" / "metrics_sla.json", {"status": "ok"}, t0 + 14)
    _put(
        base / "golden_window" / "summary.json",
        {
            "status": "failed",
            "checks": {"health_snapshot": "failed", "metrics_sla": "ok"},
            "suspected_component": "embedding",
            "suspected_version": "canary",
            "top_action": "Compare the loaded model's SHA-256   with targets.yaml",
            "findings": [
                {
                    "check": "health_snapshot",
                    "problem": "model_not_loaded",
                    "severity": "critical",
                    "component": "embedding",
                    "version": "canary",
                },
                {
                    "check": "log_classification",
                    "problem": "module_unhealthy",
                    "severity": "high",
                    "component": "embedding",
                    "version": "canary",
                },
            ],
        },
        t0 + 15,
    )
    _put(
        base / "deep_diagnosis" / "summary.json",
        {
            "checks": {"asr_check": "ok"},
            "findings": [
                {
                    "check": "asr_check",
                    "problem": "asr_degraded",
                    "severity": "medium",
                    "component": "audio_processor",
                }
            ],
            "suspected_component": "audio_processor",
        },
        t0 + 90,
    )
    _put(base / "decision" / "fast_decision.json", {"outcome": "rollback", "needs_human": False}, t0 + 17)
    _put(
        base / "decision" / "decision.json",
        {"outcome": "rollback", "rule": "critical_canary_finding", "needs_human": False},
        t0 + 95,
    )
    if rollback:
        _put(
            base / "response" / "rollback.json",
            {"outcome": "applied", "before": {"canary_weight": 50.0}, "after": {"canary_weight": 0.0}},
            t0 + 19,
        )
        _put(base / "response" / "recovery_verification.json", {"recovered": True}, t0 + 30)
    iso = lambda t: __import__("datetime").datetime.fromtimestamp(t, __import__("datetime").UTC).isoformat()  # noqa: E731
    return {
        "dag_run_id": run_id,
        "state": "success",
        "queued_at": iso(t0 + 8),
        "end_date": iso(t0 + 100),
        "conf": {
            "grade": "L4",
            "version": "canary",
            "received_at": iso(t0 + 6),
            "alerts": [
                {"status": "firing", "starts_at": iso(t0 + 1), "labels": {"alertname": "ModelNotLoaded"}},
                {"status": "firing", "starts_at": iso(t0), "labels": {"alertname": "TargetDown"}},
                {"status": "resolved", "starts_at": iso(t0 - 100), "labels": {"alertname": "Old"}},
            ],
        },
    }


def test_a_runs_artifacts_are_read_back_with_their_times_and_its_lead_finding(tmp_path: Path) -> None:
    t0 = 1_800_000_000.0
    run = fake_run(tmp_path, "incident__x", t0)
    obs = observe_run(
        tmp_path,
        run,
        "alert",
        actions={"Compare the loaded model's SHA-256 with targets.yaml": "model_not_loaded"},
    )
    t = obs.times
    assert (t.alert_fired, t.alert_delivered, t.created) == (t0, t0 + 6, t0 + 8)
    assert (t.first_evidence, t.phase1_done, t.decision, t.rollback_applied, t.recovery_verified) == (
        t0 + 12, t0 + 15, t0 + 17, t0 + 19, t0 + 30,
    )  # fmt: skip
    assert t.finished == t0 + 100 and t.report_written is None
    assert obs.alert_names == ["ModelNotLoaded", "TargetDown"] and obs.grade == "L4"
    # phase 1's critical finding outranks phase 2's medium one
    assert (obs.suspected_component, obs.lead_problem, obs.lead_phase) == (
        "embedding",
        "model_not_loaded",
        "golden_window",
    )
    assert obs.action_problem == "model_not_loaded"  # matched whitespace-insensitively
    assert obs.fast_path and obs.decision == "rollback" and obs.decision_rule == "critical_canary_finding"
    assert obs.rollback_outcome == "applied" and obs.rollback_weights == [50.0, 0.0] and obs.recovered
    assert obs.checks == {"health_snapshot": "failed", "metrics_sla": "ok", "asr_check": "ok"}
    assert [f.problem for f in obs.blamed()] == ["model_not_loaded", "module_unhealthy"]


def test_without_a_fast_path_the_decision_time_is_the_full_decisions(tmp_path: Path) -> None:
    t0 = 1_800_000_000.0
    run = fake_run(tmp_path, "incident__y", t0, rollback=False)
    _put(tmp_path / "incident__y" / "decision" / "fast_decision.json", {"outcome": "continue"}, t0 + 17)
    obs = observe_run(tmp_path, run, "alert")
    assert not obs.fast_path and obs.times.decision == t0 + 95
    assert obs.rollback_outcome is None and obs.times.rollback_applied is None and obs.recovered is None
    assert obs.action_problem is None  # no matrix given: no action named


def test_leaked_pii_is_found_by_value_in_files_and_archives_and_only_where_it_is(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    caller = {"phone": "13812345678", "alt_phone": "+1-202-555-0143", "id_card": "11010519491231002X",
              "email": "li.wei@example.com", "card": "4539578763621486"}  # fmt: skip
    lines = [
        {"ts": "2026-01-01T00:00:00Z", "message": "request completed", "caller": {"phone": "13900000000"}},
        {"ts": "2026-06-01T00:00:00Z", "message": "request completed caller profile: ...", "caller": caller},
    ]
    (logs / "testbed-canary.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    since = 1_780_000_000.0  # 2026-05-28: the first line is older
    values = leaked_pii([logs / "testbed-canary.jsonl"], since=since)
    assert values == {v: k for k, v in caller.items()}
    run = tmp_path / "artifacts" / "incident__z"
    (run / "golden_window").mkdir(parents=True)
    (run / "golden_window" / "log_classification.json").write_text(
        '{"sample": "phone=[phone:3f9a1c2b] [email]"}'
    )
    assert find_values(run, values) == []
    (run / "report").mkdir()
    (run / "report" / "report.html").write_text("<td>li.wei@example.com</td>")
    with zipfile.ZipFile(run / "bundle.zip", "w") as zf:
        zf.writestr("evidence/logs.json", '{"card": "4539578763621486"}')
    hits = find_values(run, values)
    assert hits == [
        f"{run / 'bundle.zip'}!evidence/logs.json: card",
        f"{run / 'report' / 'report.html'}: email",
    ]


# --- scoring ---------------------------------------------------------------------------------------


def scenario(**expect: Any) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "s",
            "description": "x",
            "traffic": {"rate": 3},
            "faults": [{"name": "model_not_loaded", "channel": "image"}],
            "expect": expect,
        }
    )


def run_obs(**kw: Any) -> RunObservation:
    base: dict[str, Any] = {
        "run_id": "incident__a",
        "kind": "alert",
        "state": "success",
        "conf_version": "canary",
        "grade": "L4",
        "suspected_component": "embedding",
        "suspected_version": "canary",
        "lead_problem": "canary_gate_breach",
        "action_problem": "model_not_loaded",
        "decision": "rollback",
        "decision_rule": "critical_canary_finding",
        "rollback_outcome": "applied",
        "recovered": True,
        "checks": {"metrics_sla": "insufficient_evidence"},
        "findings": [
            {"phase": "golden_window", "check": "health_snapshot", "problem": "model_not_loaded",
             "severity": "critical", "component": "embedding", "version": "canary"}
        ],
        "times": RunTimes(alert_fired=100.0, alert_delivered=106.0, created=107.0, first_evidence=109.0,
                          decision=112.0, rollback_applied=113.5, recovery_verified=130.0, finished=300.0),
    }  # fmt: skip
    base.update(kw)
    return RunObservation(**base)


def observation(*runs: RunObservation, **kw: Any) -> ScenarioObservation:
    return ScenarioObservation(
        scenario="s",
        started_at=0.0,
        fault_injected_at=60.0,
        runs=list(runs),
        primary=runs[0].run_id if runs else None,
        **kw,
    )


FULL = dict(
    grade=["L4"],
    suspected_component=["embedding"],
    suspected_version="canary",
    problem=["model_not_loaded"],
    findings_include=["model_not_loaded"],
    decision=["rollback"],
    decision_rule=["critical_canary_finding"],
    rollback=True,
    recovered=True,
    checks={"metrics_sla": ["insufficient_evidence"]},
    run_state=["success"],
    max_incidents=1,
    deadlines={"detection_s": 60, "first_evidence_s": 10, "rollback_applied_s": 15, "total_s": 900},
)


def test_a_run_that_meets_every_expectation_passes_with_the_observed_values() -> None:
    result = score(scenario(**FULL), observation(run_obs()))
    assert result.status == "pass", [e for e in result.expectations if not e.passed]
    by = {e.name: e for e in result.expectations}
    assert by["alert_incident"].observed == 1
    assert by["problem"].observed == "model_not_loaded"  # the action's problem, not the gate's id
    assert by["deadline.first_evidence_s"].observed == 9.0
    assert by["deadline.detection_s"].observed == 40.0
    assert result.timings["rollback_applied_s"] == 13.5 and result.timings["total_s"] == 200.0
    # what the canary's users live through: fault in place (60) to weight 0 (113.5)
    assert result.timings["fault_to_rollback_s"] == 53.5


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"grade": "L3"}, "grade"),
        ({"suspected_component": "audio_processor"}, "suspected_component"),
        ({"suspected_version": "stable"}, "suspected_version"),
        ({"action_problem": None, "lead_problem": "cuda_oom"}, "problem"),
        ({"findings": []}, "findings_include"),
        ({"decision": "insufficient_evidence"}, "decision"),
        ({"decision_rule": "bayesian_risk"}, "decision_rule"),
        ({"rollback_outcome": "rate_limited"}, "rollback"),
        ({"recovered": False}, "recovered"),
        ({"checks": {"metrics_sla": "ok"}}, "checks.metrics_sla"),
        ({"state": "failed"}, "run_state"),
        ({"times": RunTimes(alert_fired=100.0, first_evidence=140.0)}, "deadline.first_evidence_s"),
        ({"times": RunTimes(alert_fired=100.0, first_evidence=105.0)}, "deadline.rollback_applied_s"),
    ],
)
def test_each_expectation_fails_on_its_own_when_its_observation_differs(
    change: dict[str, Any], failing: str
) -> None:
    result = score(scenario(**FULL), observation(run_obs(**change)))
    assert result.status == "fail"
    assert failing in {e.name for e in result.failed}
    assert all(
        e.name in (failing, "deadline.total_s", "deadline.rollback_applied_s") for e in result.failed
    ), [e.name for e in result.failed]


def test_the_grade_is_the_incidents_after_an_escalation_by_the_intake() -> None:
    # Opened as L2 (the first alert to reach the intake), raised to L4 when ModelNotLoaded joined.
    raised = score(scenario(**FULL), observation(run_obs(grade="L2", incident_grade="L4")))
    grade = next(e for e in raised.expectations if e.name == "grade")
    assert (
        grade.passed and grade.observed == "L4" and grade.detail == "opened as L2, raised to L4 by the intake"
    )
    kept = score(scenario(**FULL), observation(run_obs(grade="L2", incident_grade="L2")))
    assert "grade" in {e.name for e in kept.failed}


def test_no_incident_fails_what_needs_one_and_a_second_one_fails_max_incidents() -> None:
    result = score(scenario(**FULL), observation())
    names = {e.name for e in result.failed}
    assert {"alert_incident", "grade", "decision", "rollback", "deadline.total_s"} <= names
    assert next(e for e in result.expectations if e.name == "max_incidents").passed  # 0 <= 1
    two = observation(run_obs(), run_obs(run_id="incident__b"))
    assert "max_incidents" in {e.name for e in score(scenario(**FULL), two).failed}
    # another alert group's incident (the stable version's SLA page) is not a deduplication failure
    other = observation(run_obs(), run_obs(run_id="incident__s", conf_version="stable"))
    counted = next(e for e in score(scenario(**FULL), other).expectations if e.name == "max_incidents")
    assert counted.passed and counted.observed == 1 and "incident__s" in counted.detail


def test_a_re_evaluation_run_is_the_same_incident_and_its_conclusion_is_the_incidents() -> None:
    """Issue 19: the first run waited at insufficient evidence; a gate breach started a re-evaluation
    run (conf ``reevaluates``) that rolled back. One incident; scored on the re-evaluation run."""
    from harness.scenario.collect import follow_reevaluations

    waited = run_obs(decision="insufficient_evidence", decision_rule="insufficient_evidence",
                     rollback_outcome=None, grade="L2", incident_grade="L3")  # fmt: skip
    again = run_obs(run_id="incident__a__r2", reevaluates="incident__a", grade="L3")
    obs = observation(waited, again)
    assert follow_reevaluations(obs) == "incident__a__r2"
    obs.primary = "incident__a__r2"
    expect = {**FULL, "grade": ["L3"], "max_incidents": 1}
    result = score(scenario(**expect), obs)
    by = {e.name: e for e in result.expectations}
    assert by["max_incidents"].passed and by["max_incidents"].observed == 1
    assert by["decision_rule"].passed and by["rollback"].passed


def test_healthy_expectations_forbidden_incident_nothing_blamed_and_no_rollback() -> None:
    healthy = Scenario.model_validate(
        {
            "name": "h",
            "description": "x",
            "traffic": {"rate": 3},
            "trigger": {"kind": "manual", "after_s": 60},
            "expect": {
                "alert_incident": "forbidden",
                "nothing_blamed": True,
                "rollback": False,
                "decision": ["continue"],
            },
        }
    )
    quiet = run_obs(
        run_id="manual__h",
        kind="manual",
        findings=[],
        rollback_outcome=None,
        decision="continue",
        recovered=None,
    )
    ok = score(healthy, observation(quiet, manual_triggered_at=100.0))
    assert ok.status == "pass", ok.failed
    assert ok.timings["detection_s"] is None and ok.timings["run_created_s"] == 7.0
    noisy = run_obs(run_id="incident__n", decision="rollback")
    bad = score(healthy, observation(quiet, noisy, manual_triggered_at=100.0))
    assert {e.name for e in bad.failed} == {"alert_incident", "nothing_blamed", "rollback"}


def test_pii_expectation_fails_on_a_leak_and_on_a_vacuous_search() -> None:
    sc = Scenario.model_validate(
        {
            "name": "p",
            "description": "x",
            "traffic": {"rate": 3},
            "faults": [{"name": "pii_in_logs"}, {"name": "error_burst", "channel": "text"}],
            "expect": {"pii_in_artifacts": False},
        }
    )
    clean = score(sc, observation(run_obs(), pii_values_logged=12))
    assert clean.status == "pass"
    leak = score(sc, observation(run_obs(pii_leaks=["a/b.json: email"]), pii_values_logged=12))
    assert [e.observed for e in leak.failed] == [["a/b.json: email"]]
    vacuous = score(sc, observation(run_obs(), pii_values_logged=0))
    assert vacuous.failed and "vacuous" in vacuous.failed[0].detail


def test_runner_errors_make_the_scenario_an_error_and_the_suite_figures_add_up() -> None:
    sc_roll, sc_none = scenario(rollback=True), scenario(rollback=False)
    o1 = observation(run_obs(), peak_rss_mib=9000.0)
    o2 = observation(
        run_obs(times=RunTimes(alert_fired=0.0, first_evidence=3.0, finished=50.0)), peak_rss_mib=9500.0
    )
    o3 = observation(errors=["the traffic generator exited early"])
    items = [
        (sc_roll, o1, score(sc_roll, o1)),
        (sc_none, o2, score(sc_none, o2)),
        (sc_roll, o3, score(sc_roll, o3)),
    ]
    assert [s.status for _, _, s in items] == ["pass", "fail", "error"]
    fig = suite_figures(items)
    assert fig["accuracy"] == round(1 / 3, 4) and fig["passed"] == 1 and fig["errors"] == 1
    assert fig["healthy_rollbacks"] == 1 and fig["healthy_rollback_scenarios"] == ["s"]
    assert fig["first_evidence_median_s"] == 6.0  # median of 9.0 and 3.0
    assert fig["rollback_applied_median_s"] == 13.5  # o2 has no rollback time
    assert fig["fault_to_rollback_median_s"] == 53.5
    assert fig["incident_total_median_s"] == 125.0 and fig["peak_rss_mib"] == 9500.0
    assert timings(o3)["total_s"] is None


# --- the runner's pieces that need no stack ---------------------------------------------------------


def test_the_suite_runs_on_a_runbooks_copy_whose_rollback_rate_limit_is_raised(tmp_path: Path) -> None:
    from diagnostics.runbooks import load_runbooks
    from harness.scenario.suite_stack import RunnerError, suite_runbooks

    books = suite_runbooks(REPO / "runbooks", tmp_path / "books")
    target = load_runbooks(books).targets.get("testbed")
    assert target.rollback.max_changes == 100
    assert load_runbooks(REPO / "runbooks").targets.get("testbed").rollback.max_changes == 3  # untouched
    broken = tmp_path / "broken"
    suite_runbooks(REPO / "runbooks", broken)
    text = (broken / "targets.yaml").read_text().replace("admin_token_env: TRIAGE24_TESTBED_ADMIN_TOKEN", "")
    (broken / "targets.yaml").write_text(text)
    with pytest.raises(RunnerError, match="cannot raise its rate limit"):
        suite_runbooks(broken, tmp_path / "again")


def test_truncated_logs_keep_their_appending_writers(tmp_path: Path) -> None:
    from harness.scenario.control import truncate_logs

    log = tmp_path / "testbed-canary.jsonl"
    with log.open("a", encoding="utf-8") as writer:  # as logging.FileHandler opens it
        writer.write("old line\n")
        writer.flush()
        assert truncate_logs(tmp_path) == [log]
        writer.write("new line\n")
        writer.flush()
    assert log.read_text() == "new line\n"  # no hole of NULs where the old content was


def test_the_cli_validates_files_and_refuses_to_run_an_invalid_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    assert main(["scenario", "validate", str(SCENARIOS)]) == 0
    assert "ok " in capsys.readouterr().out
    bad = write(tmp_path, MINIMAL.replace("magnitude: 0.5", "magnitude: -1"))
    assert main(["scenario", "validate", str(bad)]) == 2
    assert "faults[0]: magnitude -1.0 out of range" in capsys.readouterr().err
    # nothing starts: the suite is validated first (no stack, no home written)
    home = tmp_path / "home"
    code = main(["scenario", "run", str(bad), "--home", str(home), "--no-summary"])
    assert code == 2 and not home.exists()
    assert "nothing was run" in capsys.readouterr().err


def test_rescore_judges_stored_observations_against_the_files_as_they_are_now(tmp_path: Path) -> None:
    from harness.scenario.results import ScenarioOutcome, rescore

    path = write(
        tmp_path, MINIMAL.replace("  rollback: true\n", "  rollback: true\n  grade: [L3]\n"), "s.yaml"
    )
    sc = load_scenario(path)
    obs = observation(run_obs())  # graded L4: the expectation L3 fails
    out = tmp_path / "out"
    out.mkdir()
    first = ScenarioOutcome(path, sc, obs, score(sc, obs))
    assert first.score.status == "fail"
    (out / "s.json").write_text(json.dumps(first.as_json(), default=str))
    summary_path = tmp_path / "scenarios.json"
    summary_path.write_text(json.dumps({"command": "triage24 scenario run x", "machine": "m", "results": []}))
    path.write_text(path.read_text().replace("grade: [L3]", "grade: [L4]"))
    summary = rescore(out, summary_path)
    assert summary["passed"] == 1 and summary["command"] == "triage24 scenario run x" and summary["rescored"]
    assert json.loads((out / "s.json").read_text())["status"] == "pass"
    assert json.loads(summary_path.read_text())["results"][0]["status"] == "pass"


# --- the real runner on a real stack ----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.models
@pytest.mark.timeout(3600)
def test_the_healthy_control_and_a_fault_scenario_through_the_real_runner(tmp_path: Path) -> None:
    """The ``ci`` subset (the healthy control, model_not_loaded) on a stack the runner starts itself in a
    temporary home on free ports: every step really happens, the runner cleans up after each scenario,
    and a correct pipeline's conclusions are met. Timing deadlines are recorded, not asserted here (the
    benchmark reports them; a loaded CI machine must not fail the pipeline's logic for being slow)."""
    from harness.scenario.runner import run_suite
    from harness.stack import Stack
    from tests.conftest import stack_settings
    from tests.support.testbed_procs import require_models

    require_models()
    suite = load_suite([SCENARIOS], tags=["ci"])
    assert [sc.id for _, sc in suite] == ["healthy_control", "model_not_loaded"]
    # CI time: the control's quiet stretch before the engineer opens the investigation is 60 s here
    # (150 s in the benchmark): with the 30 s warm-up, 90 s of traffic, past every rule's `for:` and
    # the canary gate's 60 s window (72 canary image requests at 1.2 a second: over min_requests).
    (path, control), fault_case = suite
    assert control.trigger.after_s == 150
    suite = [
        (path, control.model_copy(update={"trigger": control.trigger.model_copy(update={"after_s": 60})})),
        fault_case,
    ]
    settings = stack_settings(tmp_path / "home")
    lines: list[str] = []

    def say(msg: str) -> None:  # progress with `pytest -s`; the tail goes into a failure's message
        lines.append(msg)
        print(msg, flush=True)

    result = run_suite(
        suite,
        settings,
        out_dir=tmp_path / "out",
        summary_path=tmp_path / "scenarios.json",
        timeout_cap_s=1200,
        command="pytest ci subset",
        say=say,
    )
    assert not result.interrupted
    summary = json.loads((tmp_path / "scenarios.json").read_text())
    assert summary["scenarios"] == 2 and summary["peak_rss_mib"] > 1000  # two testbed versions alone
    by = {o.scenario.id: o for o in result.outcomes}
    for name, outcome in by.items():
        assert outcome.score.status != "error", (name, outcome.observation.errors, lines[-30:])
        assert (tmp_path / "out" / f"{name}.json").is_file()
    assert json.loads((tmp_path / "out" / "_suite.json").read_text())["scenarios"] == 2  # for `merge`

    # The healthy canary is never rolled back and nothing is blamed on it. (Whether an SLA alert pages
    # and whether the evidence suffices for `continue` depend on the machine's load - a p99.99 of
    # 200 ms is breached by CPU contention alone - so the benchmark reports those, this test does not.)
    healthy = by["healthy_control"]
    passed = {e.name for e in healthy.score.expectations if e.passed}
    assert {"rollback", "nothing_blamed"} <= passed, [e.model_dump() for e in healthy.score.failed]
    manual = healthy.observation.primary_run()
    assert (
        manual is not None
        and manual.kind == "manual"
        and manual.decision in ("continue", "insufficient_evidence")
    )
    assert healthy.observation.weight_end == 50.0

    # The fault: every conclusion of a correct pipeline is met (deadlines aside, see above).
    logic = [e for e in by["model_not_loaded"].score.failed if not e.name.startswith("deadline.")]
    assert not logic, [e.model_dump() for e in logic]

    fault = by["model_not_loaded"].observation
    run = fault.primary_run()
    assert run is not None and run.kind == "alert" and run.decision == "rollback"
    assert fault.weight_start == 50.0 and fault.weight_end == 0.0  # the pipeline's own rollback
    t = by["model_not_loaded"].score.timings
    assert all(
        t[k] is not None for k in ("detection_s", "first_evidence_s", "rollback_applied_s", "total_s")
    ), t
    assert t["first_evidence_s"] < t["rollback_applied_s"] < t["total_s"]  # type: ignore[operator]

    # What the scheduler and the run left behind (the stack is down; its files stay): the rollback ran
    # on the fast path right after phase 1, phase 2 and 3 still ran, the deadlines were pruned.
    assert_the_fast_path_incident_left_its_record(settings, run.run_id)

    # Cleaned up: the runner's stack is down, nothing of it is left running.
    assert Stack(settings, with_testbed=True).supervisor_pid() is None


def assert_the_fast_path_incident_left_its_record(settings: Any, run_id: str) -> None:
    from harness.stack import Stack
    from tests.support.airflow_db import open_deadline_hours, task_states

    db = settings.airflow_home / "airflow.db"
    states = task_states(db, run_id)
    assert states["fast_path.rollback_now"] == "success", states
    assert states["decision.done_by_fast_path"] == "success", states
    assert states["deep_diagnosis.deep_summary"] == "success", states
    assert states["verified_delivery.audit_bundle"] == "success", states
    assert open_deadline_hours(db, run_id) == []  # finished long before its deadlines: none left, none missed

    root = settings.artifacts / run_id
    conf = json.loads((root / "incident.json").read_text())
    assert conf["target"] == "testbed"
    action = json.loads((root / "response" / "rollback.json").read_text())
    assert action["outcome"] == "applied" and action["before"]["canary_weight"] == 50
    recovery = json.loads((root / "response" / "recovery_verification.json").read_text())
    assert recovery["recovered"] is True, recovery["summary"]
    suite = json.loads((root / "verified_delivery" / "regression_suite.json").read_text())
    assert suite["version"] == "stable"  # phase 3 verified what serves after the rollback
    assert (root / "report" / "report.html").is_file()
    audit = (settings.home / "actions" / "audit" / "rollback.jsonl").read_text()
    token = Stack(settings, with_testbed=True).secrets["TRIAGE24_TESTBED_ADMIN_TOKEN"]
    assert run_id in audit and token not in audit


def test_each_result_names_the_commit_it_ran_from(tmp_path: Path) -> None:
    import subprocess

    from harness.scenario.results import checkout_commit

    assert checkout_commit(tmp_path) is None  # not a checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert checkout_commit(tmp_path) == head
    (tmp_path / "f").write_text("2")
    assert checkout_commit(tmp_path) == f"{head}-dirty"


def test_the_printed_figures_show_a_share_as_a_percentage_not_rounded_to_one() -> None:
    from rich.console import Console

    from harness.scenario.cli import figures_table

    console = Console(width=120, record=True)
    console.print(
        figures_table({"accuracy": 0.96, "expectation_accuracy": 0.9873, "fault_to_rollback_median_s": 85.04})
    )
    out = console.export_text()
    rows = {line.split()[1]: line.split()[3] for line in out.splitlines() if line.startswith("│")}
    assert rows["accuracy"] == "96.0%" and rows["expectation_accuracy"] == "98.7%"
    assert rows["fault_to_rollback_median_s"] == "85.0"
