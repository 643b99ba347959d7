"""The severity vocabulary and severity rules of grading.yaml: a mistake names the file, the field and
what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diagnostics.intake.grading import Grader, load_grading
from diagnostics.runbooks import RunbookError
from diagnostics.runbooks.grading import severity_key
from tests.conftest import REPO

GRADING = REPO / "runbooks" / "grading.yaml"


@pytest.fixture
def grading_copy(tmp_path: Path) -> Path:
    path = tmp_path / "grading.yaml"
    shutil.copy(GRADING, path)
    return path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("warning: [warning, warn,", "warning: [Critical, warn,", "severity",
         "'Critical' is in both 'critical' and 'warning'; a word means one level"),
        ("warning: [warning, warn,", "warning: ['  ', warn,", "severity", "levels.warning: '  ' is blank"),
        ("severity: [warning]", "severity: [degraded]", "rules",
         "rules[5] (service_degraded): severity level 'degraded' is not in severity.levels "
         "(defined: critical, info, warning)"),
        ("labels: [severity, priority, level, urgency]", "labels: [severity, 'prio-rity']",
         "severity.labels[1]", "should match pattern"),
        ("    severity: [info]", "    severity: []", "rules[6]", "a rule needs match"),
        ("  levels:\n", "  levelz:\n", "severity.levels", "required field is missing"),
    ],
)  # fmt: skip
def test_a_malformed_vocabulary_names_the_field(
    grading_copy: Path, old: str, new: str, field: str, words: str
) -> None:
    _edit(grading_copy, old, new)
    with pytest.raises(RunbookError) as info:
        load_grading(grading_copy)
    problem = info.value.problems[0]
    assert problem.file == grading_copy and problem.line is not None
    assert problem.field == field, str(info.value)
    assert words.lower() in problem.message.lower(), problem.message


def test_rules_need_a_vocabulary_to_name_levels(grading_copy: Path) -> None:
    text = grading_copy.read_text()
    start = text.index("severity:\n  labels:")
    end = text.index("grades:")
    grading_copy.write_text(text[:start] + text[end:])
    with pytest.raises(RunbookError) as info:
        load_grading(grading_copy)
    assert "(defined: none: add a severity section)" in str(info.value)


def test_without_a_vocabulary_only_label_patterns_grade(grading_copy: Path) -> None:
    grading_copy.write_text(
        "version: 1\nservice_labels: [target]\ndefault: {grade: L2, rule: unclassified}\n"
        "grades:\n"
        "  L1: {title: a, starts_incident: false, escalation: {kind: repeats, at_least: 2, within_s: 60}}\n"
        "  L2: {title: b, starts_incident: true, escalation: {kind: never}}\n"
        "  L3: {title: c, starts_incident: true, escalation: {kind: never}}\n"
        "  L4: {title: d, starts_incident: true, escalation: {kind: immediate}}\n"
        "rules:\n  - {id: crit, grade: L3, match: {severity: 'crit.*'}}\n"
    )
    grader = Grader(load_grading(grading_copy))
    assert grader.severity_of({"severity": "critical"}) is None
    assert grader.grade_alert({"severity": "CRITICAL"}).rule == "crit"  # patterns ignore case too
    assert grader.grade_alert({"severity": "warning"}).rule == "unclassified"


def test_severity_key_ignores_case_and_padding() -> None:
    assert severity_key("  P0\t") == severity_key("p0") == "p0"
    assert severity_key("MAJOR") == "major"
