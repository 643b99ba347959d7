"""Incident notifications: one message per incident per state change, posted to a webhook.

The incident DAG calls :func:`notify` at each state change (``opened``, ``decided``,
``rolled_back``, ``recovered``, ``overdue``, ``closed``) and :func:`escalate` to page a human at once
(a rollback that did not recover the service). The message is Slack-compatible JSON
(``{"text": ..., "blocks": [...]}``; ``text`` is the fallback other receivers show), PII-masked
(:func:`diagnostics.pii.mask_pii`) before it leaves the process. Configuration is
``runbooks/notifications.yaml`` (:mod:`diagnostics.runbooks.notifications`).

Why a ledger: Airflow retries tasks, re-runs cleared tasks and may run a callback twice; each of
those would post again and storm the channel. ``<artifacts>/<incident>/notifications/ledger.json``
records every state already sent, written atomically under a per-incident lock, so a repeated
state change is a no-op (``duplicate``). A state whose post failed is recorded as ``failed`` and is
tried again by the next call for it (it was never delivered).

Why never an exception: a notification is a courtesy next to the response itself; a dead or slow
receiver must not fail the rollback task. A post that cannot connect, times out, or answers 5xx or
429 is retried with exponential backoff (``Retry-After`` honoured, capped), then recorded as failed.
No webhook URL (the variable named by ``url_env`` unset) turns notifications off, logged once per
process. The URL is a secret (it carries the token): it is never logged nor stored.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diagnostics.incident.model import SAFE_ID, Incident
from diagnostics.incident.store import write_json
from diagnostics.locks import file_lock
from diagnostics.pii import mask_pii
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.loader import load_yaml_model
from diagnostics.runbooks.notifications import IncidentState, NotificationSettings, NotificationsFile

__all__ = [
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


class Delivery(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # already sent for this incident and state: nothing posted
    FILTERED = "filtered"  # below min_grade, ungraded and skipped, or a state not configured
    DISABLED = "disabled"  # no webhook URL
    FAILED = "failed"  # retried, then given up; recorded in the ledger


class NotifyResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_id: str
    state: IncidentState
    delivery: Delivery
    reason: str
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None


class LedgerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delivery: Delivery = Field(description="sent or failed")
    first_at: str
    last_at: str
    attempts: int = Field(ge=0, description="posts made for this state, over every call")
    status_code: int | None = None
    error: str | None = None
    text: str = Field(description="the (masked) fallback text of the message")


class Ledger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_id: str
    states: dict[IncidentState, LedgerEntry] = Field(default_factory=dict)


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
    """The Slack-compatible body for one state change, every text PII-masked (pure; no I/O)."""
    inc = _view(incident)
    st = _kind(state)
    emoji, title = _TITLES[st]
    grade = inc.grade or "ungraded"
    head = mask_pii(f"{emoji} [{grade}] {title}: {inc.target}")
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


def _read_ledger(path: Path, incident_id: str) -> Ledger:
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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Notifier:
    """Posts state changes for one configuration; reusable across incidents (one HTTP client)."""

    def __init__(
        self,
        settings: NotificationSettings | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        root: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or load_notifications(environ=environ)
        env = os.environ if environ is None else environ
        self._url = (env.get(self.settings.url_env) or "").strip()
        self._root = root
        self._transport = transport
        self._sleep = sleep

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    @property
    def root(self) -> Path:
        if self._root is None:
            from diagnostics.config import Settings

            self._root = Settings().artifacts
        return self._root

    def ledger_path(self, incident_id: str) -> Path:
        return self.root / incident_id / LEDGER_DIR / LEDGER

    def _skip(self, inc: _IncidentView, state: IncidentState) -> str | None:
        """Why this change is not posted (None: it is)."""
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
        if grade.rank < cfg.min_grade.rank:
            return f"grade {grade.value} is below notifications.min_grade {cfg.min_grade.value}"
        return None

    def notify(
        self,
        incident: Incident | Mapping[str, Any],
        state: IncidentState | str,
        *,
        summary: str = "",
        details: Mapping[str, object] | None = None,
        link: str | None = None,
    ) -> NotifyResult:
        """Post ``state`` for ``incident`` unless already sent, filtered or disabled; never raises for
        the receiver (ValueError only for a state or incident that cannot be named)."""
        st = _kind(state)
        inc = _view(incident)

        def result(delivery: Delivery, reason: str, **kw: Any) -> NotifyResult:
            return NotifyResult(incident_id=inc.incident_id, state=st, delivery=delivery, reason=reason, **kw)

        if not self.enabled:
            if self.settings.url_env not in _disabled_logged:
                _disabled_logged.add(self.settings.url_env)
                log.info("notifications are off: %s is not set", self.settings.url_env)
            return result(Delivery.DISABLED, f"{self.settings.url_env} is not set")
        why = self._skip(inc, st)
        if why is not None:
            return result(Delivery.FILTERED, why)

        path = self.ledger_path(inc.incident_id)
        with file_lock(path.parent / LOCK):
            ledger = _read_ledger(path, inc.incident_id)
            previous = ledger.states.get(st)
            if previous is not None and previous.delivery is Delivery.SENT:
                return result(
                    Delivery.DUPLICATE,
                    f"{st} was already sent at {previous.last_at}",
                    status_code=previous.status_code,
                )
            body = message(inc.model_dump(), st, summary, details, link)
            attempts, status, error = self._post(body)
            now = _now()
            delivered = error is None
            ledger.states[st] = LedgerEntry(
                delivery=Delivery.SENT if delivered else Delivery.FAILED,
                first_at=previous.first_at if previous else now,
                last_at=now,
                attempts=(previous.attempts if previous else 0) + attempts,
                status_code=status,
                error=error,
                text=str(body["text"]),
            )
            write_json(path, ledger.model_dump(mode="json"))
        if delivered:
            log.info("notified %s: %s (HTTP %s)", inc.incident_id, st, status)
            return result(Delivery.SENT, f"posted (HTTP {status})", attempts=attempts, status_code=status)
        log.warning(
            "notification %s of %s not delivered after %d attempt(s): %s",
            st,
            inc.incident_id,
            attempts,
            error,
        )
        return result(
            Delivery.FAILED,
            f"not delivered after {attempts} attempt(s): {error}",
            attempts=attempts,
            status_code=status,
            error=error,
        )

    def _post(self, body: dict[str, Any]) -> tuple[int, int | None, str | None]:
        """(attempts, last HTTP status, error or None when delivered). Retries 5xx, 429 and network
        errors with exponential backoff; other answers are final."""
        cfg = self.settings
        status: int | None = None
        error: str | None = None
        attempts = 0
        with httpx.Client(timeout=cfg.timeout_s, transport=self._transport, follow_redirects=False) as client:
            for attempt in range(cfg.retries + 1):
                attempts += 1
                wait = min(cfg.backoff_s * 2**attempt, cfg.max_backoff_s)
                try:
                    response = client.post(self._url, json=body)
                except httpx.HTTPError as exc:
                    status, error = None, f"{type(exc).__name__}: {self._redact(str(exc))}"[:300]
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        return attempts, status, None
                    error = f"HTTP {status}: {self._redact(response.text)}"[:300]
                    if status != 429 and status < 500:
                        return attempts, status, error  # a 4xx will not get better by asking again
                    after = _retry_after(response)
                    if after is not None:
                        wait = min(after, cfg.max_backoff_s)
                if attempt < cfg.retries:
                    self._sleep(wait)
        return attempts, status, error

    def _redact(self, text: str) -> str:
        return text.replace(self._url, "<webhook url>").strip() if self._url else text.strip()


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
    """One state change of one incident, from the runbook's settings and the environment's webhook
    URL: the DAG's entry point. Never raises for an unreachable or failing receiver."""
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
