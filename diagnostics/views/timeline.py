"""An incident's SOP phases from its task instances: each phase's state against its deadline, the status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from diagnostics.incident import task_ids
from diagnostics.runbooks.schemas import Sop
from diagnostics.views.models import (
    DeadlineState,
    IncidentStatus,
    PhaseLine,
    PhaseState,
    RunRecord,
    TaskRecord,
)
from diagnostics.views.values import seconds_between

# Airflow's TaskInstance states, as strings (no Airflow import). None: created, not scheduled yet.
_FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
_FAILED = frozenset({"failed", "upstream_failed"})
_SKIPPED = frozenset({"skipped", "removed"})
_STARTED = frozenset(
    {"running", "deferred", "awaiting_input", "up_for_retry", "up_for_reschedule", "restarting"}
)
AWAITING_INPUT = "awaiting_input"

# Which SOP phase a task belongs to, by its TaskGroup (the part of the task id before the first dot).
# A group named like a phase of sop.yaml belongs to it; these are the DAG's other groups. The fast path
# is phase 1's "stop the bleeding" step (the SOP's golden-window row); the response is phase 3's
# verified delivery. Anything else after the decision is phase 3 as well (its later tasks).
TASK_GROUP_PHASE: dict[str, str] = {
    task_ids.OPEN_INCIDENT: "intake",
    task_ids.FAST_PATH: "golden_window",
    task_ids.RESPONSE: "verified_delivery",
}
HUMAN_GATE_PREFIX = task_ids.HUMAN_GATE_PREFIX


def phase_of_task(task_id: str, sop: Sop) -> str:
    """The SOP phase a task of the incident DAG belongs to (see :data:`TASK_GROUP_PHASE`)."""
    group = task_id.split(".", 1)[0]
    ids = [p.id for p in sop.phases]
    if group in ids:
        return group
    if group in TASK_GROUP_PHASE and TASK_GROUP_PHASE[group] in ids:
        return TASK_GROUP_PHASE[group]
    return ids[-1]


def _phase_state(tasks: Sequence[TaskRecord]) -> PhaseState:
    if not tasks:
        return PhaseState.NOT_IN_RUN
    states = [t.state for t in tasks]
    if AWAITING_INPUT in states:
        return PhaseState.AWAITING_HUMAN
    if all(s in _FINISHED for s in states):
        if any(s in _FAILED for s in states):
            return PhaseState.FAILED
        if all(s in _SKIPPED for s in states):
            return PhaseState.SKIPPED
        return PhaseState.DONE
    if any(s in _STARTED or s in _FINISHED for s in states):
        return PhaseState.RUNNING
    return PhaseState.NOT_STARTED


def _settled(state: str | None) -> str:
    return state if state in _FINISHED else "skipped"


def build_timeline(
    sop: Sop, tasks: Sequence[TaskRecord], t0: datetime | None, now: datetime, run_over: bool
) -> list[PhaseLine]:
    by_phase: dict[str, list[TaskRecord]] = {p.id: [] for p in sop.phases}
    for task in tasks:
        by_phase[phase_of_task(task.task_id, sop)].append(task)
    lines = []
    for phase in sop.phases:
        own = sorted(by_phase[phase.id], key=lambda t: (t.start_date or now, t.task_id))
        state = _phase_state(own)
        starts = [t.start_date for t in own if t.start_date]
        ends = [t.end_date for t in own if t.end_date]
        started = min(starts) if starts else None
        finished = state in (PhaseState.DONE, PhaseState.FAILED, PhaseState.SKIPPED)
        ended = max(ends) if finished and ends else None
        if run_over and not finished and state != PhaseState.NOT_IN_RUN:
            # The run is over: a task it never got to (a branch not taken, a run marked by hand) will
            # not run any more; the phase is what its finished tasks say.
            state = _phase_state([t.model_copy(update={"state": _settled(t.state)}) for t in own])
            finished, ended = True, max(ends) if ends else None
        line = PhaseLine(
            id=phase.id,
            title=phase.title,
            state=state,
            deadline_h=phase.deadline_h,
            started_at=started,
            ended_at=ended,
            started_after_s=seconds_between(started, t0),
            ended_after_s=seconds_between(ended, t0),
            tasks=list(own),
        )
        if phase.deadline_h is not None and t0 is not None and state != PhaseState.NOT_IN_RUN:
            deadline = t0 + timedelta(hours=phase.deadline_h)
            line.deadline_at = deadline
            budget = phase.deadline_h * 3600.0
            if finished:
                reference = ended
                if ended is None or state == PhaseState.SKIPPED:
                    line.deadline_state = DeadlineState.NONE
                else:
                    line.deadline_state = DeadlineState.MET if ended <= deadline else DeadlineState.MISSED
            else:
                reference = now
                line.deadline_state = DeadlineState.OVERDUE if now > deadline else DeadlineState.OPEN
                line.remaining_s = max(0.0, round((deadline - now).total_seconds(), 3))
            if reference is not None:
                line.deadline_used = round(max(0.0, (reference - t0).total_seconds()) / budget, 4)
        lines.append(line)
    return lines


def incident_status(run: RunRecord, tasks: Sequence[TaskRecord]) -> IncidentStatus:
    if run.state == "success":
        return IncidentStatus.FINISHED
    if run.state == "failed":
        return IncidentStatus.FAILED
    if any(t.state == AWAITING_INPUT for t in tasks):
        return IncidentStatus.AWAITING_HUMAN
    if run.state == "queued" or (run.state is None and run.start_date is None):
        return IncidentStatus.QUEUED
    return IncidentStatus.RUNNING


def current_phase(timeline: Sequence[PhaseLine], status: IncidentStatus) -> PhaseLine | None:
    if status in (IncidentStatus.FINISHED, IncidentStatus.FAILED):
        return None
    for line in timeline:
        if line.state == PhaseState.AWAITING_HUMAN:
            return line
    # The furthest phase under way (an earlier one may still count as running while a branch it did
    # not take waits to be skipped); before any started, the first one.
    running = [line for line in timeline if line.state == PhaseState.RUNNING]
    if running:
        return running[-1]
    for line in timeline:
        if line.state == PhaseState.NOT_STARTED:
            return line
    return timeline[0] if timeline else None
