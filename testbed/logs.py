"""JSON-lines logging for the testbed processes, with W3C trace context.

Every line is one JSON object with at least::

    {"ts": "2025-01-01T00:00:00.123Z", "level": "INFO", "service": "testbed",
     "version": "stable", "channel": "image", "trace_id": "<32 hex>", "span_id": "<16 hex>",
     "message": "..."}

plus optional request fields (``tenant``, ``route``, ``method``, ``path``, ``status``,
``latency_ms``, ``module``, ``parent_span_id``, ``event``...). Lines go to a file (append) and to
stdout. The trace id, span id, channel and tenant come from context variables set by the request
middleware, so every line logged while serving a request carries that request's trace id — also
from worker threads, as long as the context is copied (see ``run_in_context``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
span_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("span_id", default=None)
parent_span_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("parent_span", default=None)
channel_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("channel", default=None)
tenant_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)

_TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    """One hop of a W3C trace: the trace id, this hop's span id and the caller's span id (if any)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_span_id, flags)`` from a W3C ``traceparent`` header, or None if invalid.

    Follows the spec's rules: version ``ff`` and all-zero ids are invalid; unknown future versions
    are accepted if the first four fields parse.
    """
    if not value:
        return None
    value = value.strip().lower()
    head = value[:55]
    m = _TRACEPARENT_RE.match(head)
    if not m:
        return None
    version, trace_id, parent, flags = m.groups()
    if version == "ff" or trace_id == "0" * 32 or parent == "0" * 16:
        return None
    if version == "00" and len(value) != 55:
        return None
    return trace_id, parent, flags


def trace_from_headers(traceparent: str | None) -> TraceContext:
    """Continue the caller's trace if its ``traceparent`` is valid, else start a new one."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return TraceContext(new_trace_id(), new_span_id(), None)
    trace_id, parent, flags = parsed
    return TraceContext(trace_id, new_span_id(), parent, flags)


def bind_trace(ctx: TraceContext, channel: str | None = None, tenant: str | None = None) -> None:
    """Set the context variables every log line of the current request reads."""
    trace_id_var.set(ctx.trace_id)
    span_id_var.set(ctx.span_id)
    parent_span_var.set(ctx.parent_span_id)
    channel_var.set(channel)
    tenant_var.set(tenant)


def run_in_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` so it runs in a copy of the current context (for thread pools)."""
    ctx = contextvars.copy_context()

    def runner(*args: Any, **kwargs: Any) -> Any:
        return ctx.run(fn, *args, **kwargs)

    return runner


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats records as one JSON object per line; see the module docstring for the fields."""

    def __init__(self, service: str, version: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.service = service
        self.version = version
        self.clock = clock

    def format(self, record: logging.LogRecord) -> str:
        # The timestamp is taken from the process clock (which a clock_skew fault offsets), not
        # from record.created, so that every timestamp this process emits agrees.
        now = self.clock()
        ts = datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line: dict[str, Any] = {
            "ts": ts,
            "level": record.levelname,
            "service": self.service,
            "version": self.version,
            "channel": getattr(record, "channel", None) or channel_var.get(),
            "trace_id": trace_id_var.get(),
            "span_id": span_id_var.get(),
            "message": record.getMessage(),
        }
        parent = parent_span_var.get()
        if parent:
            line["parent_span_id"] = parent
        tenant = tenant_var.get()
        if tenant:
            line["tenant"] = tenant
        for key, value in record.__dict__.items():
            if key in _RESERVED or key in line or key.startswith("_") or key in ("channel", "fields"):
                continue
            line[key] = value
        extra_fields = getattr(record, "fields", None)
        if isinstance(extra_fields, dict):
            for key, value in extra_fields.items():
                if key not in line or line[key] is None:
                    line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def fields(**kw: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the keys become fields of the JSON line (any name, even ones a
    ``LogRecord`` reserves, like ``module``)."""
    return {"fields": kw}


def setup_logging(
    name: str,
    version: str,
    log_file: Path | str | None,
    *,
    stdout: bool = True,
    level: int = logging.INFO,
    clock: Callable[[], float] = time.time,
) -> logging.Logger:
    """A non-propagating logger writing JSON lines to ``log_file`` (created with its folder) and stdout.

    Calling it again for the same ``name`` replaces the handlers (tests create several apps).
    """
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(level)
    logger.propagate = False
    formatter = JsonFormatter("testbed", version, clock)
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path, encoding="utf-8")
        fh.setFormatter(formatter)
        logger.addHandler(fh)
    if stdout:
        sh = logging.StreamHandler(sys.stdout)
        sh.setFormatter(formatter)
        logger.addHandler(sh)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def read_log_lines(path: Path | str) -> list[dict[str, Any]]:
    """Parse a JSON-lines log file (skipping lines that are not JSON objects)."""
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out
