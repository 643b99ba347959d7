"""Alert webhook payloads: parsing and validation with errors that name the field.

Every check a delivery must pass before it may reach the journal or a DAG lives here, as a pure
function of the body and its content type:

- content type not JSON -> 415; body not UTF-8 JSON, non-finite numbers, nesting too deep -> 400;
- shape not an accepted payload -> 422, one problem per field path (``alerts[0].startsAt``).

Accepted, by ``version``: ``"4"``, Alertmanager's webhook (older releases too); ``"1"``, Grafana-managed
alerting's webhook contact point, which is Alertmanager's v4 body plus a few fields
(:class:`GrafanaPayload`, the adapter). Anything else is refused naming what was received and what
is accepted; a legacy Grafana notification (no labels, no groups) is refused naming the contact
point to use instead.

An alert without ``fingerprint`` (Alertmanager before 0.19, some bridges) gets the one Alertmanager
computes from its labels (:mod:`diagnostics.intake.fingerprint`): refusing it would lose the page,
since Alertmanager never retries a 4xx.

Unknown fields are ignored (and dropped), so a newer Alertmanager that adds a field still gets
through; a known field with a wrong type or value never does. Strings must be valid Unicode without
NUL characters (lone surrogates or NULs would break the journal or a Postgres metadata DB later).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    ValidationError,
)

from diagnostics.intake.fingerprint import alert_fingerprint

WEBHOOK_DOCS = "https://prometheus.io/docs/alerting/latest/configuration/#webhook_config"
GRAFANA_DOCS = "https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/"
ACCEPTED_VERSIONS = "'4' (Alertmanager's webhook) or '1' (Grafana-managed alerting's webhook contact point)"
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time: Alertmanager's endsAt of a firing alert
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "fix": self.fix}


class PayloadError(ValueError):
    """A delivery that must be refused: ``status`` is the HTTP status (400, 413, 415, 422)."""

    def __init__(self, status: int, problems: list[FieldProblem]) -> None:
        self.status = status
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone UTF-16 surrogate (not valid Unicode)") from None
    return value


def _must_be_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be an RFC 3339 timestamp string, got {type(value).__name__}")
    return value


Text = Annotated[StrictStr, AfterValidator(_clean_text)]
LabelName = Annotated[StrictStr, Field(min_length=1, max_length=256), AfterValidator(_clean_text)]
Fingerprint = Annotated[StrictStr, Field(pattern=r"^[0-9a-fA-F]{1,64}$")]


def _blank_is_absent(value: Any) -> Any:
    return None if value == "" else value  # a bridge's empty fingerprint is no fingerprint


SentFingerprint = Annotated[Fingerprint | None, BeforeValidator(_blank_is_absent)]
AmTime = Annotated[AwareDatetime, BeforeValidator(_must_be_text)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Alert(_Model):
    status: Literal["firing", "resolved"]
    labels: dict[LabelName, Text] = Field(min_length=1)
    annotations: dict[LabelName, Text] = Field(default_factory=dict)
    starts_at: AmTime = Field(alias="startsAt")
    ends_at: AmTime = Field(default=ZERO_TIME, alias="endsAt")
    generator_url: Text = Field(default="", alias="generatorURL")
    fingerprint_sent: SentFingerprint = Field(default=None, alias="fingerprint")
    _fingerprint: str = PrivateAttr(default="")

    def model_post_init(self, context: Any, /) -> None:
        self._fingerprint = (self.fingerprint_sent or alert_fingerprint(self.labels)).lower()

    @property
    def fingerprint(self) -> str:
        """The sender's fingerprint (lower case), or the one Alertmanager computes from the labels."""
        return self._fingerprint

    @property
    def fingerprint_computed(self) -> bool:
        return self.fingerprint_sent is None

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def occurrence(self) -> tuple[str, str]:
        """(fingerprint, startsAt): one firing episode of one alert; a re-fire has a new startsAt."""
        return self.fingerprint, iso(self.starts_at)

    def as_conf(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": iso(self.starts_at),
            "ends_at": None if self.ends_at <= ZERO_TIME else iso(self.ends_at),
            "generator_url": self.generator_url,
            "fingerprint": self.fingerprint,
        }


class WebhookPayload(_Model):
    """An alert group in Alertmanager's webhook v4 shape: what the intake works with, whoever sent it."""

    origin: ClassVar[str] = "alertmanager"
    sender: ClassVar[str] = "Alertmanager's webhook v4 payload"

    version: Literal["4"]
    group_key: Text = Field(alias="groupKey", min_length=1, max_length=8192)
    status: Literal["firing", "resolved"]
    receiver: Text = ""
    truncated_alerts: StrictInt = Field(default=0, alias="truncatedAlerts", ge=0)
    group_labels: dict[LabelName, Text] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[LabelName, Text] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[LabelName, Text] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Text = Field(default="", alias="externalURL")
    alerts: list[Alert] = Field(min_length=1)

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.firing]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if not a.firing]

    def label(self, name: str) -> str | None:
        """A label shared by the group (group or common labels), e.g. ``target`` or ``version``."""
        return self.group_labels.get(name) or self.common_labels.get(name)

    @property
    def computed_fingerprints(self) -> int:
        return sum(a.fingerprint_computed for a in self.alerts)


class GrafanaPayload(WebhookPayload):
    """Grafana-managed alerting's webhook contact point (``version: "1"``), the adapter to the v4 model.

    Grafana notifies through Alertmanager's own code, so the shared fields mean the same (groupKey,
    fingerprints, truncatedAlerts, Go's zero endsAt); what it adds is checked for type, then kept
    where the intake uses it (``org_id``, ``title``, ``state``) or dropped (per alert ``silenceURL``,
    ``dashboardURL``, ``panelURL``, ``imageURL``, ``values``, ``valueString``)."""

    origin: ClassVar[str] = "grafana"
    sender: ClassVar[str] = "Grafana's webhook contact point (payload version 1)"

    version: Literal["1"]  # type: ignore[assignment]
    org_id: StrictInt | None = Field(default=None, alias="orgId")
    title: Text = ""
    state: Text = ""  # alerting | ok
    message: Text = ""


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- parsing --------------------------------------------------------------------------------------

_JSON_TYPES = re.compile(r"^application/(?:[\w.+-]+\+)?json$", re.IGNORECASE)


def check_content_type(content_type: str | None) -> None:
    """415 unless the content type is JSON (``application/json``, any ``+json``, any charset=utf-8)."""
    fix = "send Content-Type: application/json (Alertmanager does)"
    if not content_type:
        raise PayloadError(415, [FieldProblem("Content-Type", "missing", fix)])
    media, _, params = content_type.partition(";")
    if not _JSON_TYPES.match(media.strip()):
        raise PayloadError(415, [FieldProblem("Content-Type", f"{media.strip()[:80]!r} is not JSON", fix)])
    charset = re.search(r"charset\s*=\s*\"?([\w-]+)", params, re.IGNORECASE)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise PayloadError(
            415, [FieldProblem("Content-Type", f"charset {charset.group(1)!r} is not UTF-8", fix)]
        )


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, no out-of-range numbers; 400 naming where it fails."""
    fix = f"send Alertmanager's webhook JSON (version 4), see {WEBHOOK_DOCS}"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(400, [FieldProblem("body", f"not UTF-8 (byte {exc.start})", fix)]) from None
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise PayloadError(
            400, [FieldProblem("body", f"not valid JSON at {where}: {exc.msg}", fix)]
        ) from None
    except RecursionError:
        raise PayloadError(400, [FieldProblem("body", "JSON nested too deeply", fix)]) from None
    except ValueError as exc:  # huge integers, non-finite numbers
        raise PayloadError(400, [FieldProblem("body", f"not acceptable JSON: {exc}"[:300], fix)]) from None


def field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


_FIXES = {
    "missing": "add the field; {sender} always has it",
    "literal_error": "use one of the values named in the message",
    "string_type": "send a JSON string",
    "int_type": "send a JSON integer",
    "dict_type": "send a JSON object of string values",
    "list_type": "send a JSON array",
    "model_type": "send a JSON object",
    "model_attributes_type": "send a JSON object",
    "too_short": "send at least one element",
    "string_pattern_mismatch": "use the sender's value (fingerprints are hex strings), or leave it out",
    "timezone_aware": "give the timestamp a time zone, e.g. 2026-01-01T00:00:00Z",
}
_VERSION_FIX = (
    "point an Alertmanager webhook_config or a Grafana webhook contact point at this URL; other tools: "
    f"send their alerts to an Alertmanager that notifies it (see {WEBHOOK_DOCS})"
)
_LEGACY_GRAFANA_KEYS = ("evalMatches", "ruleName", "ruleId", "ruleUrl")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", type(None): "null"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    shown = repr(value)
    return f"{shown[:60]}{'...' if len(shown) > 60 else ''}"


def _version_problem(data: dict[str, Any]) -> FieldProblem:
    """What was received as ``version`` and what is accepted."""
    if "version" not in data:
        got = "missing"
    elif isinstance(data["version"], str):
        got = f"is {_shown(data['version'])}"
    else:
        sent = json.dumps(data["version"], ensure_ascii=False)
        sent = sent if len(sent) <= 40 else sent[:40] + "..."
        got = f"is {sent} (a JSON {_json_type(data['version'])}, not a string)"
    return FieldProblem("version", f"{got}; accepted: {ACCEPTED_VERSIONS}", _VERSION_FIX)


def _problem(err: Any, model: type[WebhookPayload]) -> FieldProblem:
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    given = err.get("input")
    if isinstance(given, str | int | float | bool) and err["type"] != "missing":
        msg += f" (got {_shown(given)})"
    elif given is not None and err["type"].endswith("_type"):
        msg += f" (got {type(given).__name__})"
    docs = GRAFANA_DOCS if model is GrafanaPayload else WEBHOOK_DOCS
    fix = _FIXES.get(err["type"], "follow {sender}, see " + docs).format(sender=model.sender)
    return FieldProblem(field_path(loc), msg, fix)


def _model_for(data: Any) -> type[WebhookPayload]:
    """The payload model the body's ``version`` names; 422 for a shape no model can take."""
    if isinstance(data, list):
        raise PayloadError(
            422,
            [
                FieldProblem(
                    "body",
                    "is a JSON array; a webhook delivery is one JSON object (an alert group)",
                    "a list of alerts is what Alertmanager's API takes (POST /api/v2/alerts): send it "
                    "there, and let Alertmanager notify this URL",
                )
            ],
        )
    if not isinstance(data, dict):
        return WebhookPayload  # its model_type error names the body
    if data.get("version") == "1":
        return GrafanaPayload
    if "version" not in data and any(k in data for k in _LEGACY_GRAFANA_KEYS):
        raise PayloadError(
            422,
            [
                FieldProblem(
                    "version",
                    "missing: this is a legacy Grafana alert notification (ruleName/evalMatches, "
                    "Grafana before 8 or legacy alerting): it has no alert labels, groups or fingerprints",
                    "in Grafana, notify through a Grafana-managed alerting contact point of type webhook "
                    "(payload version '1', accepted here) or an Alertmanager-compatible contact point "
                    f"(an external Alertmanager that notifies this URL); see {GRAFANA_DOCS}",
                )
            ],
        )
    return WebhookPayload


def validate(data: Any) -> WebhookPayload:
    model = _model_for(data)
    try:
        payload = model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False)[:MAX_PROBLEMS]:
            version = tuple(e["loc"]) == ("version",) and e["type"] in ("missing", "literal_error")
            problems.append(_version_problem(data) if version else _problem(e, model))
        raise PayloadError(422, problems) from None
    any_firing = any(a.firing for a in payload.alerts)
    if (payload.status == "firing") != any_firing:
        expected = "firing" if any_firing else "resolved"
        raise PayloadError(
            422,
            [
                FieldProblem(
                    "status",
                    f"is {payload.status!r} but {'some' if any_firing else 'no'} alert is firing",
                    f"set status to {expected!r} (firing when any alert fires, as Alertmanager does)",
                )
            ],
        )
    return payload


def parse(body: bytes, content_type: str | None, max_bytes: int) -> WebhookPayload:
    """The whole check of one delivery: size, content type, JSON, schema."""
    if len(body) > max_bytes:
        raise PayloadError(413, [too_large(max_bytes)])
    check_content_type(content_type)
    return validate(loads(body))


def too_large(max_bytes: int) -> FieldProblem:
    return FieldProblem(
        "body",
        f"larger than {max_bytes} bytes",
        "lower max_alerts in the Alertmanager webhook_config, or raise TRIAGE24_INTAKE_MAX_BODY_BYTES",
    )
