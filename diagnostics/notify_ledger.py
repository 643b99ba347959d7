"""The notification ledger: what was sent for one incident, per state and per channel.

``<artifacts>/<incident>/notifications/ledger.json``, written by :mod:`diagnostics.notify` under a
per-incident lock. A ledger of before channels existed (one entry per state, no ``channels``) reads as
the one ``webhook`` channel it was written for, so an upgrade sends nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diagnostics.runbooks.notifications import LEGACY_CHANNEL, IncidentState

__all__ = ["ChannelEntry", "Delivery", "Ledger", "LedgerEntry", "read_ledger"]

log = logging.getLogger("triage24.notify")


class Delivery(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # already sent for this incident and state: nothing posted
    FILTERED = "filtered"  # below min_grade, ungraded and skipped, a state not configured, held back
    DISABLED = "disabled"  # no channel has its secret (URL, routing key)
    FAILED = "failed"  # retried, then given up; recorded in the ledger


class ChannelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delivery: Delivery = Field(description="sent or failed")
    first_at: str
    last_at: str
    attempts: int = Field(ge=0, description="deliveries tried on this channel, over every call")
    status_code: int | None = None
    error: str | None = None
    detail: str = ""


class LedgerEntry(BaseModel):
    """One state of one incident: per channel, and summed (sent once every channel had it)."""

    model_config = ConfigDict(extra="forbid")

    delivery: Delivery = Field(description="sent or failed")
    first_at: str
    last_at: str
    attempts: int = Field(ge=0, description="deliveries tried for this state, over every call and channel")
    status_code: int | None = None
    error: str | None = None
    text: str = Field(description="the (masked) fallback text of the message")
    channels: dict[str, ChannelEntry] = Field(
        default_factory=dict, description="per channel (empty in a ledger of before channels)"
    )

    def channel(self, name: str) -> ChannelEntry | None:
        """The channel's record; a ledger written before channels recorded the one webhook."""
        if self.channels or name != LEGACY_CHANNEL:
            return self.channels.get(name)
        fields = self.model_dump(
            include={"delivery", "first_at", "last_at", "attempts", "status_code", "error"}
        )
        return ChannelEntry(**fields)


class Ledger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_id: str
    states: dict[IncidentState, LedgerEntry] = Field(default_factory=dict)

    def sent_on(self, channel: str) -> frozenset[IncidentState]:
        """The states this channel already had."""
        return frozenset(
            s
            for s, e in self.states.items()
            if (c := e.channel(channel)) is not None and c.delivery is Delivery.SENT
        )

    def record(
        self, state: IncidentState, records: Mapping[str, ChannelEntry], *, text: str, now: str
    ) -> None:
        """Merge this call's channel records into ``state``'s entry and re-sum it."""
        old = self.states.get(state)
        channels = dict(old.channels) if old else {}
        if old and not old.channels and (legacy := old.channel(LEGACY_CHANNEL)) is not None:
            channels[LEGACY_CHANNEL] = legacy
        channels.update(records)
        failed = [c for c in channels.values() if c.delivery is not Delivery.SENT]
        latest = list(records.values())[-1]
        self.states[state] = LedgerEntry(
            delivery=Delivery.FAILED if failed else Delivery.SENT,
            first_at=old.first_at if old else now,
            last_at=now,
            attempts=sum(c.attempts for c in channels.values()),
            status_code=failed[0].status_code if failed else latest.status_code,
            error=failed[0].error if failed else None,
            text=text,
            channels=channels,
        )


def read_ledger(path: Path, incident_id: str) -> Ledger:
    try:
        return Ledger.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return Ledger(incident_id=incident_id)
    except (ValidationError, ValueError, OSError) as exc:
        # A damaged ledger must not silence the channel, nor stop the response: start a new one and
        # keep the old one beside it for a human to look at.
        log.warning(
            "notification ledger %s unreadable (%s); keeping it as .damaged", path, type(exc).__name__
        )
        path.replace(path.with_suffix(".damaged"))
        return Ledger(incident_id=incident_id)
