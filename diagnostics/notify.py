"""Incident notifications: one message per incident per state change, on every configured channel.

The incident DAG calls :func:`notify` at each state change (``opened``, ``decided``,
``rolled_back``, ``recovered``, ``overdue``, ``closed``) and :func:`escalate` to page a human at once
(a rollback that did not recover the service). The message is Slack-compatible JSON
(``{"text": ..., "blocks": [...]}``; ``text`` is the fallback other receivers show), PII-masked
(:func:`diagnostics.pii.mask_pii`) before it leaves the process; each channel of
``runbooks/notifications.yaml`` (:mod:`diagnostics.runbooks.notifications`) delivers it its own way
(:mod:`diagnostics.notify_channels`: the webhook posts it as is, Apprise gets its title and Markdown,
PagerDuty one alert per incident).

Why a ledger: Airflow retries tasks, re-runs cleared tasks and may run a callback twice; each of
those would post again and storm the channel. ``<artifacts>/<incident>/notifications/ledger.json``
records every state already sent, per channel, written atomically under a per-incident lock, so a
repeated state change is a no-op (``duplicate``). A channel whose delivery failed is recorded as
``failed`` and is tried again by the next call for that state (it was never delivered); the channels
that had it are not asked again.

Why never an exception: a notification is a courtesy next to the response itself; a dead or slow
receiver must not fail the rollback task. A delivery that cannot connect, times out, or answers 5xx
or 429 is retried with exponential backoff (``Retry-After`` honoured, capped), then recorded as
failed. A channel whose secret (URL, routing key) is found neither in its Airflow Connection nor in
its environment variable is off; all off turns notifications off, logged once per process. Secrets
are never logged nor stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diagnostics.incident.model import SAFE_ID, Incident
from diagnostics.incident.store import write_json
from diagnostics.locks import file_lock
from diagnostics.notify_channels import (
    Channel,
    ChannelOutcome,
    IncidentInfo,
    SecretSource,
    build_channels,
    secret_source,
)
from diagnostics.notify_ledger import ChannelEntry, Delivery, Ledger, LedgerEntry, read_ledger
from diagnostics.pii import mask_pii
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.loader import load_yaml_model
from diagnostics.runbooks.notifications import IncidentState, NotificationSettings, NotificationsFile

__all__ = [
    "ChannelResult",
    "Delivery",
    "IncidentState",
    "Notifier",
    "NotifyResult",
    "escalate",
    "load_notifications",
    "message",
    "notify",
]

log = logging.getLogger("triage24.notify")

RUNBOOK = "notifications.yaml"
LEDGER_DIR = "notifications"
LEDGER = "ledger.json"
LOCK = ".ledger.lock"

_TITLES: dict[IncidentState, tuple[str, str]] = {
    IncidentState.OPENED: (":rotating_light:", "incident opened"),
    IncidentState.DECIDED: (":scales:", "decision made"),
    IncidentState.ROLLED_BACK: (":rewind:", "canary rolled back"),
    IncidentState.RECOVERED: (":white_check_mark:", "service recovered"),
    IncidentState.OVERDUE: (":hourglass:", "phase deadline passed"),
    IncidentState.CLOSED: (":lock:", "incident closed"),
    IncidentState.ESCALATED: (":sos:", "escalated: a human is needed now"),  # a page
}
# Slack's limits: header text 150 characters, section text 3000, 10 fields of 2000.
_HEADER_MAX, _SECTION_MAX, _FIELD_MAX, _FIELDS_MAX = 150, 3000, 2000, 10
_disabled_logged: set[str] = set()


class ChannelResult(BaseModel):
    """What one call did on one channel."""

    model_config = ConfigDict(extra="forbid")

    channel: str
    delivery: Delivery
    reason: str
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None

    @classmethod
    def of(cls, outcome: ChannelOutcome) -> ChannelResult:
        if outcome.delivered:
            reason = outcome.detail or "delivered"
        else:
            reason = f"not delivered after {outcome.attempts} attempt(s): {outcome.error}"
        return cls(
            channel=outcome.channel,
            delivery=Delivery.SENT if outcome.delivered else Delivery.FAILED,
            reason=reason,
            attempts=outcome.attempts,
            status_code=outcome.status_code,
            error=outcome.error,
        )


class NotifyResult(BaseModel):
    """One call, over its channels: failed if any failed, else sent if any sent, else duplicate."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str
    state: IncidentState
    delivery: Delivery
    reason: str
    attempts: int = 0  # over the channels tried by this call
    status_code: int | None = None
    error: str | None = None  # the first failure's
    channels: list[ChannelResult] = Field(default_factory=list)


def load_notifications(
    directory: Path | None = None, environ: Mapping[str, str] | None = None
) -> NotificationSettings:
    """``runbooks/notifications.yaml`` alone; RunbookError names file, line and field."""
    if directory is None:
        from diagnostics.config import Settings

        directory = Settings().runbooks_dir
    return load_yaml_model(directory / RUNBOOK, NotificationsFile, environ).notifications


# --- the message ----------------------------------------------------------------------------------


class _IncidentView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    incident_id: str = Field(pattern=SAFE_ID.pattern)
    target: str = "unknown target"
    grade: str | None = None


def _view(incident: Incident | Mapping[str, Any]) -> _IncidentView:
    data = incident.model_dump(mode="json") if isinstance(incident, Incident) else dict(incident)
    try:
        return _IncidentView.model_validate(data)
    except ValidationError as exc:
        raise ValueError(
            f"incident: needs an incident_id (a DAG run id) to notify about; {exc.errors()[0]['msg']}"
        ) from None


def _kind(state: IncidentState | str) -> IncidentState:
    try:
        return IncidentState(state)
    except ValueError:
        names = ", ".join(s.value for s in IncidentState)
        raise ValueError(f"state: {state!r} is not an incident state; use one of: {names}") from None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message(
    incident: Incident | Mapping[str, Any],
    state: IncidentState | str,
    summary: str = "",
    details: Mapping[str, object] | None = None,
    link: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The Slack-compatible body for one state change, every text PII-masked (pure; no I/O). The header
    names the incident by its title (:mod:`diagnostics.incident.title`: target, version and alert) when
    ``incident`` says which alerts it holds (an Incident, or a mapping with ``alert_names``), else by
    its target."""
    from diagnostics.incident.title import incident_title, title_of

    inc = _view(incident)
    st = _kind(state)
    emoji, title = _TITLES[st]
    grade = inc.grade or "ungraded"
    if isinstance(incident, Incident):
        name = title_of(incident)
    elif isinstance(incident.get("alert_names"), list | tuple):
        version = incident.get("suspected_version")
        names = [str(n) for n in incident["alert_names"]]
        name = incident_title(inc.target, version if isinstance(version, str) else None, names)
    else:
        name = inc.target
    head = mask_pii(f"{emoji} [{grade}] {title}: {name}")
    body = mask_pii(summary.strip()) or title
    when = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    fields = [("target", inc.target), ("grade", grade), ("state", str(st))]
    fields += [(str(k), str(v)) for k, v in (details or {}).items()]
    context = f"incident `{mask_pii(inc.incident_id)}` · {when}"
    if link:
        context += f" · <{link}|open in Airflow>"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(head, _HEADER_MAX), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(body, _SECTION_MAX)}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _cut(mask_pii(f"*{k}*\n{v}"), _FIELD_MAX)}
                for k, v in fields[:_FIELDS_MAX]
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]
    text = f"{head} ({mask_pii(inc.incident_id)})" + (f": {body}" if summary.strip() else "")
    return {"text": text, "blocks": blocks}


# --- delivery -------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _send(channel: Channel, body: dict[str, Any], info: IncidentInfo, state: IncidentState) -> ChannelOutcome:
    """The channel's outcome; a bug in a channel is a failed delivery too (its message may quote a
    secret, so only its type is kept)."""
    try:
        return channel.send(body, info, state)
    except Exception as exc:
        log.error("notification channel %s raised %s (a bug)", channel.name, type(exc).__name__)
        return ChannelOutcome(channel=channel.name, delivered=False, attempts=1, error=type(exc).__name__)


def _record(entry: LedgerEntry | None, name: str, outcome: ChannelOutcome, now: str) -> ChannelEntry:
    previous = entry.channel(name) if entry else None
    return ChannelEntry(
        delivery=Delivery.SENT if outcome.delivered else Delivery.FAILED,
        first_at=previous.first_at if previous else now,
        last_at=now,
        attempts=(previous.attempts if previous else 0) + outcome.attempts,
        status_code=outcome.status_code,
        error=outcome.error,
        detail=outcome.detail,
    )


def _summed(results: list[ChannelResult]) -> tuple[Delivery, str, dict[str, Any]]:
    """One call's delivery over its channels: failed if any failed, else sent if any was sent, else
    duplicate if any had it already, else filtered (every channel held it back)."""
    by = {d: [r for r in results if r.delivery is d] for d in Delivery}
    one = len(results) == 1
    if by[Delivery.FAILED]:
        first = by[Delivery.FAILED][0]
        attempts = sum(r.attempts for r in results)
        to = "" if one else f" to {', '.join(r.channel for r in by[Delivery.FAILED])}"
        reason = f"not delivered{to} after {first.attempts} attempt(s): {first.error}"
        return (
            Delivery.FAILED,
            reason,
            {"attempts": attempts, "status_code": first.status_code, "error": first.error},
        )
    if by[Delivery.SENT]:
        last = by[Delivery.SENT][-1]
        reason = "; ".join(r.reason if one else f"{r.channel}: {r.reason}" for r in by[Delivery.SENT])
        return (
            Delivery.SENT,
            reason,
            {"attempts": sum(r.attempts for r in results), "status_code": last.status_code},
        )
    if by[Delivery.DUPLICATE]:
        first = by[Delivery.DUPLICATE][0]
        return Delivery.DUPLICATE, first.reason, {"status_code": first.status_code}
    return Delivery.FILTERED, "; ".join(f"{r.channel}: {r.reason}" for r in results), {}


class Notifier:
    """Sends state changes for one configuration over its channels; reusable across incidents.

    ``channels`` replaces the ones built from the settings (tests, adapters); ``secrets`` the secret
    source (default: the one installed by :func:`diagnostics.notify_channels.use_secret_source`, else
    the environment, ``environ`` when given)."""

    def __init__(
        self,
        settings: NotificationSettings | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        root: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        secrets: SecretSource | None = None,
        channels: Sequence[Channel] | None = None,
    ) -> None:
        self.settings = settings or load_notifications(environ=environ)
        if channels is not None:
            self.channels: list[Channel] = list(channels)
            self.off: dict[str, str] = {}
        else:
            source = secrets or secret_source(environ)
            self.channels, self.off = build_channels(self.settings, source, transport=transport, sleep=sleep)
        self._root = root
        if self.channels:
            for name, why in self.off.items():
                if f"{name}: {why}" not in _disabled_logged:
                    _disabled_logged.add(f"{name}: {why}")
                    log.info("notification channel %s is off: %s", name, why)

    @property
    def enabled(self) -> bool:
        return bool(self.channels)

    @property
    def root(self) -> Path:
        if self._root is None:
            from diagnostics.config import Settings

            self._root = Settings().artifacts
        return self._root

    def ledger_path(self, incident_id: str) -> Path:
        return self.root / incident_id / LEDGER_DIR / LEDGER

    def _skip(self, inc: _IncidentView, state: IncidentState, min_grade: GradeId | None = None) -> str | None:
        """Why this change is not sent (None: it is); ``min_grade``: a channel's own."""
        cfg = self.settings
        if state not in cfg.states:
            return f"state {state} is not in notifications.states"
        if inc.grade is None:
            return "ungraded incident (notifications.ungraded: skip)" if cfg.ungraded == "skip" else None
        try:
            grade = GradeId(inc.grade)
        except ValueError:
            log.warning(
                "incident %s has grade %r, not L1-L4: treated as ungraded", inc.incident_id, inc.grade
            )
            return "unknown grade (notifications.ungraded: skip)" if cfg.ungraded == "skip" else None
        floor, where = (
            (min_grade, "its min_grade") if min_grade else (cfg.min_grade, "notifications.min_grade")
        )
        if grade.rank < floor.rank:
            return f"grade {grade.value} is below {where} {floor.value}"
        return None

    def _due(self, inc: _IncidentView, state: IncidentState) -> list[Channel]:
        return [
            c
            for c in self.channels
            if c.spec.takes(state)
            and (c.spec.min_grade is None or self._skip(inc, state, c.spec.min_grade) is None)
        ]

    def notify(
        self,
        incident: Incident | Mapping[str, Any],
        state: IncidentState | str,
        *,
        summary: str = "",
        details: Mapping[str, object] | None = None,
        link: str | None = None,
    ) -> NotifyResult:
        """Send ``state`` for ``incident`` on every channel that takes it and has not had it yet, unless
        filtered or disabled; never raises for a receiver (ValueError only for a state or incident
        that cannot be named)."""
        st = _kind(state)
        inc = _view(incident)

        def result(delivery: Delivery, reason: str, **kw: Any) -> NotifyResult:
            return NotifyResult(incident_id=inc.incident_id, state=st, delivery=delivery, reason=reason, **kw)

        if not self.channels:
            named = len(self.off) > 1
            why = "; ".join(f"{n}: {w}" if named else w for n, w in self.off.items()) or "no channel"
            if why not in _disabled_logged:
                _disabled_logged.add(why)
                log.info("notifications are off: %s", why)
            return result(Delivery.DISABLED, why)
        why_not = self._skip(inc, st)
        if why_not is not None:
            return result(Delivery.FILTERED, why_not)
        due = self._due(inc, st)
        if not due:
            return result(Delivery.FILTERED, f"no channel takes {st} for this incident (states, min_grade)")

        path = self.ledger_path(inc.incident_id)
        with file_lock(path.parent / LOCK):
            ledger = read_ledger(path, inc.incident_id)
            # message() gets the incident as given (not the view): its title needs the alerts it holds
            results = self._deliver(
                ledger, due, inc, st, lambda: message(incident, st, summary, details, link)
            )
            if any(r.delivery in (Delivery.SENT, Delivery.FAILED) for r in results):
                write_json(path, ledger.model_dump(mode="json"))
        delivery, reason, extra = _summed(results)
        if delivery is Delivery.SENT:
            log.info("notified %s: %s (%s)", inc.incident_id, st, reason)
        elif delivery is Delivery.FAILED:
            log.warning("notification %s of %s %s", st, inc.incident_id, reason)
        return result(delivery, reason, channels=results, **extra)

    def _deliver(
        self,
        ledger: Ledger,
        due: list[Channel],
        inc: _IncidentView,
        st: IncidentState,
        build: Callable[[], dict[str, Any]],
    ) -> list[ChannelResult]:
        """Send to each due channel that has not had ``st`` yet; the ledger entry updated in place."""
        entry = ledger.states.get(st)
        info = IncidentInfo(inc.incident_id, inc.target, inc.grade)
        body: dict[str, Any] | None = None
        results: list[ChannelResult] = []
        now = _now()
        records: dict[str, ChannelEntry] = {}
        for ch in due:
            previous = entry.channel(ch.name) if entry else None
            if previous is not None and previous.delivery is Delivery.SENT:
                results.append(
                    ChannelResult(
                        channel=ch.name,
                        delivery=Delivery.DUPLICATE,
                        reason=f"{st} was already sent at {previous.last_at}",
                        status_code=previous.status_code,
                    )
                )
                continue
            held = ch.holds(st, ledger.sent_on(ch.name))
            if held is not None:
                results.append(ChannelResult(channel=ch.name, delivery=Delivery.FILTERED, reason=held))
                continue
            body = body or build()
            outcome = _send(ch, body, info, st)
            records[ch.name] = _record(entry, ch.name, outcome, now)
            results.append(ChannelResult.of(outcome))
        if body is not None:
            ledger.record(st, records, text=str(body["text"]), now=now)
        return results


def notify(
    incident: Incident | Mapping[str, Any],
    state: IncidentState | str,
    *,
    summary: str = "",
    details: Mapping[str, object] | None = None,
    link: str | None = None,
    settings: NotificationSettings | None = None,
    environ: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> NotifyResult:
    """One state change of one incident, over the channels of the runbook whose secrets are found
    (the installed secret source: Airflow Connections in Airflow, else the environment): the DAG's
    entry point. Never raises for an unreachable or failing receiver."""
    return Notifier(settings, environ=environ, root=root).notify(
        incident, state, summary=summary, details=details, link=link
    )


def escalate(
    incident: Incident | Mapping[str, Any],
    summary: str,
    *,
    details: Mapping[str, object] | None = None,
    link: str | None = None,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> NotifyResult:
    """Page a human at once (``escalated``): the summary says what stays bad and why. Never raises
    for the receiver; one page per incident (the ledger), like every state change."""
    return notify(
        incident,
        IncidentState.ESCALATED,
        summary=summary,
        details=details,
        link=link,
        root=root,
        environ=environ,
    )
