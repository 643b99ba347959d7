"""Schema of ``runbooks/notifications.yaml``: which incident state changes are sent, and where.

Each entry of ``channels`` is one place the on-call team reads or is paged from:

- ``webhook``: Slack-compatible JSON (``{"text", "blocks"}``) posted to one URL (a Slack incoming
  webhook, Mattermost, Rocket.Chat, any JSON receiver);
- ``apprise``: one or more Apprise URLs (``msteams://``, ``dingtalk://``, ``feishu://``, ``wecombot://``,
  ``slack://``, ``opsgenie://``, ``json://``, ...): Teams, DingTalk, Feishu, WeCom, Opsgenie and the
  rest from one URL each;
- ``pagerduty``: PagerDuty Events API v2, one alert per incident (``dedup_key`` = the incident),
  triggered on ``trigger_on`` and resolved on ``resolve_on``.

URLs and routing keys are secrets (they carry the token), so the file names where they are instead:
``connection_id`` (an Airflow Connection, used inside Airflow; it wins) and/or an environment variable
(``url_env`` / ``routing_key_env``, the CLI and any process without the Connection). A channel whose
secret is found nowhere is off; every channel off turns notifications off, never an error.

The file of before channels existed (a bare ``url_env`` next to ``min_grade``) still loads: it is one
``webhook`` channel named ``webhook``. ``timeout_s``, ``retries`` and ``backoff_s`` bound how long a dead
receiver can hold a task (per channel at most ``(retries + 1) · timeout_s`` plus the backoff sleeps).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, StringConstraints, model_validator

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


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=128)]
LEGACY_CHANNEL = "webhook"  # the name of the channel a bare ``url_env`` stands for
PagerDutySeverity = Literal["critical", "error", "warning", "info"]


class _Channel(Strict):
    ENV_FIELD: ClassVar[str] = "url_env"  # the field naming the environment variable of the secret

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_-]{0,39}$",
        description="names the channel in the ledger and the logs (lower case, unique)",
    )
    connection_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,250}$",
        description="in Airflow: the Connection holding the secret; it wins over the environment",
    )
    min_grade: GradeId | None = Field(
        default=None, description="this channel only from this grade up (default: notifications.min_grade)"
    )

    @model_validator(mode="after")
    def _needs_a_secret(self) -> Self:
        if self.connection_id is None and self.secret_env is None:
            raise ValueError(
                f"channel {self.name!r} names no secret: set connection_id (an Airflow Connection) "
                f"and/or {self.ENV_FIELD} (an environment variable)"
            )
        return self

    @property
    def secret_env(self) -> str | None:
        value = getattr(self, self.ENV_FIELD)
        return str(value) if value is not None else None

    def takes(self, state: IncidentState) -> bool:
        """Whether this channel gets ``state`` at all."""
        states: list[IncidentState] | None = getattr(self, "states", None)
        return states is None or state in states


class WebhookChannel(_Channel):
    """Slack-compatible JSON posted to one URL: the Connection's password (or its extra ``url``)."""

    kind: Literal["webhook"]
    url_env: EnvName | None = Field(default=None, description="the environment variable holding the URL")
    states: list[IncidentState] | None = Field(
        default=None, min_length=1, description="the states this channel gets (default: all of states)"
    )


class AppriseChannel(_Channel):
    """Apprise URLs: a Connection of type ``apprise`` (its ``config``: ``{"path": URL, "tag": ...}`` or
    a list of them), or the environment variable (URLs separated by spaces or commas)."""

    kind: Literal["apprise"]
    url_env: EnvName | None = Field(
        default=None, description="the environment variable holding the Apprise URL(s)"
    )
    states: list[IncidentState] | None = Field(
        default=None, min_length=1, description="the states this channel gets (default: all of states)"
    )
    tag: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="only the Connection's URLs with this tag (default: all of them)",
    )


def _default_severity() -> dict[GradeId | Literal["ungraded"], PagerDutySeverity]:
    return {
        GradeId.L1: "info",
        GradeId.L2: "warning",
        GradeId.L3: "error",
        GradeId.L4: "critical",
        "ungraded": "warning",
    }


class PagerDutyChannel(_Channel):
    """PagerDuty Events API v2: the routing (integration) key is the password of a ``pagerduty_events``
    Connection, or the environment variable."""

    ENV_FIELD: ClassVar[str] = "routing_key_env"

    kind: Literal["pagerduty"]
    routing_key_env: EnvName | None = Field(
        default=None, description="the environment variable holding the routing key"
    )
    events_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue",
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="the Events API v2 endpoint (a local receiver in tests)",
    )
    trigger_on: list[IncidentState] = Field(
        default_factory=lambda: [IncidentState.OPENED, IncidentState.ESCALATED],
        description="states that trigger (or update) the incident's alert",
    )
    resolve_on: list[IncidentState] = Field(
        default_factory=lambda: [IncidentState.RECOVERED, IncidentState.CLOSED],
        description="states that resolve it (an escalated alert is resolved only after a recovery)",
    )
    severity: dict[GradeId | Literal["ungraded"], PagerDutySeverity] = Field(
        default_factory=_default_severity,
        description="the alert's severity per grade; 'escalated' is always critical",
    )

    @model_validator(mode="after")
    def _actions(self) -> Self:
        both = sorted(set(self.trigger_on) & set(self.resolve_on))
        if both:
            raise ValueError(f"{', '.join(both)} both trigger and resolve: keep each state in one list")
        if not self.trigger_on:
            raise ValueError("trigger_on is empty: a PagerDuty channel that never triggers pages nobody")
        return self

    def takes(self, state: IncidentState) -> bool:
        return state in self.trigger_on or state in self.resolve_on


ChannelSpec = Annotated[WebhookChannel | AppriseChannel | PagerDutyChannel, Field(discriminator="kind")]


class NotificationSettings(Strict):
    url_env: EnvName | None = Field(
        default=None,
        description="the one webhook of before channels existed (a 'webhook' channel); "
        "new files list channels instead",
    )
    channels: list[ChannelSpec] = Field(
        default_factory=list, description="where state changes go (webhook, apprise, pagerduty)"
    )
    min_grade: GradeId = Field(description="incidents graded below this are not sent")
    ungraded: Literal["send", "skip"] = Field(
        default="send", description="manual investigations carry no grade: send them or not"
    )
    states: list[IncidentState] = Field(
        default_factory=lambda: list(IncidentState),
        min_length=1,
        description="the state changes that are sent (each channel may take fewer)",
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="per attempt")
    retries: int = Field(default=3, ge=0, le=10, description="attempts after the first, on 5xx/429/network")
    backoff_s: float = Field(default=1.0, ge=0, le=60, description="first wait; doubles per retry")
    max_backoff_s: float = Field(default=30.0, ge=0, le=600)

    @model_validator(mode="after")
    def _channels(self) -> Self:
        if self.url_env is not None and self.channels:
            raise ValueError(
                "url_env and channels both given: list the webhook as a channel "
                f"({{name: {LEGACY_CHANNEL}, kind: webhook, url_env: {self.url_env}}}) and drop url_env"
            )
        if self.url_env is None and not self.channels:
            raise ValueError("no channel: list channels (webhook, apprise, pagerduty), or give url_env")
        names = [c.name for c in self.channels]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"channel names must be unique; {', '.join(twice)} is used more than once")
        for c in self.channels:
            listed = {"states", "trigger_on", "resolve_on"} & c.model_fields_set  # defaults: no check
            never = [s.value for s in IncidentState if c.takes(s) and s not in self.states] if listed else []
            if never:
                raise ValueError(
                    f"channel {c.name!r} takes {', '.join(never)}, not in notifications.states: "
                    "it would never be sent; add it to states or drop it from the channel"
                )
            if c.min_grade is not None and c.min_grade.rank < self.min_grade.rank:
                raise ValueError(
                    f"channel {c.name!r}: min_grade {c.min_grade.value} is below notifications.min_grade "
                    f"{self.min_grade.value}, which filters first; raise it or lower the global one"
                )
        return self

    def channel_specs(self) -> list[WebhookChannel | AppriseChannel | PagerDutyChannel]:
        """The channels, the legacy ``url_env`` as the one ``webhook`` channel it always was."""
        if self.channels:
            return list(self.channels)
        return [WebhookChannel(name=LEGACY_CHANNEL, kind="webhook", url_env=self.url_env)]


class NotificationsFile(Strict):
    version: int = Field(ge=1)
    notifications: NotificationSettings
