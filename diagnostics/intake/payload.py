"""Alertmanager webhook payloads (version 4): parsing and validation with errors that name the field.

Every check a delivery must pass before it may reach the journal or a DAG lives here, as a pure
function of the body and its content type:

- content type not JSON -> 415; body not UTF-8 JSON, non-finite numbers, nesting too deep -> 400;
- shape not Alertmanager's v4 payload -> 422, one problem per field path (``alerts[0].startsAt``).

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
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

WEBHOOK_DOCS = "https://prometheus.io/docs/alerting/latest/configuration/#webhook_config"
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
    fingerprint: Fingerprint

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def occurrence(self) -> tuple[str, str]:
        """(fingerprint, startsAt): one firing episode of one alert; a re-fire has a new startsAt."""
        return self.fingerprint.lower(), iso(self.starts_at)

    def as_conf(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": iso(self.starts_at),
            "ends_at": None if self.ends_at <= ZERO_TIME else iso(self.ends_at),
            "generator_url": self.generator_url,
            "fingerprint": self.fingerprint.lower(),
        }


class WebhookPayload(_Model):
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
    "missing": "add the field; Alertmanager's webhook v4 payload always has it",
    "literal_error": "use one of the values named in the message",
    "string_type": "send a JSON string",
    "int_type": "send a JSON integer",
    "dict_type": "send a JSON object of string values",
    "list_type": "send a JSON array",
    "model_type": "send a JSON object",
    "model_attributes_type": "send a JSON object",
    "too_short": "send at least one element",
    "string_pattern_mismatch": "use Alertmanager's value (fingerprints are hex strings)",
    "timezone_aware": "give the timestamp a time zone, e.g. 2026-01-01T00:00:00Z",
}


def _problem(err: Any) -> FieldProblem:
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    given = err.get("input")
    if isinstance(given, str | int | float | bool) and err["type"] != "missing":
        shown = repr(given)
        msg += f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
    elif given is not None and err["type"].endswith("_type"):
        msg += f" (got {type(given).__name__})"
    fix = _FIXES.get(err["type"], f"follow Alertmanager's webhook v4 payload, see {WEBHOOK_DOCS}")
    return FieldProblem(field_path(loc), msg, fix)


def validate(data: Any) -> WebhookPayload:
    try:
        payload = WebhookPayload.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise PayloadError(422, [_problem(e) for e in errors[:MAX_PROBLEMS]]) from None
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
