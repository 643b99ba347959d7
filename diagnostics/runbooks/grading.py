"""Schema of ``runbooks/grading.yaml``: how the intake grades an alert group L1-L4 and when it escalates.

Each firing alert is graded by the first rule whose conditions all hold; a group's grade is the
highest grade among its firing alerts. A rule's conditions: ``match`` (label -> regular expression on
the whole value, case-insensitive) and ``severity`` (levels of the ``severity`` vocabulary). The
vocabulary maps the words alert sources use (``Critical``, ``page``, ``P0``, ``major``, ...) to a few
levels, case-insensitively; the first of its ``labels`` an alert carries with a known word gives the
alert's level. Every grade has an escalation policy (seed SOP):

- L1 non-blocking: recorded and aggregated, escalated (and so an incident) only when it repeats
  ``at_least`` times ``within_s`` seconds;
- L2: an incident, never escalated by itself;
- L3: an incident, escalated when it lasts longer than ``longer_than_s`` and more than
  ``services_more_than`` services are impacted;
- L4 (core path failing or data-loss risk): an incident, escalated at once.

``correlation``: one fault often fires in several alert groups (the regression watch's
``GoldenRegression`` and Prometheus' ``ModelNotLoaded`` for the same canary). A new group whose firing
alerts share an open incident's correlation key (the first applicable rule's ``keys``) joins that
incident within the rule's ``window_s`` instead of opening its own. An incident stays open while any
of its alerts fires, and ``quiet_s`` after its run ended and its last delivery came.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from diagnostics.runbooks.schemas import Identifier, Strict

LabelName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class GradeId(StrEnum):
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"

    @property
    def rank(self) -> int:
        return int(self.value[1])


class Never(Strict):
    kind: Literal["never"]


class Immediate(Strict):
    kind: Literal["immediate"]


class Repeats(Strict):
    """Escalate when the group fired at least ``at_least`` distinct times within ``within_s``."""

    kind: Literal["repeats"]
    at_least: int = Field(ge=2, le=10_000)
    within_s: float = Field(gt=0, le=7 * 86_400)


class Sustained(Strict):
    """Escalate when the group has fired for longer than ``longer_than_s`` and more than
    ``services_more_than`` services (see ``service_labels``) have firing alerts."""

    kind: Literal["sustained"]
    longer_than_s: float = Field(ge=0, le=7 * 86_400)
    services_more_than: int = Field(ge=0, le=10_000)


Escalation = Annotated[Never | Immediate | Repeats | Sustained, Field(discriminator="kind")]


class GradePolicy(Strict):
    title: str = Field(min_length=1)
    starts_incident: bool = Field(description="false: recorded and aggregated until it escalates")
    escalation: Escalation


SeverityWord = Annotated[str, Field(min_length=1, max_length=64)]


def severity_key(value: str) -> str:
    """How a label value is looked up in the vocabulary: case and surrounding spaces do not count."""
    return value.strip().casefold()


class SeverityVocabulary(Strict):
    labels: list[LabelName] = Field(
        min_length=1,
        description="labels that may carry a severity, in order: the first with a known word wins",
    )
    levels: dict[Identifier, list[SeverityWord]] = Field(
        min_length=1, description="level -> the words that mean it (matched case-insensitively)"
    )

    @model_validator(mode="after")
    def _one_level_per_word(self) -> SeverityVocabulary:
        seen: dict[str, str] = {}
        for level, words in self.levels.items():
            for word in words:
                key = severity_key(word)
                if not key:
                    raise ValueError(f"levels.{level}: {word!r} is blank")
                if seen.get(key, level) != level:
                    raise ValueError(
                        f"levels: {word!r} is in both {seen[key]!r} and {level!r}; a word means one level"
                    )
                seen[key] = level
        return self

    def lookup(self) -> dict[str, str]:
        """Normalised word -> level."""
        return {severity_key(w): level for level, words in self.levels.items() for w in words}


def _valid_patterns(match: dict[str, str]) -> dict[str, str]:
    for label, pattern in match.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"match.{label}: {pattern!r} is not a valid regular expression: {exc}") from None
    return match


class GradingRule(Strict):
    id: Identifier
    grade: GradeId
    description: str = ""
    match: dict[LabelName, str] = Field(
        default_factory=dict,
        description="label -> regular expression matched case-insensitively against the whole label "
        "value (a missing label is the empty string)",
    )
    severity: list[Identifier] = Field(
        default_factory=list, description="levels of the severity vocabulary; the alert's level is one"
    )

    @field_validator("match")
    @classmethod
    def _compile(cls, match: dict[str, str]) -> dict[str, str]:
        return _valid_patterns(match)

    @model_validator(mode="after")
    def _has_a_condition(self) -> GradingRule:
        if not self.match and not self.severity:
            raise ValueError("a rule needs match (label patterns), severity (levels) or both")
        return self


class DefaultGrade(Strict):
    grade: GradeId
    rule: Identifier = Field(description="the rule name reported when no rule matches")


class CorrelationRule(Strict):
    """When a new alert group joins another group's open incident instead of opening its own (as Keep's
    correlation rules do): the group's firing alerts share the incident's values of ``keys`` and the
    incident had a delivery within ``window_s``. The first rule that applies to a group gives its key."""

    id: Identifier
    description: str = ""
    keys: list[LabelName] = Field(
        default_factory=lambda: ["target", "version"],
        min_length=1,
        max_length=8,
        description="labels whose values, shared by every firing alert of a group, make its correlation key",
    )
    optional: list[LabelName] = Field(
        default_factory=list,
        description="keys a group may lack (or its alerts disagree on): it then correlates only with "
        "incidents that lack them too, e.g. a target-wide alert with target-wide incidents",
    )
    window_s: float = Field(
        gt=0, le=7 * 86_400, description="how long after an incident's last delivery a new group may join it"
    )
    match: dict[LabelName, str] = Field(
        default_factory=dict,
        description="label -> regular expression every firing alert of the group matches "
        "(case-insensitive, whole value; a missing label is the empty string)",
    )
    grades: list[GradeId] = Field(
        default_factory=lambda: list(GradeId),
        min_length=1,
        description="the group grades that may join an incident, or open one that others join",
    )

    @field_validator("match")
    @classmethod
    def _compile(cls, match: dict[str, str]) -> dict[str, str]:
        return _valid_patterns(match)

    @model_validator(mode="after")
    def _keys(self) -> CorrelationRule:
        repeated = sorted({k for k in self.keys if self.keys.count(k) > 1})
        if repeated:
            raise ValueError(f"keys: {', '.join(repeated)} repeated; name each label once")
        stray = [k for k in self.optional if k not in self.keys]
        if stray:
            keys = ", ".join(self.keys)
            raise ValueError(f"optional: {', '.join(stray)} not in keys ({keys}); add it there")
        if set(self.optional) >= set(self.keys):
            raise ValueError(
                "optional: at least one key must be required, or every group without those labels "
                "would join one incident"
            )
        return self


class Correlation(Strict):
    quiet_s: float = Field(
        default=1800.0,
        ge=0,
        le=7 * 86_400,
        description="an incident whose run has ended closes once none of its alerts fires and none of its "
        "groups was delivered for this long; until then the same alerts firing again update it",
    )
    rules: list[CorrelationRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Correlation:
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rules: ids must be unique; repeated: {', '.join(dupes)}")
        return self


class Grading(Strict):
    version: int = Field(ge=1)
    service_labels: list[LabelName] = Field(
        min_length=1, description="labels whose values together name one impacted service"
    )
    default: DefaultGrade
    grades: dict[GradeId, GradePolicy]
    severity: SeverityVocabulary | None = None
    rules: list[GradingRule] = Field(default_factory=list)
    correlation: Correlation = Field(
        default_factory=Correlation, description="which alert groups join one incident; when it closes"
    )

    @field_validator("rules")
    @classmethod
    def _known_levels(cls, rules: list[GradingRule], info: ValidationInfo) -> list[GradingRule]:
        vocabulary = info.data.get("severity")  # validated before rules (declared first)
        levels = set(vocabulary.levels) if isinstance(vocabulary, SeverityVocabulary) else set()
        for i, rule in enumerate(rules):
            unknown = [lv for lv in rule.severity if lv not in levels]
            if unknown:
                defined = ", ".join(sorted(levels)) or "none: add a severity section"
                raise ValueError(
                    f"rules[{i}] ({rule.id}): severity level {unknown[0]!r} is not in severity.levels "
                    f"(defined: {defined})"
                )
        return rules

    @model_validator(mode="after")
    def _consistent(self) -> Grading:
        missing = [g.value for g in GradeId if g not in self.grades]
        if missing:
            raise ValueError(f"grades must define every grade L1-L4; missing: {', '.join(missing)}")
        ids = [r.id for r in self.rules] + [self.default.rule]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids (and default.rule) must be unique; repeated: {', '.join(dupes)}")
        if self.grades[GradeId.L4].escalation.kind != "immediate":
            raise ValueError(
                "grades.L4.escalation: L4 (core path failing, data-loss risk) must be 'immediate'"
            )
        return self
