"""Where a notification goes: the channels of ``runbooks/notifications.yaml``, each behind one protocol.

:mod:`diagnostics.notify` decides *whether* a state change is sent (grade filter, the per-incident
ledger) and builds the PII-masked message; a :class:`Channel` only delivers it and says how that went
(:class:`ChannelOutcome`), never raising for its receiver:

- :class:`WebhookPoster`: the Slack-compatible JSON body posted to one URL;
- :class:`AppriseSender`: title + Markdown through the ``apprise`` library, one URL per service
  (Teams, DingTalk, Feishu, WeCom, Slack, Opsgenie, ...), Apprise's own per-service result read back;
- :class:`PagerDutyEvents`: PagerDuty Events API v2, one alert per incident (``dedup_key`` derived from
  the incident id), ``trigger`` or ``resolve`` by the state.

Every channel retries with ``tenacity``: a network error, a 5xx or a 429 is tried again with exponential
backoff (``backoff_s``, doubling, capped at ``max_backoff_s``; a ``Retry-After`` is honoured, capped
too), any other answer is final. Secrets (URLs carry tokens, routing keys) are resolved by a
:data:`SecretSource`: the environment by default; the Airflow adapter installs one that reads Airflow
Connections first (:func:`use_secret_source`). No secret is ever logged, stored or put in an error:
every text that leaves a channel goes through the channel's redactor first.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

from diagnostics.pii import mask_pii
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.notifications import (
    AppriseChannel,
    IncidentState,
    NotificationSettings,
    PagerDutyChannel,
    WebhookChannel,
)
from diagnostics.sources.retry import retry_after_s

__all__ = [
    "AppriseSender",
    "Channel",
    "ChannelOutcome",
    "IncidentInfo",
    "PagerDutyEvents",
    "RetryPolicy",
    "Secret",
    "SecretSource",
    "WebhookPoster",
    "build_channels",
    "env_secrets",
    "secret_source",
    "use_secret_source",
]

log = logging.getLogger("triage24.notify")

ChannelSpec = WebhookChannel | AppriseChannel | PagerDutyChannel
_ERROR_MAX = 300
_SUMMARY_MAX = 1024  # PagerDuty's payload.summary limit
_GRADES = {g.value for g in GradeId}
_LINK = re.compile(r"<(https?://[^|>\s]+)\|([^>]*)>")


# --- what a channel is given and gives back -----------------------------------------------------


@dataclass(frozen=True)
class IncidentInfo:
    """What a channel may need to know of the incident beyond the message (already PII-safe ids)."""

    incident_id: str
    target: str
    grade: str | None


class ChannelOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str
    delivered: bool
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    detail: str = ""  # what was done, e.g. "HTTP 200", "trigger accepted (HTTP 202)"


class Channel(Protocol):
    """One place a notification goes. ``send`` never raises for its receiver."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> ChannelSpec: ...

    def holds(self, state: IncidentState, sent: frozenset[IncidentState]) -> str | None:
        """Why ``state`` is not sent on this channel given the states it already got (None: it is)."""
        ...

    def send(
        self, message: Mapping[str, Any], incident: IncidentInfo, state: IncidentState
    ) -> ChannelOutcome: ...


# --- secrets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    """A channel's secret (URL(s) or routing key) and where it came from (named, never the value)."""

    values: tuple[str, ...]
    origin: str

    def __repr__(self) -> str:  # never the value, even in a traceback's locals
        return f"Secret(<{len(self.values)} value(s)>, origin={self.origin!r})"


SecretSource = Callable[[ChannelSpec], Secret | None]


def _split(value: str) -> tuple[str, ...]:
    return tuple(v for v in re.split(r"[\s,]+", value.strip()) if v)


def env_secrets(environ: Mapping[str, str] | None = None) -> SecretSource:
    """The secrets from environment variables (``url_env`` / ``routing_key_env``)."""
    env = os.environ if environ is None else environ

    def source(spec: ChannelSpec) -> Secret | None:
        name = spec.secret_env
        values = _split(env.get(name) or "") if name else ()
        if not values:
            return None
        return Secret(values if spec.kind == "apprise" else values[:1], str(name))

    return source


_installed: SecretSource | None = None


def use_secret_source(source: SecretSource | None) -> None:
    """Install the process's secret source (the Airflow adapter's: Connections, then the environment);
    None goes back to the environment alone."""
    global _installed
    _installed = source


def secret_source(environ: Mapping[str, str] | None = None) -> SecretSource:
    """The installed source, or the environment's. An explicit ``environ`` (tests, the CLI) wins."""
    if environ is None and _installed is not None:
        return _installed
    return env_secrets(environ)


def where(spec: ChannelSpec) -> str:
    """Where a channel's secret is looked for, for the message that says it is off."""
    places = [f"Connection {spec.connection_id}"] if spec.connection_id else []
    places += [spec.secret_env] if spec.secret_env else []
    return " and ".join(places) + (" are not set" if len(places) > 1 else " is not set")


def redactor(secrets: Sequence[str]) -> Callable[[str], str]:
    """Replace every secret, and every token-like part of it (path segments, user info, query values
    of 8+ characters), by ``<secret>``: an error message or a receiver's echo never carries one."""
    parts: set[str] = set()
    for s in secrets:
        parts.add(s)
        parts.update(p for p in re.split(r"[/:@?&=#,;\s]+", s) if len(p) >= 8)
    ordered = sorted(parts, key=len, reverse=True)

    def redact(text: str) -> str:
        for p in ordered:
            text = text.replace(p, "<secret>")
        return text.strip()

    return redact


# --- retries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    @classmethod
    def of(cls, cfg: NotificationSettings) -> RetryPolicy:
        return cls(cfg.timeout_s, cfg.retries, cfg.backoff_s, cfg.max_backoff_s)


@dataclass(frozen=True)
class Attempt:
    """One try: delivered, or why not and whether asking again may help."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None


def deliver(
    once: Callable[[], Attempt], policy: RetryPolicy, sleep: Callable[[float], None]
) -> tuple[int, Attempt]:
    """``once`` until it is delivered or final, at most ``retries + 1`` times: (attempts, last try).
    Waits ``backoff_s · 2^(n-1)``, or the answer's ``Retry-After``, never more than ``max_backoff_s``."""

    def wait(state: RetryCallState) -> float:
        last = state.outcome.result() if state.outcome is not None else None
        if isinstance(last, Attempt) and last.retry_after is not None:
            return min(last.retry_after, policy.max_backoff_s)
        return float(min(policy.backoff_s * 2 ** (state.attempt_number - 1), policy.max_backoff_s))

    retrying = Retrying(
        stop=stop_after_attempt(policy.retries + 1),
        wait=wait,
        retry=retry_if_result(lambda a: not a.ok and a.retryable),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    attempts = 0

    def counted() -> Attempt:
        nonlocal attempts
        attempts += 1
        return once()

    last = retrying(counted)
    return attempts, last


def _http_attempt(
    client: httpx.Client, url: str, body: Mapping[str, Any], redact: Callable[[str], str]
) -> Attempt:
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {redact(str(exc))}"[:_ERROR_MAX], retryable=True)
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(True, status)
    return Attempt(
        False,
        status,
        f"HTTP {status}: {redact(response.text)}"[:_ERROR_MAX],
        retryable=status == 429 or status >= 500,  # a 4xx will not get better by asking again
        retry_after=retry_after_s(response.headers.get("retry-after")),
    )


def _outcome(name: str, attempts: int, last: Attempt, detail: str) -> ChannelOutcome:
    return ChannelOutcome(
        channel=name,
        delivered=last.ok,
        attempts=attempts,
        status_code=last.status_code,
        error=None if last.ok else last.error,
        detail=detail if last.ok else "",
    )


# --- the message, as the other channels read it ---------------------------------------------------


def _texts(message: Mapping[str, Any]) -> tuple[str, list[str], dict[str, str], str | None]:
    """(title, paragraphs, fields, link) of a Slack-compatible body: robust to blocks added later."""
    title, paragraphs, fields, link = "", [], {}, None
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "header" and not title:
            title = str(block.get("text", {}).get("text", ""))
        elif kind == "section":
            if isinstance(block.get("text"), dict):
                paragraphs.append(str(block["text"].get("text", "")))
            for f in block.get("fields") or []:
                key, _, value = str(f.get("text", "")).partition("\n")
                fields[key.strip("*").strip()] = value.strip()
        elif kind == "context":
            for element in block.get("elements") or []:
                text = str(element.get("text", ""))
                found = _LINK.search(text)
                if found:
                    link = found.group(1)
                paragraphs.append(_LINK.sub(lambda m: f"[{m.group(2)}]({m.group(1)})", text))
    return title or str(message.get("text", "")), paragraphs, fields, link


def markdown(message: Mapping[str, Any]) -> tuple[str, str]:
    """(title, Markdown body) of a message, PII-masked again (idempotent) on the way out."""
    title, paragraphs, fields, _ = _texts(message)
    lines = list(paragraphs[:1])
    lines += [f"**{k}**: {v}" for k, v in fields.items()]
    lines += paragraphs[1:]
    return mask_pii(title), mask_pii("\n\n".join(lines))


# --- the channels ---------------------------------------------------------------------------------


@dataclass
class _Base:
    spec: Any
    secret: Secret
    policy: RetryPolicy
    sleep: Callable[[float], None]
    redact: Callable[[str], str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.redact = redactor(self.secret.values)

    @property
    def name(self) -> str:
        return str(self.spec.name)

    def holds(self, state: IncidentState, sent: frozenset[IncidentState]) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, secret from {self.secret.origin})"


@dataclass(repr=False)
class WebhookPoster(_Base):
    """The Slack-compatible body, POSTed as JSON to the one URL."""

    transport: httpx.BaseTransport | None = None

    def send(
        self, message: Mapping[str, Any], incident: IncidentInfo, state: IncidentState
    ) -> ChannelOutcome:
        with httpx.Client(
            timeout=self.policy.timeout_s, transport=self.transport, follow_redirects=False
        ) as client:
            attempts, last = deliver(
                lambda: _http_attempt(client, self.secret.values[0], message, self.redact),
                self.policy,
                self.sleep,
            )
        return _outcome(self.name, attempts, last, f"posted (HTTP {last.status_code})")


_APPRISE_TYPE = {
    IncidentState.OPENED: "warning",
    IncidentState.OVERDUE: "warning",
    IncidentState.ESCALATED: "failure",
    IncidentState.RECOVERED: "success",
    IncidentState.CLOSED: "success",
}


@contextmanager
def _redacted_logs(logger: str, redact: Callable[[str], str]) -> Iterator[None]:
    """Apprise logs a URL it cannot parse, tokens and all: redact its records while we call it."""

    def scrub(record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True

    target = logging.getLogger(logger)
    target.addFilter(scrub)
    try:
        yield
    finally:
        target.removeFilter(scrub)


@dataclass(repr=False)
class AppriseSender(_Base):
    """Title + Markdown to every Apprise URL of the secret; delivered when every service took it. A
    retry goes to the services that have not taken it yet (each URL is tagged with its index)."""

    def _once(self, title: str, body: str, notify_type: str, pending: set[int]) -> Attempt:
        import apprise

        services = apprise.Apprise()  # a fresh one per try: Apprise throttles a reused service
        urls = self.secret.values
        bad = sorted({urls[i].split("://", 1)[0] for i in pending if not services.add(urls[i], tag=f"u{i}")})
        if bad:  # a configuration error: asking again will not help
            return Attempt(False, error=f"apprise: URL(s) not understood (scheme {', '.join(bad)})")
        result = services.notify(
            body=body,
            title=title,
            notify_type=notify_type,
            body_format="markdown",
            tag=[f"u{i}" for i in sorted(pending)],
            timeout=self.policy.timeout_s,
        )
        for r in result.results:
            if r:
                pending.difference_update(int(t[1:]) for t in r.tag if t.startswith("u") and t[1:].isdigit())
        if result and not pending:
            return Attempt(True)
        failed = [r for r in result.results if not r]
        reasons = [e.message for r in failed for e in r.logs() if e.level in ("WARNING", "ERROR")]
        names = ", ".join(r.name for r in failed) or "no service answered"
        error = f"apprise: {len(pending)} of {len(urls)} service(s) failed ({names})"
        if reasons:
            error += f": {reasons[-1]}"
        found = re.search(r"error=(\d{3})", reasons[-1]) if reasons else None
        code = int(found.group(1)) if found else None
        return Attempt(
            False,
            code,
            self.redact(error)[:_ERROR_MAX],
            retryable=code is None or code == 429 or code >= 500,
        )

    def send(
        self, message: Mapping[str, Any], incident: IncidentInfo, state: IncidentState
    ) -> ChannelOutcome:
        title, body = markdown(message)
        kind = _APPRISE_TYPE.get(state, "info")
        pending = set(range(len(self.secret.values)))
        with _redacted_logs("apprise", self.redact):
            attempts, last = deliver(lambda: self._once(title, body, kind, pending), self.policy, self.sleep)
        n = len(self.secret.values)
        return _outcome(self.name, attempts, last, f"delivered to {n} Apprise service(s)")


def dedup_key(incident_id: str) -> str:
    """The PagerDuty alert key of an incident: its id, or a digest where the id would carry PII or
    not fit (255 characters)."""
    if mask_pii(incident_id) == incident_id and len(incident_id) <= 200:
        return f"triage24/{incident_id}"
    return "triage24/" + hashlib.sha256(incident_id.encode()).hexdigest()[:40]


@dataclass(repr=False)
class PagerDutyEvents(_Base):
    """One PagerDuty alert per incident: ``trigger`` (or update) on ``trigger_on``, ``resolve`` on
    ``resolve_on``; an escalated alert is resolved only once the service recovered."""

    transport: httpx.BaseTransport | None = None

    def holds(self, state: IncidentState, sent: frozenset[IncidentState]) -> str | None:
        if (
            state in self.spec.resolve_on
            and state is not IncidentState.RECOVERED
            and IncidentState.ESCALATED in sent
            and IncidentState.RECOVERED not in sent
        ):
            return "escalated and never recovered: the alert stays open for the human it paged"
        return None

    def event(
        self, message: Mapping[str, Any], incident: IncidentInfo, state: IncidentState
    ) -> dict[str, Any]:
        spec: PagerDutyChannel = self.spec
        title, paragraphs, fields, link = _texts(message)
        action = "resolve" if state in spec.resolve_on else "trigger"
        grade: GradeId | Literal["ungraded"] = (
            GradeId(incident.grade) if incident.grade in _GRADES else "ungraded"
        )
        severity = "critical" if state is IncidentState.ESCALATED else spec.severity.get(grade, "warning")
        summary = str(message.get("text") or title)
        event: dict[str, Any] = {
            "routing_key": self.secret.values[0],
            "event_action": action,
            "dedup_key": dedup_key(incident.incident_id),
            "client": "Triage24",
            "payload": {
                "summary": mask_pii(summary)[:_SUMMARY_MAX],
                "source": mask_pii(incident.target),
                "severity": severity,
                "component": mask_pii(incident.target),
                "group": "triage24",
                "class": state.value,
                "custom_details": {mask_pii(k): mask_pii(v) for k, v in fields.items()}
                | {"message": mask_pii("\n".join(paragraphs[:1]))},
            },
        }
        if link:
            event["links"] = [{"href": link, "text": "open in Airflow"}]
        return event

    def send(
        self, message: Mapping[str, Any], incident: IncidentInfo, state: IncidentState
    ) -> ChannelOutcome:
        event = self.event(message, incident, state)
        with httpx.Client(
            timeout=self.policy.timeout_s, transport=self.transport, follow_redirects=False
        ) as client:
            attempts, last = deliver(
                lambda: _http_attempt(client, self.spec.events_url, event, self.redact),
                self.policy,
                self.sleep,
            )
        return _outcome(
            self.name, attempts, last, f"{event['event_action']} accepted (HTTP {last.status_code})"
        )


def build_channels(
    settings: NotificationSettings,
    source: SecretSource,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None],
) -> tuple[list[Channel], dict[str, str]]:
    """The channels whose secret is found, and why each other one is off (channel -> reason).
    A source that fails counts as no secret (logged by type only: its message may quote one)."""
    policy = RetryPolicy.of(settings)
    channels: list[Channel] = []
    off: dict[str, str] = {}
    for spec in settings.channel_specs():
        try:
            secret = source(spec)
        except Exception as exc:  # a secrets backend down must not fail the incident
            log.warning("notification channel %s: secret lookup failed (%s)", spec.name, type(exc).__name__)
            secret = None
        if secret is None or not secret.values:
            off[spec.name] = where(spec)
        elif isinstance(spec, WebhookChannel):
            channels.append(WebhookPoster(spec, secret, policy, sleep, transport=transport))
        elif isinstance(spec, AppriseChannel):
            channels.append(AppriseSender(spec, secret, policy, sleep))
        else:
            channels.append(PagerDutyEvents(spec, secret, policy, sleep, transport=transport))
    return channels, off
