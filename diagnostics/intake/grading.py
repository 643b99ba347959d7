"""Grading an alert group L1-L4 and deciding escalation, from ``runbooks/grading.yaml``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from diagnostics.runbooks.grading import GradeId, GradePolicy, Grading, Immediate, Never, Repeats, Sustained
from diagnostics.runbooks.loader import load_yaml_model


@dataclass(frozen=True)
class Graded:
    grade: GradeId
    rule: str


@dataclass(frozen=True)
class Escalation:
    escalated: bool
    rule: str  # e.g. "L3.sustained"
    reason: str


@dataclass(frozen=True)
class EscalationFacts:
    """What the escalation policies look at; None where the policy does not need it."""

    repeats: int | None = None  # distinct firings of the group within the policy's window
    duration_s: float | None = None  # how long the group has been firing
    services: int | None = None  # distinct impacted services with firing alerts


def load_grading(path: Path) -> Grading:
    """Load and validate grading.yaml (a RunbookError names file, line and field)."""
    return load_yaml_model(path, Grading, environ={})


class Grader:
    def __init__(self, grading: Grading) -> None:
        self.grading = grading
        self._rules = [
            (rule.id, rule.grade, [(label, re.compile(p)) for label, p in rule.match.items()])
            for rule in grading.rules
        ]

    def grade_alert(self, labels: Mapping[str, str]) -> Graded:
        for rule_id, grade, matchers in self._rules:
            if all(rx.fullmatch(labels.get(label, "")) for label, rx in matchers):
                return Graded(grade, rule_id)
        return Graded(self.grading.default.grade, self.grading.default.rule)

    def grade_group(self, alerts: Iterable[Mapping[str, str]]) -> Graded:
        """The highest grade among the alerts (the first alert wins a tie); default for none."""
        best: Graded | None = None
        for labels in alerts:
            graded = self.grade_alert(labels)
            if best is None or graded.grade.rank > best.grade.rank:
                best = graded
        return best or Graded(self.grading.default.grade, self.grading.default.rule)

    def policy(self, grade: GradeId) -> GradePolicy:
        return self.grading.grades[grade]

    def service_of(self, labels: Mapping[str, str]) -> tuple[str, ...] | None:
        """The impacted service an alert names, or None when it carries none of the service labels."""
        values = tuple(labels.get(name, "") for name in self.grading.service_labels)
        return values if any(values) else None

    def escalation(self, grade: GradeId, facts: EscalationFacts) -> Escalation:
        policy = self.policy(grade).escalation
        rule = f"{grade.value}.{policy.kind}"
        if isinstance(policy, Never):
            return Escalation(False, rule, f"{grade.value} does not escalate by itself")
        if isinstance(policy, Immediate):
            return Escalation(True, rule, f"{grade.value} escalates at once")
        if isinstance(policy, Repeats):
            n = facts.repeats or 0
            hit = n >= policy.at_least
            return Escalation(
                hit,
                rule,
                f"fired {n} time(s) within {policy.within_s:g} s "
                f"({'>=' if hit else '<'} {policy.at_least} to escalate)",
            )
        assert isinstance(policy, Sustained)
        duration = facts.duration_s or 0.0
        services = facts.services or 0
        long_enough = duration > policy.longer_than_s
        wide_enough = services > policy.services_more_than
        return Escalation(
            long_enough and wide_enough,
            rule,
            f"firing for {duration:.0f} s ({'>' if long_enough else '<='} {policy.longer_than_s:g} s) "
            f"on {services} service(s) ({'>' if wide_enough else '<='} {policy.services_more_than})",
        )
