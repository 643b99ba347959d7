"""Schema of ``runbooks/grading.yaml``: how the intake grades an alert group L1-L4 and when it escalates.

Each firing alert is graded by the first rule whose label matchers all match; a group's grade is the
highest grade among its firing alerts. Every grade has an escalation policy (seed SOP):

- L1 non-blocking: recorded and aggregated, escalated (and so an incident) only when it repeats
  ``at_least`` times ``within_s`` seconds;
- L2: an incident, never escalated by itself;
- L3: an incident, escalated when it lasts longer than ``longer_than_s`` and more than
  ``services_more_than`` services are impacted;
- L4 (core path failing or data-loss risk): an incident, escalated at once.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

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


class GradingRule(Strict):
    id: Identifier
    grade: GradeId
    description: str = ""
    match: dict[LabelName, str] = Field(
        min_length=1,
        description="label -> regular expression matched against the whole label value "
        "(a missing label is the empty string)",
    )

    @field_validator("match")
    @classmethod
    def _compile(cls, match: dict[str, str]) -> dict[str, str]:
        for label, pattern in match.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"match.{label}: {pattern!r} is not a valid regular expression: {exc}"
                ) from None
        return match


class DefaultGrade(Strict):
    grade: GradeId
    rule: Identifier = Field(description="the rule name reported when no rule matches")


class Grading(Strict):
    version: int = Field(ge=1)
    service_labels: list[LabelName] = Field(
        min_length=1, description="labels whose values together name one impacted service"
    )
    default: DefaultGrade
    grades: dict[GradeId, GradePolicy]
    rules: list[GradingRule] = Field(default_factory=list)

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
