"""Schema of ``runbooks/notifications.yaml``: where incident state changes are posted, and which.

The webhook URL itself is a secret (a Slack incoming-webhook URL carries its token), so the file
names the environment variable that holds it (``url_env``) instead of the URL; an unset variable
turns notifications off rather than failing the incident. ``min_grade`` keeps L1 noise out of the
channel; ``timeout_s``, ``retries`` and ``backoff_s`` bound how long a dead receiver can hold a task
(at most ``(retries + 1) · timeout_s`` plus the backoff sleeps).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.schemas import Strict


class IncidentState(StrEnum):
    """The state changes of an incident that are worth a message (one message each, at most)."""

    OPENED = "opened"
    DECIDED = "decided"
    ROLLED_BACK = "rolled_back"
    RECOVERED = "recovered"
    OVERDUE = "overdue"
    CLOSED = "closed"
    ESCALATED = "escalated"  # a page: a human is needed now (a rollback that did not recover, a hold)


class NotificationSettings(Strict):
    url_env: str = Field(
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        max_length=128,
        description="the environment variable holding the webhook URL (unset: notifications off)",
    )
    min_grade: GradeId = Field(description="incidents graded below this are not posted")
    ungraded: Literal["send", "skip"] = Field(
        default="send", description="manual investigations carry no grade: post them or not"
    )
    states: list[IncidentState] = Field(
        default_factory=lambda: list(IncidentState),
        min_length=1,
        description="the state changes that are posted",
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="per attempt")
    retries: int = Field(default=3, ge=0, le=10, description="attempts after the first, on 5xx/429/network")
    backoff_s: float = Field(default=1.0, ge=0, le=60, description="first wait; doubles per retry")
    max_backoff_s: float = Field(default=30.0, ge=0, le=600)


class NotificationsFile(Strict):
    version: int = Field(ge=1)
    notifications: NotificationSettings
