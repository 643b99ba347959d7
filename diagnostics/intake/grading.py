"""Grading an alert group L1-L4 and deciding escalation, from ``runbooks/grading.yaml``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from diagnostics.runbooks.grading import (
    CorrelationRule,
    GradeId,
    GradePolicy,
    Grading,
    Immediate,
    Never,
    Repeats,
    Sustained,
    severity_key,
)
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


@dataclass(frozen=True)
class CorrelationKey:
    """The key under which a group's incident is found by other groups (see ``correlation`` in
    grading.yaml): the rule that gave it, the label values, and the rule's window."""

    rule: str
    labels: tuple[tuple[str, str], ...]  # (key label, value), "" for an absent optional key
    window_s: float

    @property
    def key(self) -> str:
        """What the journal stores and indexes (JSON: label values may hold any character)."""
        return json.dumps([self.rule, [list(kv) for kv in self.labels]], ensure_ascii=False)

    @property
    def text(self) -> str:
        """For people: ``target=testbed, version=canary`` (an absent key shows as ``version absent``)."""
        return ", ".join(f"{k}={v}" if v else f"{k} absent" for k, v in self.labels)


def load_grading(path: Path) -> Grading:
    """Load and validate grading.yaml (a RunbookError names file, line and field)."""
    return load_yaml_model(path, Grading, environ={})


class Grader:
    def __init__(self, grading: Grading) -> None:
        self.grading = grading
        # Label values come from every kind of sender: "Critical" and "critical" mean the same.
        self._rules = [
            (
                rule.id,
                rule.grade,
                [(label, re.compile(p, re.IGNORECASE)) for label, p in rule.match.items()],
                frozenset(rule.severity),
            )
            for rule in grading.rules
        ]
        self._correlation = [
            (rule, [(label, re.compile(p, re.IGNORECASE)) for label, p in rule.match.items()])
            for rule in grading.correlation.rules
        ]
        vocabulary = grading.severity
        self._severity_labels = tuple(vocabulary.labels) if vocabulary else ()
        self._words = vocabulary.lookup() if vocabulary else {}

    @property
    def rule_ids(self) -> list[str]:
        """Every rule id a grade can name, the default's included."""
        return [r.id for r in self.grading.rules] + [self.grading.default.rule]

    def severity_of(self, labels: Mapping[str, str]) -> str | None:
        """The alert's severity level: the first severity label whose value the vocabulary knows."""
        for name in self._severity_labels:
            level = self._words.get(severity_key(labels.get(name, "")))
            if level is not None:
                return level
        return None

    def grade_alert(self, labels: Mapping[str, str]) -> Graded:
        level = self.severity_of(labels)
        for rule_id, grade, matchers, levels in self._rules:
            if levels and level not in levels:
                continue
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

    @property
    def quiet_s(self) -> float:
        """How long an incident whose run has ended stays open after its last delivery, nothing firing."""
        return self.grading.correlation.quiet_s

    def correlation(self, firing: Sequence[Mapping[str, str]], grade: GradeId) -> CorrelationKey | None:
        """The correlation key of a group's firing alerts (of grade ``grade``): the first rule that
        applies, or None when none does (the group's incidents are its own)."""
        if not firing:
            return None
        for rule, matchers in self._correlation:
            if grade not in rule.grades:
                continue
            if not all(rx.fullmatch(labels.get(label, "")) for labels in firing for label, rx in matchers):
                continue
            values = _shared_values(rule, firing)
            if values is not None:
                return CorrelationKey(rule.id, values, rule.window_s)
        return None

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


def _shared_values(
    rule: CorrelationRule, firing: Sequence[Mapping[str, str]]
) -> tuple[tuple[str, str], ...] | None:
    """Each key's one value among the alerts; None when a required key is absent or not shared (the
    group spans several values of it, e.g. two versions: no one incident it belongs with)."""
    out = []
    for name in rule.keys:
        values = {labels.get(name, "") for labels in firing}
        value = values.pop() if len(values) == 1 else ""
        if not value and name not in rule.optional:
            return None
        out.append((name, value))
    return tuple(out)
