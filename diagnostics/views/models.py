"""The Incidents view's data models: Airflow's run records in, the list and incident page out."""

from __future__ import annotations

from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    gate_breach: bool = False  # a hard canary-gate breach decided it
    acts_without_human: bool = False  # Decision.acts_without_human
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


class AlertGroupLine(_Output):
    """An alert group of the incident: the one that opened it, or one that joined it by a rule."""

    group_key: str
    labels: dict[str, str] = Field(default_factory=dict)
    joined: bool = False
    joined_at: datetime | None = None
    rule: str | None = Field(default=None, description="the correlation rule it joined by")
    key: str | None = Field(default=None, description="the label values it joined on")


class AlertLine(_Output):
    """An alert the incident holds, with its last known status."""

    fingerprint: str
    alertname: str
    status: str = Field(description="firing | resolved | unknown (as last delivered)")
    severity: str | None = None
    summary: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(default=None, description="of its latest episode on the incident")
    episodes: int = 1
    group_key: str
    joined: bool = Field(default=False, description="it came in a group that joined the incident")


class IncidentAlerts(_Output):
    source: str = Field(
        description="'intake journal' (every group and alert the incident holds) or 'run conf' (the "
        "alerts it was opened with: the journal has no entry, e.g. it is not on this machine)"
    )
    groups: list[AlertGroupLine]
    alerts: list[AlertLine]
    firing: int


class ReevaluationLine(_Output):
    """A re-evaluation of the incident: a run on new evidence that supersedes an earlier run."""

    run_id: str
    reevaluates: str = Field(description="the run it supersedes")
    delivery_id: int | None = Field(default=None, description="the intake delivery that called for it")
    reason: str = Field(description="why: the alerts, and the grade they raised or the gate they breach")
    state: str | None = Field(
        default=None, description="the intake's: pending | triggered | done | skipped (None: not known here)"
    )
    detail: str | None = Field(default=None, description="what became of it, as the intake journaled it")
    created_at: datetime | None = None
    answered_gate: str | None = Field(default=None, description="the superseded run's gate it answered")


class Superseded(_Output):
    """This run no longer decides: a re-evaluation run on newer evidence does."""

    by_run: str | None = Field(description="the re-evaluation run (None: the answer named none)")
    reason: str | None = None
    gate: str | None = Field(default=None, description="this run's gate the intake answered")
    source: str = Field(description="'response record' (the run recorded it) or 'intake journal'")


class LeadFinding(_Output):
    """The incident's most severe finding (the first of its ranked findings): the list's and the title's."""

    severity: str
    problem: str
    component: str | None = None
    version: str | None = None
    title: str
    phase: str


class IncidentRow(_Output):
    run_id: str
    title: str = Field(description="target version · lead problem on its component (or the alert)")
    open: bool = Field(description="its run is not over, or (intake journal) its alerts still fire")
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
    lead: LeadFinding | None = None
    action_taken: str | None = Field(default=None, description="what the response did (None: nothing yet)")
    mitigated_at: datetime | None = Field(default=None, description="when the rollback took the canary out")
    time_to_mitigate_s: float | None = Field(
        default=None, description="from the alert to the rollback applied (None: not mitigated, or unknown)"
    )
    mitigation: str = Field(default="not mitigated", description="the mitigation, for a person")
    verified_at: datetime | None = Field(default=None, description="when the recovery was verified")
    time_to_recover_s: float | None = Field(
        default=None, description="from the alert to the recovery verified (None: not verified, or unknown)"
    )
    recovery: str = Field(default="not verified", description="the recovery, for a person")
    recovered: bool | None = None
    overdue: bool = Field(description="an unfinished phase is past its deadline")
    overdue_phases: list[str] = Field(default_factory=list)
    missed_deadlines: list[str] = Field(default_factory=list, description="phases that ended late")
    pending_gate: str | None = Field(default=None, description="the human gate task waiting for an answer")
    alert_count: int | None = Field(default=None, description="alerts the incident holds (None: unknown)")
    alerts_firing: int | None = None
    joined_groups: int = Field(default=0, description="alert groups that joined it by a correlation rule")
    reevaluates: str | None = Field(default=None, description="a re-evaluation run: the run it supersedes")
    superseded_by: str | None = Field(default=None, description="the re-evaluation run that took over")


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


class RuleReasons(_Output):
    """A rule of the decision policy that did not decide, with its notes (the page folds these)."""

    rule: str
    outcome: str | None = None
    matched: bool = Field(description="it applied, but a rule before it in the precedence decided")
    reasons: list[str] = Field(default_factory=list)


class DecisionDetail(_Output):
    outcome: str
    rule: str | None = None
    rule_description: str | None = None
    summary: str | None = None
    reasons: list[str] = Field(default_factory=list, description="every reason, as stored")
    deciding_reasons: list[str] = Field(
        default_factory=list, description="the deciding rule's reasons and the notes on the decision itself"
    )
    other_rules: list[RuleReasons] = Field(
        default_factory=list, description="the other rules with a reason, in precedence order"
    )
    needs_human: bool = False
    gate_breach: bool = False  # a hard canary-gate breach decided it
    acts_without_human: bool = False  # Decision.acts_without_human
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
    alerts: IncidentAlerts | None = Field(default=None, description="every alert group and alert it holds")
    reevaluation: ReevaluationLine | None = Field(default=None, description="this run re-evaluates: why")
    superseded: Superseded | None = None
    reevaluations: list[ReevaluationLine] = Field(
        default_factory=list, description="every re-evaluation of the incident (the intake journal's)"
    )


class IncidentList(_Output):
    rows: list[IncidentRow]
    total: int = Field(description="incidents before filtering")
    filters: IncidentFilter
    targets: list[str] = Field(description="the targets seen, for the filter's choices")
    grades: list[str]
    statuses: list[str] = Field(default_factory=lambda: [s.value for s in IncidentStatus])
