"""The retry policy of the evidence sources: Retry-After parsing, backoff, attempts and the deadline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from diagnostics.sources.retry import MAX_RETRY_AFTER_S, retry_after_s, retrying

NOW = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("86400", MAX_RETRY_AFTER_S),  # an hour-long ask is capped
        ("Mon, 05 Jan 2026 12:00:45 GMT", 45.0),  # an HTTP date
        ("Mon, 05 Jan 2026 11:59:00 GMT", 0.0),  # already past: retry now
        (None, None),
        ("", None),
        ("soon", None),
        ("-3", None),
        ("1.5", 1.5),  # RFC 9110 says whole seconds; a fraction is read as meant
        ("0.15", 0.15),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header, now=NOW) == seconds


class Flaky(Exception):
    def __init__(self, wait: float | None = None) -> None:
        super().__init__("flaky")
        self.wait = wait


def _run(failures: list[Exception], **policy: object) -> tuple[int, list[float], object]:
    """Call a function that raises ``failures`` in turn, then returns 'ok', under ``retrying``."""
    calls, pauses = 0, []  # type: int, list[float]

    def fn() -> str:
        nonlocal calls
        calls += 1
        if calls <= len(failures):
            raise failures[calls - 1]
        return "ok"

    args: dict[str, object] = {
        "retries": 3,
        "backoff_s": 0.5,
        "deadline_s": 60.0,
        "retryable": lambda exc: isinstance(exc, Flaky),
        "retry_after": lambda exc: exc.wait if isinstance(exc, Flaky) else None,
        "sleep": pauses.append,
        **policy,
    }
    try:
        outcome: object = retrying(**args)(fn)  # type: ignore[arg-type]
    except Exception as exc:  # the outcome under test
        outcome = exc
    return calls, pauses, outcome


def test_backoff_doubles_and_a_longer_retry_after_wins() -> None:
    assert _run([Flaky(), Flaky(), Flaky()])[:2] == (4, [0.5, 1.0, 2.0])
    assert _run([Flaky(), Flaky(wait=5.0), Flaky(wait=0.1)])[:2] == (4, [0.5, 5.0, 2.0])


def test_the_last_failure_is_raised_after_the_retries() -> None:
    last = Flaky()
    calls, pauses, outcome = _run([Flaky(), Flaky(), Flaky(), last, Flaky()])
    assert (calls, pauses, outcome) == (4, [0.5, 1.0, 2.0], last)


def test_a_failure_that_is_not_retryable_is_raised_at_once() -> None:
    fatal = ValueError("bad query")
    assert _run([fatal]) == (1, [], fatal)


def test_no_attempt_starts_past_the_deadline() -> None:
    slow = Flaky(wait=10.0)
    assert _run([slow], deadline_s=9.0) == (1, [], slow)
    assert _run([slow], deadline_s=11.0)[:2] == (2, [10.0])
