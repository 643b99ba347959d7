"""The severity vocabulary of runbooks/grading.yaml: the common schemes' words, any case, the labels they
come in, and how they grade."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics.intake.grading import Grader, load_grading
from tests.conftest import REPO

GRADER = Grader(load_grading(REPO / "runbooks" / "grading.yaml"))
VOCABULARY = GRADER.grading.severity
assert VOCABULARY is not None


@pytest.mark.parametrize(
    ("label", "value", "level", "grade", "rule"),
    [
        ("severity", "critical", "critical", "L3", "critical_severity"),
        ("severity", "Critical", "critical", "L3", "critical_severity"),
        ("severity", "CRITICAL", "critical", "L3", "critical_severity"),
        ("severity", "page", "critical", "L3", "critical_severity"),
        ("priority", "P0", "critical", "L3", "critical_severity"),
        ("priority", "P1", "critical", "L3", "critical_severity"),
        ("severity", "major", "critical", "L3", "critical_severity"),
        ("severity", "high", "critical", "L3", "critical_severity"),
        ("severity", " High ", "critical", "L3", "critical_severity"),
        ("severity", "warning", "warning", "L2", "service_degraded"),
        ("severity", "Warning", "warning", "L2", "service_degraded"),
        ("severity", "minor", "warning", "L2", "service_degraded"),
        ("priority", "P2", "warning", "L2", "service_degraded"),
        ("severity", "medium", "warning", "L2", "service_degraded"),
        ("severity", "info", "info", "L1", "non_blocking"),
        ("priority", "P3", "info", "L1", "non_blocking"),
        ("severity", "low", "info", "L1", "non_blocking"),
        ("severity", "none", "info", "L1", "non_blocking"),
        ("severity", "None", "info", "L1", "non_blocking"),
        ("severity", "criticalish", None, "L2", "unclassified"),
        ("severity", "", None, "L2", "unclassified"),
        ("team", "critical", None, "L2", "unclassified"),  # not a severity label
    ],
)
def test_the_common_schemes_grade_case_insensitively(
    label: str, value: str, level: str | None, grade: str, rule: str
) -> None:
    labels = {"alertname": "SomethingElse", label: value}
    assert GRADER.severity_of(labels) == level
    graded = GRADER.grade_alert(labels)
    assert (graded.grade.value, graded.rule) == (grade, rule)


def test_the_first_severity_label_with_a_known_word_wins() -> None:
    assert VOCABULARY is not None and VOCABULARY.labels[:2] == ["severity", "priority"]
    assert GRADER.severity_of({"severity": "info", "priority": "P0"}) == "info"
    # an unknown word does not hide a known one in a later label
    assert GRADER.severity_of({"severity": "sev-x", "priority": "P0"}) == "critical"
    assert GRADER.severity_of({"level": "4"}) is None  # a number some bridges use: no scheme's word


def test_the_repos_own_high_alerts_stay_below_the_gates() -> None:
    own = {"alertname": "Http5xxBurst", "target": "testbed", "severity": "high", "problem": "http_5xx_burst"}
    assert GRADER.grade_alert(own).rule == "sla_problem_below_gate"
    assert GRADER.grade_alert({**own, "problem": "something_else"}).rule == "critical_severity"
    assert GRADER.grade_alert({**own, "alertname": "CanaryGate5xx"}).grade.value == "L3"  # the gate first


def test_a_group_grades_on_its_highest_alert_whatever_the_scheme() -> None:
    graded = GRADER.grade_group([{"severity": "Low"}, {"priority": "p2"}, {"severity": "Page"}])
    assert (graded.grade.value, graded.rule) == ("L3", "critical_severity")


WORDS = [(word, level) for level, words in VOCABULARY.levels.items() for word in words]


@given(pair=st.sampled_from(WORDS), data=st.data())
def test_any_case_and_padding_of_a_vocabulary_word_means_its_level(
    pair: tuple[str, str], data: st.DataObject
) -> None:
    word, level = pair
    flips = data.draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    cased = "".join(c.upper() if f else c.lower() for c, f in zip(word, flips, strict=True))
    padded = data.draw(st.sampled_from(["", " ", "\t"])) + cased + data.draw(st.sampled_from(["", " "]))
    label = data.draw(st.sampled_from(VOCABULARY.labels))
    assert GRADER.severity_of({label: padded}) == level


@given(value=st.text(max_size=12))
def test_a_word_outside_the_vocabulary_has_no_level(value: str) -> None:
    known = {w.casefold() for w, _ in WORDS}
    if value.strip().casefold() not in known:
        assert GRADER.severity_of({"severity": value}) is None
        assert GRADER.grade_alert({"alertname": "X", "severity": value}).rule == "unclassified"
