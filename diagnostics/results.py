"""Result vocabulary shared by every check."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"
    # Missing data is its own outcome: it can never cause an automatic rollback or count as a pass.
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"


class CheckResult(BaseModel):
    """The common shape of a check's outcome; checks subclass it to add their figures."""

    model_config = ConfigDict(extra="forbid")

    check: str
    status: Status
    summary: str
    details: dict[str, object] = Field(default_factory=dict)
