"""Log records and log queries, independent of where the lines come from.

A ``LogRecord`` is parsed leniently from one JSON object: the testbed's own field names (``ts``,
``level``, ``version``, ``trace_id`` …) and the Elastic Common Schema names an Elasticsearch
``_source`` usually carries (``@timestamp``, ``log.level``, ``service.version``, ``trace.id`` …,
dotted or nested) are both understood. Everything else is kept in ``fields``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "LEVELS",
    "LogFilter",
    "LogQuery",
    "LogRead",
    "LogRecord",
    "LogSource",
    "MalformedRecord",
    "ReadStats",
    "SourceUnavailable",
    "level_number",
    "normalise_level",
    "parse_timestamp",
]

#: level name -> number (Python logging's scale); unknown names count as INFO
LEVELS: dict[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "ERR": "ERROR", "TRACE": "DEBUG", "NOTICE": "INFO"}

# First name found wins; the testbed's names come first.
_ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "@timestamp", "timestamp", "time"),
    "level": ("level", "log.level", "levelname", "severity"),
    "service": ("service", "service.name"),
    "version": ("version", "service.version", "labels.version"),
    "channel": ("channel", "labels.channel"),
    "trace_id": ("trace_id", "trace.id", "traceId"),
    "span_id": ("span_id", "span.id", "spanId"),
    "parent_span_id": ("parent_span_id", "parent.id", "span.parent.id"),
    "message": ("message", "msg", "log.message"),
}
_STATUS_KEYS = ("status", "http.response.status_code")
_PATH_KEYS = ("path", "url.path")


class MalformedRecord(ValueError):
    """A JSON object that is not a usable log record (no parseable timestamp)."""


def normalise_level(level: object) -> str:
    name = str(level).strip().upper() if level is not None else "INFO"
    name = _LEVEL_ALIASES.get(name, name)
    return name or "INFO"


def level_number(level: str) -> int:
    return LEVELS.get(normalise_level(level), 20)


def parse_timestamp(value: object) -> datetime:
    """An aware UTC datetime from ISO 8601 text (``Z`` or an offset; naive = UTC) or epoch s/ms."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, bool):
        raise MalformedRecord(f"not a timestamp: {value!r}")
    elif isinstance(value, int | float):
        # Elasticsearch returns epoch milliseconds for date fields stored as numbers.
        seconds = value / 1000.0 if abs(value) > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise MalformedRecord(f"timestamp out of range: {value!r}") from exc
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            if re.fullmatch(r"\d{9,13}(\.\d+)?", text):
                return parse_timestamp(float(text))
            raise MalformedRecord(f"not a timestamp: {value!r}") from None
    else:
        raise MalformedRecord(f"not a timestamp: {value!r}")
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _flatten(obj: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"log": {"level": "x"}}`` -> ``{"log.level": "x"}`` (ECS documents may nest or dot)."""
    out = {} if out is None else out
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            _flatten(value, f"{name}.", out)
        else:
            out[name] = value
    return out


def _opt_str(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


class LogRecord(BaseModel):
    """One log line. ``fields`` holds every other key of the line (flattened: ``caller.phone``)."""

    model_config = ConfigDict(frozen=True)

    ts: datetime
    level: str = "INFO"
    service: str | None = None
    version: str | None = None
    channel: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    message: str = ""
    fields: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> LogRecord:
        """Parse a decoded JSON object; raises ``MalformedRecord`` without a usable timestamp."""
        flat = _flatten(obj)
        picked: dict[str, Any] = {}
        for name, aliases in _ALIASES.items():
            for alias in aliases:
                if alias in flat:
                    picked[name] = flat.pop(alias)
                    break
        if "ts" not in picked or picked["ts"] is None:
            raise MalformedRecord("no timestamp (ts or @timestamp)")
        message = picked.get("message")
        # model_construct: the values are normalised here, and validation per line would double
        # the cost of reading a large log.
        return cls.model_construct(
            ts=parse_timestamp(picked["ts"]),
            level=normalise_level(picked.get("level")),
            service=_opt_str(picked.get("service")),
            version=_opt_str(picked.get("version")),
            channel=_opt_str(picked.get("channel")),
            trace_id=_opt_str(picked.get("trace_id")),
            span_id=_opt_str(picked.get("span_id")),
            parent_span_id=_opt_str(picked.get("parent_span_id")),
            message="" if message is None else str(message),
            fields=flat,
        )

    @property
    def level_no(self) -> int:
        return LEVELS.get(self.level, 20)

    @property
    def status(self) -> int | None:
        """The HTTP status of a request line (testbed ``status`` or ECS ``http.response.status_code``)."""
        for key in _STATUS_KEYS:
            value = self.fields.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and value.isdigit():
                return int(value)
        return None

    @property
    def path(self) -> str | None:
        for key in _PATH_KEYS:
            value = self.fields.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    def field_str(self, key: str) -> str | None:
        value = self.fields.get(key)
        return value if isinstance(value, str) and value else None

    def text(self) -> str:
        """What keywords are matched against: the message, plus a logged exception if any."""
        for key in ("exception", "error.message", "error.stack_trace"):
            value = self.fields.get(key)
            if isinstance(value, str) and value:
                return f"{self.message}\n{value}"
        return self.message


class LogQuery(BaseModel):
    """Which lines to read. ``start`` inclusive, ``end`` exclusive, both aware (naive = UTC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: datetime
    end: datetime
    versions: frozenset[str] | None = Field(
        default=None, description="e.g. {'canary', 'gateway'}; None = all"
    )
    service: str | None = None
    min_level: str | None = Field(default=None, description="e.g. 'WARNING'; None = every level")
    keywords: tuple[str, ...] = Field(
        default=(), description="case-insensitive regexes; a line must match one (applied client-side)"
    )
    max_records: int = Field(default=100_000, ge=1, description="stop after this many matching lines")

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("min_level")
    @classmethod
    def _level(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = normalise_level(value)
        if name not in LEVELS:
            raise ValueError(f"unknown level {value!r}; one of {', '.join(LEVELS)}")
        return name

    @field_validator("keywords", mode="before")
    @classmethod
    def _keywords(cls, value: Sequence[str] | str) -> tuple[str, ...]:
        items = (value,) if isinstance(value, str) else tuple(value)
        for kw in items:
            try:
                re.compile(kw)
            except re.error as exc:
                raise ValueError(f"keyword {kw!r} is not a valid regular expression: {exc}") from None
        return items

    @model_validator(mode="after")
    def _ordered(self) -> LogQuery:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})")
        return self

    def levels(self) -> list[str]:
        """The level names at or above ``min_level`` (all of them without one)."""
        floor = LEVELS[self.min_level] if self.min_level else 0
        return [name for name, no in LEVELS.items() if no >= floor]

    def matcher(self) -> LogFilter:
        return LogFilter(self)


class LogFilter:
    """The query as a predicate over records, with the regexes compiled once."""

    def __init__(self, query: LogQuery) -> None:
        self.query = query
        self.floor = LEVELS[query.min_level] if query.min_level else 0
        self.keywords = (
            re.compile("|".join(f"(?:{kw})" for kw in query.keywords), re.IGNORECASE)
            if query.keywords
            else None
        )

    def __call__(self, record: LogRecord) -> bool:
        q = self.query
        if not (q.start <= record.ts < q.end):
            return False
        if q.versions is not None and record.version not in q.versions:
            return False
        if q.service is not None and record.service != q.service:
            return False
        if self.floor and record.level_no < self.floor:
            return False
        return not (self.keywords is not None and not self.keywords.search(record.text()))


# --- what every source returns ----------------------------------------------------------------------


class SourceUnavailable(Exception):
    """The log source cannot be read (no files, connection refused, 401/403, missing index, timeout).

    The check turns it into ``insufficient_evidence`` with ``reason``; it never carries credentials.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass
class ReadStats:
    """Counters a source fills while its records are iterated."""

    source: str
    scanned: int = 0  # lines (files) or documents (Elasticsearch) looked at
    returned: int = 0  # records that matched the query and were yielded
    malformed: int = 0  # lines that were not JSON objects with a parseable timestamp
    truncated: bool = False  # stopped at max_records: more lines matched than were read
    inputs: list[str] = field(default_factory=list)  # files read, or the index

    def accept(
        self, parse: Callable[[], object], keep: Callable[[LogRecord], bool], max_records: int
    ) -> LogRecord | None:
        """Count one raw line or document; return the record to yield, or None to skip it.

        ``parse`` gives the raw JSON object (it may raise ValueError). Once ``max_records`` were
        returned, ``truncated`` is set and None returned: the caller stops reading then.
        """
        self.scanned += 1
        try:
            obj = parse()
            if not isinstance(obj, dict):
                raise MalformedRecord("not a JSON object")
            record = LogRecord.from_json(obj)
        except (ValueError, RecursionError):  # JSONDecodeError and MalformedRecord included
            self.malformed += 1
            return None
        if not keep(record):
            return None
        if self.returned >= max_records:
            self.truncated = True
            return None
        self.returned += 1
        return record


@dataclass
class LogRead:
    """The result of ``LogSource.read``: a lazy stream of records and its counters.

    Iterate ``records`` once; ``stats`` is complete when the iteration ends. Iterating may raise
    ``SourceUnavailable`` (e.g. Elasticsearch failing on page 3).
    """

    stats: ReadStats
    records: Iterator[LogRecord]
    on_close: Callable[[], None] | None = None

    def __iter__(self) -> Iterator[LogRecord]:
        return self.records

    def close(self) -> None:
        """Release what the source holds (an Elasticsearch point in time) if not iterated to the end."""
        close = getattr(self.records, "close", None)
        if close is not None:
            close()
        if self.on_close is not None:
            self.on_close()


@runtime_checkable
class LogSource(Protocol):
    def describe(self) -> str:
        """Where the lines come from, for humans (no credentials)."""
        ...

    def read(self, query: LogQuery) -> LogRead:
        """Start reading; raises ``SourceUnavailable`` when the source cannot be read at all."""
        ...
