"""Grading L1-L4 from runbooks/grading.yaml: the seed rules, the escalation policies, and schema errors
that name file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diagnostics.intake.grading import EscalationFacts, Grader, load_grading
from diagnostics.runbooks import RunbookError, load_runbooks
from diagnostics.runbooks.grading import GradeId
from tests.conftest import REPO

GRADING = REPO / "runbooks" / "grading.yaml"


@pytest.fixture(scope="module")
def grader() -> Grader:
    return Grader(load_grading(GRADING))


@pytest.mark.parametrize(
    ("labels", "grade", "rule"),
    [
        (
            {"alertname": "ModelNotLoaded", "severity": "critical", "impact": "core_path"},
            "L4",
            "core_path_failing",
        ),
        ({"alertname": "X", "impact": "Core_Path"}, "L4", "core_path_failing"),  # case-insensitive
        ({"alertname": "Anything", "impact": "data_loss"}, "L4", "data_loss_risk"),
        ({"alertname": "CanaryGate5xx", "severity": "critical"}, "L3", "canary_gate_breach"),
        ({"alertname": "CanaryGateP99Latency"}, "L3", "canary_gate_breach"),
        # the canary watch's rejection opens its incident like a gate breach (and re-evaluates one)
        ({"alertname": "CanaryWatchRejected", "severity": "critical"}, "L3", "canary_gate_breach"),
        ({"alertname": "Something", "severity": "critical"}, "L3", "critical_severity"),
        ({"alertname": "LatencySLABreach", "severity": "warning"}, "L2", "service_degraded"),
        # this repo's own rules say "high" below the gates (problem label); elsewhere high is critical
        (
            {"alertname": "AsrTimeouts", "severity": "high", "problem": "audio_timeout"},
            "L2",
            "sla_problem_below_gate",
        ),
        ({"alertname": "AsrTimeouts", "severity": "high"}, "L3", "critical_severity"),
        ({"alertname": "InstanceCpuSpike", "severity": "info"}, "L1", "non_blocking"),
        ({"alertname": "NoSeverity"}, "L2", "unclassified"),
        ({"alertname": "X", "severity": "criticalish"}, "L2", "unclassified"),  # whole-value match
    ],
)
def test_seed_rules(grader: Grader, labels: dict[str, str], grade: str, rule: str) -> None:
    graded = grader.grade_alert(labels)
    assert (graded.grade.value, graded.rule) == (grade, rule)


def test_a_group_takes_its_highest_alert_grade(grader: Grader) -> None:
    group = [
        {"alertname": "A", "severity": "info"},
        {"alertname": "B", "severity": "warning"},
        {"alertname": "C", "impact": "core_path"},
        {"alertname": "D", "severity": "critical"},
    ]
    graded = grader.grade_group(group)
    assert (graded.grade, graded.rule) == (GradeId.L4, "core_path_failing")
    assert grader.grade_group([]).grade is GradeId.L2


def test_l1_escalates_only_when_it_repeats_5_times_an_hour(grader: Grader) -> None:
    assert not grader.policy(GradeId.L1).starts_incident
    four = grader.escalation(GradeId.L1, EscalationFacts(repeats=4))
    five = grader.escalation(GradeId.L1, EscalationFacts(repeats=5))
    assert not four.escalated and five.escalated
    assert five.rule == "L1.repeats"
    assert five.reason == "fired 5 time(s) within 3600 s (>= 5 to escalate)"


def test_l3_escalates_when_it_lasts_over_180_s_on_more_than_2_services(grader: Grader) -> None:
    esc = grader.escalation
    assert not esc(GradeId.L3, EscalationFacts(duration_s=180, services=5)).escalated, "> 180 s, not >="
    assert not esc(GradeId.L3, EscalationFacts(duration_s=181, services=2)).escalated, "> 2 services"
    hit = esc(GradeId.L3, EscalationFacts(duration_s=181, services=3))
    assert hit.escalated and hit.rule == "L3.sustained"
    assert hit.reason == "firing for 181 s (> 180 s) on 3 service(s) (> 2)"


def test_l4_escalates_at_once_and_l2_never(grader: Grader) -> None:
    assert grader.escalation(GradeId.L4, EscalationFacts()).escalated
    assert not grader.escalation(
        GradeId.L2, EscalationFacts(repeats=99, duration_s=1e6, services=99)
    ).escalated
    assert all(grader.policy(g).starts_incident for g in (GradeId.L2, GradeId.L3, GradeId.L4))


def test_services_are_distinct_service_label_combinations(grader: Grader) -> None:
    assert grader.service_of({"target": "testbed", "channel": "audio", "x": "1"}) == ("testbed", "audio")
    assert grader.service_of({"alertname": "X"}) is None


def test_grading_is_part_of_runbook_validation() -> None:
    load_runbooks(REPO / "runbooks", environ={})  # grading.yaml included, valid


@pytest.fixture
def grading_copy(tmp_path: Path) -> Path:
    path = tmp_path / "grading.yaml"
    shutil.copy(GRADING, path)
    return path


def _edit(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if new.splitlines()[0] in line)


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ('match: {alertname: "CanaryGate.*|CanaryWatchRejected"}', 'match: {alertname: "CanaryGate(.*"}',
         "rules[2].match", "regular"),
        ("grade: L3\n    description: critical", "grade: L5\n    description: critical",
         "rules[4].grade", "'L1', 'L2', 'L3' or 'L4'"),
        ("escalation: {kind: repeats, at_least: 5, within_s: 3600}",
         "escalation: {kind: repeats, at_least: 5, within_s: -1}", "grades.L1.escalation.repeats.within_s",
         "greater than 0"),
        ("escalation: {kind: never}", "escalation: {kind: sometimes}", "grades.L2.escalation.kind",
         "sometimes"),
        ("  - id: data_loss_risk", "  - id: core_path_failing", "", "repeated: core_path_failing"),
        ("escalation: {kind: immediate}", "escalation: {kind: never}", "", "must be 'immediate'"),
        ("service_labels: [target, channel]", "service_labels: []", "service_labels", "at least 1"),
    ],
)  # fmt: skip
def test_a_malformed_grading_file_names_file_line_and_field(
    grading_copy: Path, old: str, new: str, field: str, words: str
) -> None:
    _edit(grading_copy, old, new)
    with pytest.raises(RunbookError) as info:
        load_grading(grading_copy)
    problem = info.value.problems[0]
    assert problem.file == grading_copy
    assert problem.field == field, str(info.value)
    assert words in problem.message, problem.message
    if field:
        assert problem.line is not None
        text = grading_copy.read_text().splitlines()[problem.line - 1]
        assert field.split(".")[-1].split("[")[0] in text or new.split(":")[0].strip() in text, (
            problem,
            text,
        )


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("optional: [version]", "optional: [instance]", "correlation.rules[0]",
         "optional: instance not in keys (target, version); add it there"),
        ("optional: [version]", "optional: [version, target]", "correlation.rules[0]",
         "at least one key must be required"),
        ("keys: [target, version]", "keys: [target, target]", "correlation.rules[0]",
         "keys: target repeated; name each label once"),
        ("      window_s: 1800", "      window_s: 0", "correlation.rules[0].window_s", "greater than 0"),
        ("      window_s: 1800", "      # window_s left out", "correlation.rules[0].window_s",
         "required field is missing"),
        ("  quiet_s: 1800", "  quiet_s: -5", "correlation.quiet_s", "greater than or equal to 0"),
        ("      window_s: 1800", "      window_s: 1800\n      grades: [L5]", "correlation.rules[0].grades[0]",
         "'L1', 'L2', 'L3' or 'L4'"),
        ("      window_s: 1800", "      window_s: 1800\n      match: {alertname: '(x'}",
         "correlation.rules[0].match", "match.alertname: '(x' is not a valid regular expression"),
        ("      window_s: 1800", "      window_s: 1800\n    - id: same_target_version\n      window_s: 60",
         "correlation", "ids must be unique; repeated: same_target_version"),
    ],
)  # fmt: skip
def test_a_malformed_correlation_rule_names_its_field(
    grading_copy: Path, old: str, new: str, field: str, words: str
) -> None:
    _edit(grading_copy, old, new)
    with pytest.raises(RunbookError) as info:
        load_grading(grading_copy)
    problem = info.value.problems[0]
    assert (problem.file, problem.field) == (grading_copy, field), str(info.value)
    assert words in problem.message and problem.line is not None


def test_the_seed_correlation_rule() -> None:
    correlation = load_grading(GRADING).correlation
    assert correlation.quiet_s == 1800
    (rule,) = correlation.rules
    assert (rule.id, rule.keys, rule.optional, rule.window_s) == (
        "same_target_version", ["target", "version"], ["version"], 1800,
    )  # fmt: skip
    assert rule.grades == list(GradeId) and rule.match == {}
