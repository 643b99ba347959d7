"""Retries with backoff under a deadline (tenacity), for clients of the evidence sources.

One policy, :func:`retrying`: at most ``retries`` attempts after the first, on the failures a
``retryable`` predicate accepts, pausing ``backoff_s`` and doubling - or longer when the server asked
for it (``Retry-After``) - and never starting an attempt later than ``deadline_s`` after the first
began: a wait that would end past the deadline is not waited, the last failure is raised as it was.
The attempts made are counted by the caller's own function (tenacity's statistics are per thread).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base

#: the longest Retry-After honoured (a server asking for an hour is treated as asking for this)
MAX_RETRY_AFTER_S = 300.0


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), capped at
    :data:`MAX_RETRY_AFTER_S`; None when absent or unreadable (the backoff applies). The one parser of
    the project: the evidence sources and the notification channels both read the header with it."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds: float | None = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        # RFC 9110's delta-seconds are whole; a fraction some servers send is read as meant
        return min(seconds, MAX_RETRY_AFTER_S) if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


class _Backoff:
    """``backoff_s · 2^(n-1)`` before attempt ``n + 1``, or the server's ``Retry-After`` if longer."""

    def __init__(self, backoff_s: float, asked: Callable[[BaseException], float | None]) -> None:
        self.backoff_s, self.asked = backoff_s, asked

    def __call__(self, state: RetryCallState) -> float:
        pause = self.backoff_s * 2.0 ** (state.attempt_number - 1)
        exc = state.outcome.exception() if state.outcome is not None else None
        wanted = self.asked(exc) if exc is not None else None
        return max(pause, wanted) if wanted is not None else pause


class StopPast(stop_base):
    """Stop when the next attempt would start more than ``deadline_s`` after the first began."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s

    def __call__(self, state: RetryCallState) -> bool:
        return (state.seconds_since_start or 0.0) + state.upcoming_sleep > self.deadline_s


def retrying(
    *,
    retries: int,
    backoff_s: float,
    deadline_s: float,
    retryable: Callable[[BaseException], bool],
    retry_after: Callable[[BaseException], float | None] = lambda exc: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Retrying:
    """A tenacity ``Retrying`` with the policy of the module docstring; the last failure is re-raised
    (never tenacity's ``RetryError``)."""
    return Retrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(retries + 1) | StopPast(deadline_s),
        wait=_Backoff(backoff_s, retry_after),
        sleep=sleep,
        reraise=True,
    )
