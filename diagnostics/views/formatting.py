"""The templates' filters: durations and times as the on-call engineer reads them."""

from __future__ import annotations

from datetime import UTC, datetime


def format_duration(seconds: float | None) -> str:
    """``None`` → an em dash; else ``850 ms``, ``42 s``, ``3 min 05 s``, ``2 h 07 min``, ``1 d 02 h``."""
    if seconds is None:
        return "—"
    negative, s = seconds < 0, abs(seconds)
    if s < 1:
        text = f"{s * 1000:.0f} ms"
    elif s < 60:
        text = f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    elif s < 3600:
        m, sec = divmod(round(s), 60)
        text = f"{m} min {sec:02d} s"
    elif s < 86400:
        h, rest = divmod(round(s), 3600)
        text = f"{h} h {rest // 60:02d} min"
    else:
        d, rest = divmod(round(s), 86400)
        text = f"{d} d {rest // 3600:02d} h"
    return f"-{text}" if negative else text


def format_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
