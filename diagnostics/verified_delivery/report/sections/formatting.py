"""Number, time and text formatting shared by the report's section builders, and the display orders."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from diagnostics.verified_delivery.report.load import as_num, as_str
from diagnostics.verified_delivery.report.timeline import format_duration

VERSION_ORDER = ("stable", "canary")
CHANNEL_ORDER = ("text", "image", "audio", "router")
QUANTILES = ("p50", "p99", "p99.9", "p99.99")
STATUS_ORDER = ("failed", "degraded", "insufficient_evidence", "ok")
MAX_INLINE = 16
MAX_TEXT = 600


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number as people read evidence: integers plain, others to ``digits`` significant places."""
    v = as_num(value)
    if v is None:
        return "n/a" if value is None else clip(as_str(value))
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    text = f"{v:.{digits}g}"
    return text if "e" not in text else f"{v:.{digits}f}"


def fmt_pct(value: Any) -> str:
    v = as_num(value)
    return "n/a" if v is None else f"{v:.2%}"


def fmt_ms(value: Any) -> str:
    v = as_num(value)
    if v is None:
        return "n/a"
    return f"{v:.0f} ms" if abs(v) >= 10 else f"{v:.1f} ms"


def fmt_s(value: Any) -> str:
    v = as_num(value)
    return "n/a" if v is None else format_duration(v)


def fmt_ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "n/a"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def value_text(value: Any) -> str:
    """Any JSON value in one readable line (long lists and maps shortened, with the count)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return fmt_num(value)
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, list):
        if not value:
            return "none"
        if all(not isinstance(v, dict | list) for v in value):
            shown = ", ".join(value_text(v) for v in value[:MAX_INLINE])
            more = len(value) - MAX_INLINE
            return clip(shown + (f", … ({more} more)" if more > 0 else ""))
    if isinstance(value, dict):
        if not value:
            return "none"
        if all(not isinstance(v, dict | list) for v in value.values()):
            items = list(value.items())
            shown = ", ".join(f"{k} {value_text(v)}" for k, v in items[:MAX_INLINE])
            more = len(items) - MAX_INLINE
            return clip(shown + (f", … ({more} more)" if more > 0 else ""))
    return clip(json.dumps(value, ensure_ascii=False, sort_keys=True, default=str))


def status_of(value: Any) -> str:
    text = as_str(value)
    return text if text in STATUS_ORDER else (text or "unknown")


def ordered(keys: Iterable[str], order: Sequence[str]) -> list[str]:
    """``keys`` in the display ``order``, then any others alphabetically."""
    known = [k for k in order if k in keys]
    return known + sorted(k for k in keys if k not in order)


def channel_key(channel: str) -> tuple[int, str]:
    """Sort key: channels in display order, unknown ones last."""
    return (CHANNEL_ORDER.index(channel) if channel in CHANNEL_ORDER else 99, channel)
