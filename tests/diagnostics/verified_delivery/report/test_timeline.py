"""The SOP timeline's verdicts and durations, phase by phase, without any artifact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from diagnostics.verified_delivery.report.timeline import PhaseSpan, format_duration, judge, timeline_rows

ALERT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DEADLINE = ALERT + timedelta(hours=2)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0123, "12 ms"), (12.34, "12.3 s"), (245, "4 min 05 s"), (7380, "2 h 03 min"), (-90, "-1 min 30 s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("span", "now", "verdict", "text"),
    [
        (
            PhaseSpan(phase="p", start=ALERT, end=DEADLINE - timedelta(minutes=5)),
            DEADLINE,
            "met",
            "met, 5 min 00 s",
        ),
        (PhaseSpan(phase="p", start=ALERT, end=DEADLINE), DEADLINE, "met", "met, 0 ms before"),
        (
            PhaseSpan(phase="p", start=ALERT, end=DEADLINE + timedelta(seconds=1)),
            DEADLINE,
            "missed",
            "missed by 1.0 s",
        ),
        (PhaseSpan(phase="p", start=ALERT), ALERT + timedelta(hours=1), "open", "running, due in 1 h 00 min"),
        (
            PhaseSpan(phase="p", start=ALERT),
            DEADLINE + timedelta(hours=1),
            "missed",
            "still running 1 h 00 min",
        ),
        (None, ALERT + timedelta(minutes=30), "not_run", "not run yet, due in 1 h 30 min"),
        (None, DEADLINE + timedelta(minutes=1), "missed", "not run, the deadline passed 1 min 00 s ago"),
    ],
)
def test_judge(span: PhaseSpan | None, now: datetime, verdict: str, text: str) -> None:
    got_verdict, got_text = judge(span, DEADLINE, True, now)
    assert got_verdict == verdict and text in got_text


def test_no_deadline_and_unknown_alert_are_their_own_verdicts() -> None:
    span = PhaseSpan(phase="p", start=ALERT, end=ALERT)
    assert judge(span, None, False, ALERT)[0] == "no_deadline"
    assert judge(span, None, True, ALERT) == (
        "unknown",
        "deadline unknown: the alert's start time is missing",
    )


def test_a_naive_time_from_the_dag_is_utc() -> None:
    span = PhaseSpan(phase="p", start=datetime(2026, 12, 1, 8, 0), end=datetime(2026, 12, 1, 9, 0))
    assert span.start == ALERT and span.end is not None and span.end.tzinfo is UTC


def test_rows_follow_the_sop_then_extra_dag_phases(tmp_path: Path) -> None:
    rows = timeline_rows(
        tmp_path,
        ALERT,
        phases=[("intake", "Intake"), ("golden_window", "Phase 1")],
        deadlines_h={"golden_window": 2},
        timeline=[
            PhaseSpan(phase="golden_window", start=ALERT, end=ALERT + timedelta(minutes=20)),
            PhaseSpan(phase="postmortem", start=ALERT + timedelta(hours=3)),
        ],
        now=ALERT + timedelta(hours=4),
    )
    assert [(r.phase, r.source, r.verdict) for r in rows] == [
        ("intake", "none", "no_deadline"),
        ("golden_window", "dag", "met"),
        ("postmortem", "dag", "no_deadline"),
    ]
    assert rows[1].title == "Phase 1" and rows[1].duration_s == 1200
    assert rows[1].deadline == DEADLINE
