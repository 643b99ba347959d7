"""The SOP timeline of an incident: when each phase started and ended, against its deadline.

Each SOP phase (``runbooks/sop.yaml``) has a deadline in hours after the alert fired (2 h, 12 h, 24 h).
The report shows, per phase, its start and end and whether it finished within its deadline.

Where the times come from, best first:

1. the DAG's own record (:class:`PhaseSpan`, from the task instances' start and end): exact;
2. else the artifacts' modification times: a phase ends when its newest artifact was written, and
   starts when its oldest was or when the phase before it ended, whichever is earlier (phases run
   in SOP order; the fast path lets the decision and the response overlap phase 2, hence the
   "earlier"). Intake runs from the alert's start to the incident being opened (``incident.json``
   or the first phase-1 artifact). These are approximations and the row says so (``source``).

A phase with neither is "not run". The verdict never guesses: without the alert's start or a
deadline it says so rather than passing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from diagnostics.verified_delivery.report.load import file_mtimes

#: the SOP phases in order, used when runbooks/sop.yaml cannot be read
DEFAULT_PHASES: tuple[str, ...] = (
    "intake",
    "golden_window",
    "deep_diagnosis",
    "decision",
    "verified_delivery",
)
#: where each phase leaves its artifacts (a phase not listed here uses a folder named like it)
PHASE_FOLDERS: dict[str, tuple[str, ...]] = {
    "golden_window": ("golden_window",),
    "deep_diagnosis": ("deep_diagnosis",),
    "decision": ("decision",),
    "verified_delivery": ("response", "verified_delivery"),
}

Verdict = Literal["met", "missed", "open", "not_run", "no_deadline", "unknown"]
Source = Literal["dag", "artifacts", "none"]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class PhaseSpan(BaseModel):
    """One phase as the DAG ran it: its id (``runbooks/sop.yaml``), start and end (None: not ended)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: str = Field(min_length=1)
    start: datetime | None = None
    end: datetime | None = None

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # Airflow hands out aware datetimes; a naive one is taken as UTC rather than local time.
        return _utc(value) if value is not None else None


class TimelineRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: str
    title: str = ""
    start: datetime | None = None
    end: datetime | None = None
    source: Source = "none"
    deadline_h: float | None = None
    deadline: datetime | None = None
    verdict: Verdict
    verdict_text: str

    @property
    def duration_s(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


def format_duration(seconds: float) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``: what a reader takes in at a glance."""
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s < 1:
        return f"{sign}{s * 1000:.0f} ms"
    if s < 60:
        return f"{sign}{s:.1f} s"
    if s < 3600:
        m, rest = divmod(round(s), 60)
        return f"{sign}{m} min {rest:02d} s"
    h, rest = divmod(round(s) // 60, 60)
    return f"{sign}{h} h {rest:02d} min"


def derive_spans(
    incident_dir: Path, alert_started_at: datetime | None, phases: Sequence[str]
) -> dict[str, PhaseSpan]:
    """Spans from the artifacts' modification times (rule in the module docstring); a phase without
    artifacts has no span."""
    spans: dict[str, PhaseSpan] = {}
    incident_file: list[datetime] = []
    with contextlib.suppress(OSError):
        incident_file.append(datetime.fromtimestamp((incident_dir / "incident.json").stat().st_mtime, tz=UTC))
    # The run stores incident.json while phase 1 already runs: the first of the two is the opening.
    opened_at = min([*incident_file, *file_mtimes(incident_dir, "golden_window")], default=None)
    previous_end: datetime | None = None
    for phase in phases:
        if phase == "intake":
            if alert_started_at is not None and opened_at is not None:
                end = max(opened_at, alert_started_at)
                spans[phase] = PhaseSpan(phase=phase, start=alert_started_at, end=end)
                previous_end = end
            continue
        folders = PHASE_FOLDERS.get(phase, (phase,))
        times = [t for folder in folders for t in file_mtimes(incident_dir, folder)]
        if not times:
            continue
        start = min(times) if previous_end is None else min(previous_end, min(times))
        spans[phase] = PhaseSpan(phase=phase, start=start, end=max(times))
        previous_end = max(times)
    return spans


def judge(
    span: PhaseSpan | None, deadline: datetime | None, has_deadline: bool, now: datetime
) -> tuple[Verdict, str]:
    """The deadline verdict of one phase and the sentence that explains it."""
    if not has_deadline:
        return "no_deadline", "no deadline in the SOP"
    if deadline is None:
        return "unknown", "deadline unknown: the alert's start time is missing"
    ran = span is not None and (span.start is not None or span.end is not None)
    if span is not None and span.end is not None:
        if span.end <= deadline:
            return "met", f"met, {format_duration((deadline - span.end).total_seconds())} before the deadline"
        return "missed", f"missed by {format_duration((span.end - deadline).total_seconds())}"
    if now > deadline:
        late = format_duration((now - deadline).total_seconds())
        if ran:
            return "missed", f"missed: still running {late} after the deadline"
        return "missed", f"missed: not run, the deadline passed {late} ago"
    due = format_duration((deadline - now).total_seconds())
    if ran:
        return "open", f"running, due in {due}"
    return "not_run", f"not run yet, due in {due}"


def timeline_rows(
    incident_dir: Path,
    alert_started_at: datetime | None,
    *,
    phases: Sequence[tuple[str, str]],
    deadlines_h: Mapping[str, float],
    timeline: Sequence[PhaseSpan] | None = None,
    now: datetime | None = None,
) -> list[TimelineRow]:
    """One row per SOP phase (``phases``: ``(id, title)`` in order, then any extra phase the DAG's
    ``timeline`` names). A phase the DAG passed uses its span; the others are derived."""
    now = _utc(now or datetime.now(UTC))
    alert = _utc(alert_started_at) if alert_started_at is not None else None
    given = {s.phase: s for s in timeline or ()}
    order = [p for p, _ in phases] + [p for p in given if p not in {q for q, _ in phases}]
    titles = dict(phases)
    derived = derive_spans(incident_dir, alert, order)
    rows: list[TimelineRow] = []
    for phase in order:
        span: PhaseSpan | None
        source: Source
        if phase in given:
            span, source = given[phase], "dag"
        elif phase in derived:
            span, source = derived[phase], "artifacts"
        else:
            span, source = None, "none"
        hours = deadlines_h.get(phase)
        deadline = alert + timedelta(hours=hours) if alert is not None and hours is not None else None
        verdict, text = judge(span, deadline, hours is not None, now)
        rows.append(
            TimelineRow(
                phase=phase,
                title=titles.get(phase, ""),
                start=span.start if span else None,
                end=span.end if span else None,
                source=source,
                deadline_h=hours,
                deadline=deadline,
                verdict=verdict,
                verdict_text=text,
            )
        )
    return rows
