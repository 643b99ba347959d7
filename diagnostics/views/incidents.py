"""The on-call Incidents view's data: one incident per ``incident_response`` run.

Assembled from Airflow's own records of each run (its state, conf and task instances, handed in as
plain dicts) and the run's evidence under the artifact root (``<root>/<run id>/...``); nothing else is
stored anywhere. Pure: no Airflow import. The plugin (``plugins/triage24_ui.py``) fetches the records
and renders what this module returns; the same models are the JSON of the view's data routes.

- :func:`list_incidents`: the rows of the list (target, grade, status, current SOP phase, decision,
  time to decision, time to recover, overdue), filtered by target / grade / status.
- :func:`incident_detail`: one incident: the phase timeline against the SOP deadlines
  (``runbooks/sop.yaml`` ``deadline_h``, measured from the alert), the findings of both phases
  ranked with their runbook actions, the decision and its reasons, what the response did, the pending
  human gate, the report and the audit bundles.
- :func:`render_runbook`: a Markdown runbook as HTML (raw HTML in the Markdown is escaped).
- :func:`artifact_file`: a file under the artifact root, refusing any path that leaves it.

A missing or unreadable artifact is never an error here: the incident shows what exists and lists
what could not be read (``problems``), since an incident page that fails to open at 3 a.m. because
one JSON file is half-written helps nobody.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from diagnostics.runbooks.schemas import Sop

DAG_ID = "incident_response"

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
    "open_incident": "intake",
    "fast_path": "golden_window",
    "response": "verified_delivery",
}
HUMAN_GATE_PREFIX = "decision.human_gate_"

_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_.~:+-]{1,250}$")
_RUNBOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,120}\.md$")


class IncidentStatus(StrEnum):
    """Where the incident stands, from the run's state and its tasks."""

    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_HUMAN = "awaiting_human"  # a human gate task waits for an answer
    FINISHED = "finished"  # the run succeeded: the SOP ran through (which may mean "held and escalated")
    FAILED = "failed"  # the run failed: a rollback failed, recovery not verified, a bad conf ...


class PhaseState(StrEnum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    AWAITING_HUMAN = "awaiting_human"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_IN_RUN = "not_in_run"  # the run has no task of this phase


class DeadlineState(StrEnum):
    OPEN = "open"  # unfinished, the deadline is still ahead
    MET = "met"  # finished before the deadline
    MISSED = "missed"  # finished, but after the deadline
    OVERDUE = "overdue"  # unfinished and past the deadline: act now
    NONE = "none"  # the phase has no deadline (intake, decision) or never ran


# --- inputs ---------------------------------------------------------------------------------------


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _enum_values(cls, value: Any) -> Any:
        # Callers may hand Airflow's enums (DagRunState.SUCCESS): keep their plain value.
        return value.value if isinstance(value, Enum) else value


class RunRecord(_Input):
    """What the view needs of a DAG run (the REST API's DAGRun fields, or the ORM's)."""

    run_id: str = Field(min_length=1)
    state: str | None = None
    conf: dict[str, Any] = Field(default_factory=dict)
    queued_at: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    note: str | None = None

    @field_validator("conf", mode="before")
    @classmethod
    def _conf(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {}


class TaskRecord(_Input):
    """What the view needs of a task instance."""

    task_id: str = Field(min_length=1)
    state: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    try_number: int = 0
    map_index: int = -1


class IncidentFilter(BaseModel):
    """The list's filters (query parameters); None or "" matches everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str | None = Field(default=None, max_length=100)
    grade: str | None = Field(default=None, max_length=20, description="L1-L4, or 'ungraded'")
    status: IncidentStatus | None = None

    @field_validator("target", "grade", "status", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def matches(self, row: IncidentRow) -> bool:
        return (
            (self.target is None or row.target == self.target)
            and (self.grade is None or row.grade_label == self.grade)
            and (self.status is None or row.status == self.status)
        )


# --- outputs --------------------------------------------------------------------------------------


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionBrief(_Output):
    outcome: str
    rule: str | None = None
    summary: str | None = None
    needs_human: bool = False
    fast_path: bool = False
    source: str = Field(description="'decision' (the full decision) or 'fast_decision' (phase 1 alone)")


class PhaseLine(_Output):
    """One SOP phase of the incident, against its deadline."""

    id: str
    title: str
    state: PhaseState
    deadline_h: float | None = None
    deadline_at: datetime | None = None
    deadline_state: DeadlineState = DeadlineState.NONE
    started_at: datetime | None = None
    ended_at: datetime | None = None
    started_after_s: float | None = Field(default=None, description="seconds after the alert")
    ended_after_s: float | None = Field(default=None, description="seconds after the alert")
    remaining_s: float | None = Field(default=None, description="until the deadline, while open")
    deadline_used: float | None = Field(
        default=None, description="the share of the deadline used (ended or now, since the alert)"
    )
    tasks: list[TaskRecord] = Field(default_factory=list)


class IncidentRow(_Output):
    run_id: str
    target: str
    grade: str | None
    grade_label: str = Field(description="the grade, or 'ungraded' (manual runs)")
    source: str | None = None
    dry_run: bool = False
    status: IncidentStatus
    run_state: str | None
    phase: str | None = Field(description="the current SOP phase id; None once the run is over")
    phase_title: str | None = None
    decision: DecisionBrief | None = None
    alert_started_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    time_to_decision_s: float | None = Field(
        default=None, description="from the alert to the decision (the human's answer where one was asked)"
    )
    time_to_recover_s: float | None = Field(default=None, description="as the recovery verification measured")
    recovered: bool | None = None
    overdue: bool = Field(description="an unfinished phase is past its deadline")
    overdue_phases: list[str] = Field(default_factory=list)
    missed_deadlines: list[str] = Field(default_factory=list, description="phases that ended late")
    pending_gate: str | None = Field(default=None, description="the human gate task waiting for an answer")


class RankedFinding(_Output):
    rank: int
    phase: str
    severity: str
    check: str | None = None
    problem: str
    title: str
    component: str | None = None
    version: str | None = None
    channel: str | None = None
    evidence: str = ""
    action: str = ""
    runbook: str | None = Field(default=None, description="the Markdown runbook's file name, when it exists")
    runbook_missing: str | None = Field(default=None, description="a runbook named but not found")


class DecisionDetail(_Output):
    outcome: str
    rule: str | None = None
    rule_description: str | None = None
    summary: str | None = None
    reasons: list[str] = Field(default_factory=list)
    needs_human: bool = False
    fast_path: bool = False
    promote_to: float | None = None
    max_risk: float | None = None
    dry_run: bool | None = None
    human_default: str | None = None
    human_timeout_s: float | None = None
    human_escalate: bool | None = None
    source: str


class ActionRecord(_Output):
    name: str
    status: str | None = None
    summary: str | None = None
    outcome: str | None = None
    decided_by: str | None = None
    recovered: bool | None = None
    time_to_recover_s: float | None = None


class HumanGate(_Output):
    """The human gate waiting for an answer: Airflow's Required Actions, or the task's own page."""

    task_id: str
    asked_at: datetime | None = None
    default_choice: str | None = None
    timeout_s: float | None = None
    default_at: datetime | None = Field(default=None, description="when the timeout applies the default")
    required_action_path: str = Field(description="the task's Required Action page in the Airflow UI")
    task_path: str


class BundleRef(_Output):
    stamp: str = Field(description="the bundle folder's name: its UTC creation time")
    created_at: str | None = None
    files: int | None = None
    bundle_digest: str | None = None
    relative_path: str = Field(description="relative to the artifact root")


class IncidentDetail(_Output):
    row: IncidentRow
    incident: dict[str, Any] | None = None
    timeline: list[PhaseLine]
    findings: list[RankedFinding]
    phase_summaries: dict[str, str] = Field(default_factory=dict)
    decision: DecisionDetail | None = None
    actions: list[ActionRecord] = Field(default_factory=list)
    human_gate: HumanGate | None = None
    report_available: bool = False
    bundles: list[BundleRef] = Field(default_factory=list)
    dag_run_path: str
    problems: list[str] = Field(default_factory=list, description="artifacts that could not be read")


class IncidentList(_Output):
    rows: list[IncidentRow]
    total: int = Field(description="incidents before filtering")
    filters: IncidentFilter
    targets: list[str] = Field(description="the targets seen, for the filter's choices")
    grades: list[str]
    statuses: list[str] = Field(default_factory=lambda: [s.value for s in IncidentStatus])


# --- reading artifacts ----------------------------------------------------------------------------


class _Artifacts:
    """One run's artifact folder; every read is guarded and its problems collected."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.problems: list[str] = []
        self.folder: Path | None = None
        if _SAFE_SEGMENT.fullmatch(run_id) and run_id not in (".", ".."):
            self.folder = root / run_id
        else:
            self.problems.append(f"run id {run_id[:80]!r} cannot name an artifact folder: no evidence shown")

    def json(self, *parts: str) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        path = self.folder.joinpath(*parts)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self.problems.append(f"{'/'.join(parts)}: unreadable ({type(exc).__name__}: {str(exc)[:120]})")
            return None
        if not isinstance(data, dict):
            self.problems.append(f"{'/'.join(parts)}: not a JSON object")
            return None
        return data

    def names(self, phase: str) -> list[str]:
        if self.folder is None:
            return []
        try:
            return sorted(p.stem for p in (self.folder / phase).glob("*.json") if p.is_file())
        except OSError:
            return []

    def exists(self, *parts: str) -> bool:
        return self.folder is not None and self.folder.joinpath(*parts).is_file()


def _dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


# --- phases ---------------------------------------------------------------------------------------


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


def _timeline(
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
            started_after_s=_seconds(started, t0),
            ended_after_s=_seconds(ended, t0),
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


def _status(run: RunRecord, tasks: Sequence[TaskRecord]) -> IncidentStatus:
    if run.state == "success":
        return IncidentStatus.FINISHED
    if run.state == "failed":
        return IncidentStatus.FAILED
    if any(t.state == AWAITING_INPUT for t in tasks):
        return IncidentStatus.AWAITING_HUMAN
    if run.state == "queued" or (run.state is None and run.start_date is None):
        return IncidentStatus.QUEUED
    return IncidentStatus.RUNNING


def _current_phase(timeline: Sequence[PhaseLine], status: IncidentStatus) -> PhaseLine | None:
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


# --- decision, response ---------------------------------------------------------------------------


def _decision_data(art: _Artifacts) -> tuple[dict[str, Any] | None, str]:
    full = art.json("decision", "decision.json")
    if full is not None and _str(full.get("outcome")):
        return full, "decision"
    fast = art.json("decision", "fast_decision.json")
    if fast is not None and _str(fast.get("outcome")):
        return fast, "fast_decision"
    return None, "decision"


def _decision_brief(data: dict[str, Any] | None, source: str) -> DecisionBrief | None:
    if data is None:
        return None
    return DecisionBrief(
        outcome=str(data["outcome"]),
        rule=_str(data.get("rule")),
        summary=_str(data.get("summary")),
        needs_human=bool(data.get("needs_human")),
        fast_path=bool(data.get("fast_path")),
        source=source,
    )


def _decision_detail(data: dict[str, Any] | None, source: str) -> DecisionDetail | None:
    if data is None:
        return None
    gate = _dict(data.get("human_gate"))
    inputs = _dict(data.get("inputs"))
    reasons = _list(data.get("reasons"))
    return DecisionDetail(
        outcome=str(data["outcome"]),
        rule=_str(data.get("rule")),
        rule_description=_str(data.get("rule_description")),
        summary=_str(data.get("summary")),
        reasons=[str(r) for r in reasons],
        needs_human=bool(data.get("needs_human")),
        fast_path=bool(data.get("fast_path")),
        promote_to=_num(data.get("promote_to")),
        max_risk=_num(data.get("max_risk")),
        dry_run=_bool(inputs.get("dry_run")),
        human_default=_str(gate.get("choice")),
        human_timeout_s=_num(gate.get("timeout_s")),
        human_escalate=_bool(gate.get("escalate")),
        source=source,
    )


def _finished_task(tasks: Sequence[TaskRecord], task_id: str) -> TaskRecord | None:
    return next((t for t in tasks if t.task_id == task_id and t.state == "success" and t.end_date), None)


def _fast_rollback(fast: dict[str, Any] | None) -> bool:
    return bool(fast and fast.get("outcome") == "rollback" and not fast.get("needs_human"))


def _decided_at(tasks: Sequence[TaskRecord], art: _Artifacts) -> datetime | None:
    """When the incident was decided: a human gate's answer (or its timeout's default); else the fast
    path's gate when phase 1 alone rolled back; else the decision task, unless it asked a human. None
    while undecided."""
    gates = [t.end_date for t in tasks if t.task_id.startswith(HUMAN_GATE_PREFIX) and t.state == "success"]
    answered = [end for end in gates if end is not None]
    if answered:
        return min(answered)
    if _fast_rollback(art.json("decision", "fast_decision.json")):
        fast = _finished_task(tasks, "fast_path.fast_gate")
        if fast is not None:
            return fast.end_date
    full = art.json("decision", "decision.json")
    if full is None or full.get("needs_human"):
        return None
    decide = _finished_task(tasks, "decision.decide")
    return decide.end_date if decide is not None else None


def _actions(art: _Artifacts) -> list[ActionRecord]:
    out = []
    for name in art.names("response"):
        data = art.json("response", f"{name}.json")
        if data is None:
            continue
        details = _dict(data.get("details"))
        out.append(
            ActionRecord(
                name=name,
                status=_str(data.get("status")),
                summary=_str(data.get("summary")),
                outcome=_str(data.get("outcome")),
                decided_by=_str(details.get("decided_by")),
                recovered=_bool(data.get("recovered")),
                time_to_recover_s=_num(data.get("time_to_recover_s")),
            )
        )
    return out


# --- findings -------------------------------------------------------------------------------------


def _runbook_ref(name: Any, runbooks_dir: Path | None) -> tuple[str | None, str | None]:
    """(the runbook to link, a runbook named but absent)."""
    if not isinstance(name, str) or not name:
        return None, None
    if not _RUNBOOK_NAME.fullmatch(name):
        return None, name
    if runbooks_dir is not None and not (runbooks_dir / name).is_file():
        return None, name
    return name, None


def _findings(
    art: _Artifacts, sop: Sop, runbooks_dir: Path | None
) -> tuple[list[RankedFinding], dict[str, str]]:
    order = {p.id: i for i, p in enumerate(sop.phases)}
    collected: list[tuple[tuple[int, int, int], dict[str, Any], str]] = []
    summaries: dict[str, str] = {}
    for phase in sop.phases:
        if not phase.checks:
            continue
        summary = art.json(phase.id, "summary.json")
        if summary is None:
            continue
        if _str(summary.get("summary")):
            summaries[phase.id] = str(summary["summary"])
        items = _list(summary.get("findings"))
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not _str(item.get("problem")):
                continue
            severity = str(item.get("severity") or "low").lower()
            key = (_SEVERITY_RANK.get(severity, len(_SEVERITY_RANK)), order[phase.id], i)
            collected.append((key, item, phase.id))
    collected.sort(key=lambda entry: entry[0])
    ranked = []
    for rank, (_, item, phase_id) in enumerate(collected, start=1):
        runbook, missing = _runbook_ref(item.get("runbook"), runbooks_dir)
        ranked.append(
            RankedFinding(
                rank=rank,
                phase=phase_id,
                severity=str(item.get("severity") or "low").lower(),
                check=_str(item.get("check")),
                problem=str(item["problem"]),
                title=_str(item.get("title")) or str(item["problem"]),
                component=_str(item.get("component")),
                version=_str(item.get("version")),
                channel=_str(item.get("channel")),
                evidence=_str(item.get("evidence")) or "",
                action=_str(item.get("action")) or "",
                runbook=runbook,
                runbook_missing=missing,
            )
        )
    return ranked, summaries


# --- report, bundles ------------------------------------------------------------------------------

AUDIT_DIR = "audit"
BUNDLES_DIR = "bundles"
REPORT = ("report", "report.html")


def bundles_of(root: Path, run_id: str) -> list[BundleRef]:
    """The incident's audit bundles (``<root>/audit/bundles/<run id>/<stamp>/``), newest first."""
    if not _SAFE_SEGMENT.fullmatch(run_id) or run_id in (".", ".."):
        return []
    folder = root / AUDIT_DIR / BUNDLES_DIR / run_id
    try:
        stamps = sorted(
            (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True
        )
    except OSError:
        return []
    out = []
    for path in stamps:
        manifest: dict[str, Any] = {}
        seal: dict[str, Any] = {}
        try:
            loaded = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            manifest = loaded if isinstance(loaded, dict) else {}
            loaded = json.loads((path / "seal.json").read_text(encoding="utf-8"))
            seal = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            pass
        files = manifest.get("files")
        out.append(
            BundleRef(
                stamp=path.name,
                created_at=_str(manifest.get("created_at")),
                files=len(files) if isinstance(files, dict) else None,
                bundle_digest=_str(seal.get("bundle_digest")),
                relative_path=f"{AUDIT_DIR}/{BUNDLES_DIR}/{run_id}/{path.name}",
            )
        )
    return out


class ArtifactNotFound(LookupError):
    """No such file under the artifact root (or a path that would leave it)."""


def artifact_file(base: Path, *parts: str) -> Path:
    """The regular file ``base/<parts...>``; ArtifactNotFound for anything else: a segment that is not a
    plain name (``..``, empty, hidden, with a slash), a symbolic link that leads out of ``base``, a
    folder, a missing file."""
    for part in parts:
        if (
            not part
            or part in (".", "..")
            or part.startswith(".")
            or "/" in part
            or "\\" in part
            or "\0" in part
        ):
            raise ArtifactNotFound(f"not a plain file name: {part[:80]!r}")
    try:
        root = base.resolve(strict=True)
        path = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        raise ArtifactNotFound("/".join(parts)) from None
    if not path.is_relative_to(root) or not path.is_file():
        raise ArtifactNotFound("/".join(parts))
    return path


# --- assembling -----------------------------------------------------------------------------------


def _records(
    run: Mapping[str, Any] | RunRecord, tasks: Iterable[Mapping[str, Any] | TaskRecord]
) -> tuple[RunRecord, list[TaskRecord]]:
    r = run if isinstance(run, RunRecord) else RunRecord.model_validate(dict(run))
    ts = [t if isinstance(t, TaskRecord) else TaskRecord.model_validate(dict(t)) for t in tasks]
    return r, ts


def _assemble(
    run: RunRecord,
    tasks: list[TaskRecord],
    root: Path,
    sop: Sop,
    now: datetime,
    runbooks_dir: Path | None,
    detail: bool,
) -> tuple[IncidentRow, IncidentDetail | None]:
    art = _Artifacts(root, run.run_id)
    incident = art.json("incident.json")
    conf = run.conf
    inc = incident or {}
    target = _str(inc.get("target")) or _str(conf.get("target")) or "unknown"
    grade = _str(inc.get("grade")) or _str(conf.get("grade"))
    source = _str(inc.get("source")) or ("alertmanager" if conf.get("schema") else "manual")
    dry_run = inc.get("dry_run") if isinstance(inc.get("dry_run"), bool) else conf.get("dry_run") is True
    t0 = _dt(inc.get("alert_started_at")) or run.start_date or run.queued_at
    status = _status(run, tasks)
    timeline = _timeline(
        sop, tasks, t0, now, run_over=status in (IncidentStatus.FINISHED, IncidentStatus.FAILED)
    )
    current = _current_phase(timeline, status)
    decision, decision_source = _decision_data(art)
    recovery = art.json("response", "recovery_verification.json")
    pending = next((t for t in tasks if t.state == AWAITING_INPUT), None)
    row = IncidentRow(
        run_id=run.run_id,
        target=target,
        grade=grade,
        grade_label=grade or "ungraded",
        source=source,
        dry_run=bool(dry_run),
        status=status,
        run_state=run.state,
        phase=current.id if current else None,
        phase_title=current.title if current else None,
        decision=_decision_brief(decision, decision_source),
        alert_started_at=t0,
        started_at=run.start_date,
        ended_at=run.end_date,
        time_to_decision_s=_seconds(_decided_at(tasks, art), t0),
        time_to_recover_s=_num(_dict(recovery).get("time_to_recover_s")),
        recovered=_bool(_dict(recovery).get("recovered")),
        overdue=any(line.deadline_state == DeadlineState.OVERDUE for line in timeline),
        overdue_phases=[line.id for line in timeline if line.deadline_state == DeadlineState.OVERDUE],
        missed_deadlines=[line.id for line in timeline if line.deadline_state == DeadlineState.MISSED],
        pending_gate=pending.task_id if pending else None,
    )
    if not detail:
        return row, None
    findings, summaries = _findings(art, sop, runbooks_dir)
    decision_detail = _decision_detail(decision, decision_source)
    gate = None
    if pending is not None:
        timeout = decision_detail.human_timeout_s if decision_detail else None
        asked = pending.start_date
        gate = HumanGate(
            task_id=pending.task_id,
            asked_at=asked,
            default_choice=decision_detail.human_default if decision_detail else None,
            timeout_s=timeout,
            default_at=asked + timedelta(seconds=timeout) if asked and timeout is not None else None,
            required_action_path=f"{task_path(run.run_id, pending.task_id)}/required_actions",
            task_path=task_path(run.run_id, pending.task_id),
        )
    return row, IncidentDetail(
        row=row,
        incident=incident,
        timeline=timeline,
        findings=findings,
        phase_summaries=summaries,
        decision=decision_detail,
        actions=_actions(art),
        human_gate=gate,
        report_available=art.exists(*REPORT),
        bundles=bundles_of(root, run.run_id),
        dag_run_path=dag_run_path(run.run_id),
        problems=art.problems,
    )


def dag_run_path(run_id: str) -> str:
    """The run's page in the Airflow UI (relative to the UI's base URL)."""
    return f"/dags/{DAG_ID}/runs/{quote(run_id, safe='')}"


def task_path(run_id: str, task_id: str) -> str:
    return f"{dag_run_path(run_id)}/tasks/{quote(task_id, safe='')}"


def incident_row(
    run: Mapping[str, Any] | RunRecord,
    tasks: Iterable[Mapping[str, Any] | TaskRecord],
    root: Path,
    sop: Sop,
    now: datetime | None = None,
) -> IncidentRow:
    r, ts = _records(run, tasks)
    row, _ = _assemble(r, ts, root, sop, now or datetime.now(UTC), None, detail=False)
    return row


def list_incidents(
    runs: Iterable[Mapping[str, Any] | RunRecord],
    tasks_by_run: Mapping[str, Iterable[Mapping[str, Any] | TaskRecord]],
    root: Path,
    sop: Sop,
    filters: IncidentFilter | None = None,
    now: datetime | None = None,
) -> IncidentList:
    """Every run as an incident row, newest alert first, then filtered."""
    now = now or datetime.now(UTC)
    filters = filters or IncidentFilter()
    rows = []
    for run in runs:
        r, ts = _records(run, tasks_by_run.get(_run_id(run), ()))
        rows.append(_assemble(r, ts, root, sop, now, None, detail=False)[0])
    epoch = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: (row.alert_started_at or row.started_at or epoch, row.run_id), reverse=True)
    return IncidentList(
        rows=[row for row in rows if filters.matches(row)],
        total=len(rows),
        filters=filters,
        targets=sorted({row.target for row in rows}),
        grades=sorted({row.grade_label for row in rows}),
    )


def incident_detail(
    run: Mapping[str, Any] | RunRecord,
    tasks: Iterable[Mapping[str, Any] | TaskRecord],
    root: Path,
    sop: Sop,
    runbooks_dir: Path | None = None,
    now: datetime | None = None,
) -> IncidentDetail:
    """One incident, everything the on-call engineer reads. ``runbooks_dir``: where the findings'
    runbooks are checked to exist (None: not checked)."""
    r, ts = _records(run, tasks)
    _, detail = _assemble(r, ts, root, sop, now or datetime.now(UTC), runbooks_dir, detail=True)
    assert detail is not None
    return detail


def _run_id(run: Mapping[str, Any] | RunRecord) -> str:
    return run.run_id if isinstance(run, RunRecord) else str(run.get("run_id", ""))


def parse_filter(params: Mapping[str, Any]) -> IncidentFilter:
    """The filters from query parameters; ValueError naming the parameter and what is allowed."""
    try:
        return IncidentFilter.model_validate(
            {k: params.get(k) for k in ("target", "grade", "status") if params.get(k) is not None}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or "query"
        allowed = f" (one of: {', '.join(s.value for s in IncidentStatus)})" if field == "status" else ""
        raise ValueError(f"{field}: {first['msg']}{allowed}") from None


# --- runbooks -------------------------------------------------------------------------------------


class RunbookNotFound(LookupError):
    pass


_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def runbook_names(runbooks_dir: Path) -> list[str]:
    try:
        return sorted(
            p.name for p in runbooks_dir.glob("*.md") if p.is_file() and _RUNBOOK_NAME.fullmatch(p.name)
        )
    except OSError:
        return []


def render_runbook(runbooks_dir: Path, name: str) -> str:
    """A Markdown runbook of ``runbooks_dir`` as HTML. Raw HTML in the Markdown is shown as text, and
    markdown-it refuses ``javascript:``-style link targets; RunbookNotFound for any other name."""
    if not _RUNBOOK_NAME.fullmatch(name):
        raise RunbookNotFound(f"{name[:80]!r} is not a runbook name (letters, digits, _ and -, ending .md)")
    try:
        path = artifact_file(runbooks_dir, name)
    except ArtifactNotFound:
        raise RunbookNotFound(f"no runbook {name} in {runbooks_dir.name}/") from None
    return str(_MARKDOWN.render(path.read_text(encoding="utf-8", errors="replace")))


# --- formatting (the templates' filters) ----------------------------------------------------------


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
