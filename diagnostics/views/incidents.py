"""The on-call Incidents view's pages as data: one incident per ``incident_response`` run.

Assembled from Airflow's own records of each run (its state, conf and task instances, handed in as
plain dicts) and the run's evidence under the artifact root (``<root>/<run id>/...``); nothing else is
stored anywhere. Pure: no Airflow import. The plugin (``plugins/triage24_ui.py``) fetches the records;
:mod:`diagnostics.views.web` renders what this module returns, and serves the same models as JSON.

- :func:`list_incidents`: the rows of the list, open incidents first: the title
  (:mod:`diagnostics.incident.title`), target, grade, status, current SOP phase, the lead finding, the
  decision, the action taken, the times to decision, to mitigate and to recover, each from the alert
  (:mod:`~diagnostics.views.outcome`), overdue, alerts held and groups joined; filtered by target /
  grade / status.
- :func:`incident_detail`: one incident: the phase timeline against the SOP deadlines
  (:mod:`~diagnostics.views.timeline`), the findings of both phases ranked with their runbook actions
  (:mod:`~diagnostics.views.findings`), the decision with the reasons that decided it apart from the
  other rules' notes (:func:`~diagnostics.views.decision.split_reasons`), what the response did, the
  pending human gate (:mod:`~diagnostics.views.decision`), the report and the audit bundles, and
  every alert group and alert the incident holds (:mod:`~diagnostics.views.alerts`: the intake
  journal's, with the groups that joined it by a correlation rule), and its re-evaluations on new
  evidence: why this run re-evaluates, or which run superseded it
  (:mod:`~diagnostics.views.reevaluation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from diagnostics.incident import task_ids
from diagnostics.incident.title import conf_alert_names, incident_title
from diagnostics.intake.records import IncidentAlerts as Held
from diagnostics.runbooks.schemas import Sop
from diagnostics.views.alerts import JOURNAL, alerts_view
from diagnostics.views.artifacts import REPORT, RunArtifacts
from diagnostics.views.bundles import bundles_of
from diagnostics.views.decision import (
    decided_at,
    decision_brief,
    decision_data,
    decision_detail,
    response_actions,
)
from diagnostics.views.findings import lead_finding, ranked_findings
from diagnostics.views.models import (
    DeadlineState,
    DecisionDetail,
    HumanGate,
    IncidentAlerts,
    IncidentDetail,
    IncidentFilter,
    IncidentList,
    IncidentRow,
    IncidentStatus,
    LeadFinding,
    PhaseLine,
    RankedFinding,
    ReevaluationLine,
    RunRecord,
    Superseded,
    TaskRecord,
)
from diagnostics.views.outcome import action_taken, mitigation, recovery
from diagnostics.views.reevaluation import own_reevaluation, reevaluation_lines, superseded
from diagnostics.views.timeline import AWAITING_INPUT, build_timeline, current_phase, incident_status
from diagnostics.views.values import as_datetime, as_list, as_str, seconds_between

DAG_ID = task_ids.DAG_ID


def _records(
    run: Mapping[str, Any] | RunRecord, tasks: Iterable[Mapping[str, Any] | TaskRecord]
) -> tuple[RunRecord, list[TaskRecord]]:
    r = run if isinstance(run, RunRecord) else RunRecord.model_validate(dict(run))
    ts = [t if isinstance(t, TaskRecord) else TaskRecord.model_validate(dict(t)) for t in tasks]
    return r, ts


@dataclass
class _Facts:
    """What one run's records and artifacts say, read once for its row and its page."""

    run: RunRecord
    tasks: list[TaskRecord]
    art: RunArtifacts
    incident: dict[str, Any] | None
    status: IncidentStatus
    alert_at: datetime | None
    timeline: list[PhaseLine]
    decision: dict[str, Any] | None
    decision_source: str
    findings: list[RankedFinding]
    summaries: dict[str, str]
    alerts: IncidentAlerts | None
    again: ReevaluationLine | None
    taken_over: Superseded | None


def _facts(
    run: RunRecord,
    tasks: list[TaskRecord],
    root: Path,
    sop: Sop,
    now: datetime,
    runbooks_dir: Path | None,
    held: Held | None,
) -> _Facts:
    art = RunArtifacts(root, run.run_id)
    incident = art.json("incident.json")
    t0 = as_datetime((incident or {}).get("alert_started_at")) or run.start_date or run.queued_at
    status = incident_status(run, tasks)
    over = status in (IncidentStatus.FINISHED, IncidentStatus.FAILED)
    decision, decision_source = decision_data(art)
    findings, summaries = ranked_findings(art, sop, runbooks_dir)
    return _Facts(
        run=run,
        tasks=tasks,
        art=art,
        incident=incident,
        status=status,
        alert_at=t0,
        timeline=build_timeline(sop, tasks, t0, now, run_over=over),
        decision=decision,
        decision_source=decision_source,
        findings=findings,
        summaries=summaries,
        alerts=alerts_view(held, run.conf),
        again=own_reevaluation(run.run_id, conf=run.conf, held=held),
        taken_over=superseded(run.run_id, art, held),
    )


def _title(f: _Facts, target: str, lead: LeadFinding | None) -> str:
    inc, conf = f.incident or {}, f.run.conf
    version = as_str(inc.get("suspected_version")) or as_str(conf.get("version"))
    names = [str(n) for n in as_list(inc.get("alert_names"))] if f.incident else conf_alert_names(conf)
    return incident_title(target, version, names, lead)


def _is_open(f: _Facts) -> bool:
    """Its run is not over; or the intake journal has its alerts still firing (an incident outlives a
    run that ended at "hold"), unless a re-evaluation run took over."""
    if f.status not in (IncidentStatus.FINISHED, IncidentStatus.FAILED):
        return True
    firing = f.alerts is not None and f.alerts.source == JOURNAL and f.alerts.firing > 0
    return firing and f.taken_over is None


def _row(f: _Facts) -> IncidentRow:
    run, inc, conf, timeline, alerts = f.run, f.incident or {}, f.run.conf, f.timeline, f.alerts
    target = as_str(inc.get("target")) or as_str(conf.get("target")) or "unknown"
    grade = as_str(inc.get("grade")) or as_str(conf.get("grade"))
    dry_run = inc.get("dry_run") if isinstance(inc.get("dry_run"), bool) else conf.get("dry_run") is True
    current = current_phase(timeline, f.status)
    lead = lead_finding(f.findings)
    mitigated, recovered = mitigation(f.art, f.alert_at), recovery(f.art, f.alert_at)
    pending = _pending(f.tasks)
    return IncidentRow(
        run_id=run.run_id,
        title=_title(f, target, lead),
        open=_is_open(f),
        target=target,
        grade=grade,
        grade_label=grade or "ungraded",
        source=as_str(inc.get("source")) or ("alertmanager" if conf.get("schema") else "manual"),
        dry_run=bool(dry_run),
        status=f.status,
        run_state=run.state,
        phase=current.id if current else None,
        phase_title=current.title if current else None,
        decision=decision_brief(f.decision, f.decision_source),
        alert_started_at=f.alert_at,
        started_at=run.start_date,
        ended_at=run.end_date,
        time_to_decision_s=seconds_between(decided_at(f.tasks, f.art), f.alert_at),
        lead=lead,
        action_taken=action_taken(f.art, f.tasks),
        mitigated_at=mitigated.at,
        time_to_mitigate_s=mitigated.after_s,
        mitigation=mitigated.text,
        verified_at=recovered.at,
        time_to_recover_s=recovered.after_s,
        recovery=recovered.text,
        recovered=recovered.done,
        overdue=any(line.deadline_state == DeadlineState.OVERDUE for line in timeline),
        overdue_phases=[line.id for line in timeline if line.deadline_state == DeadlineState.OVERDUE],
        missed_deadlines=[line.id for line in timeline if line.deadline_state == DeadlineState.MISSED],
        pending_gate=pending.task_id if pending else None,
        alert_count=len(alerts.alerts) if alerts else None,
        alerts_firing=alerts.firing if alerts else None,
        joined_groups=sum(g.joined for g in alerts.groups) if alerts else 0,
        reevaluates=f.again.reevaluates if f.again else None,
        superseded_by=f.taken_over.by_run if f.taken_over else None,
    )


def _pending(tasks: list[TaskRecord]) -> TaskRecord | None:
    return next((t for t in tasks if t.state == AWAITING_INPUT), None)


def _detail(f: _Facts, row: IncidentRow, root: Path, held: Held | None) -> IncidentDetail:
    decided = decision_detail(f.decision, f.decision_source)
    pending = _pending(f.tasks)
    return IncidentDetail(
        row=row,
        incident=f.incident,
        timeline=f.timeline,
        findings=f.findings,
        phase_summaries=f.summaries,
        decision=decided,
        actions=response_actions(f.art),
        human_gate=_human_gate(f.run.run_id, pending, decided) if pending is not None else None,
        report_available=f.art.exists(*REPORT),
        bundles=bundles_of(root, f.run.run_id),
        dag_run_path=dag_run_path(f.run.run_id),
        problems=f.art.problems,
        alerts=f.alerts,
        reevaluation=f.again,
        superseded=f.taken_over,
        reevaluations=reevaluation_lines(held),
    )


def _human_gate(run_id: str, pending: TaskRecord, decision: DecisionDetail | None) -> HumanGate:
    """The gate waiting for an answer, and when its timeout applies the decision's default."""
    timeout = decision.human_timeout_s if decision else None
    asked = pending.start_date
    return HumanGate(
        task_id=pending.task_id,
        asked_at=asked,
        default_choice=decision.human_default if decision else None,
        timeout_s=timeout,
        default_at=asked + timedelta(seconds=timeout) if asked and timeout is not None else None,
        required_action_path=f"{task_path(run_id, pending.task_id)}/required_actions",
        task_path=task_path(run_id, pending.task_id),
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
    return _row(_facts(r, ts, root, sop, now or datetime.now(UTC), None, None))


def list_incidents(
    runs: Iterable[Mapping[str, Any] | RunRecord],
    tasks_by_run: Mapping[str, Iterable[Mapping[str, Any] | TaskRecord]],
    root: Path,
    sop: Sop,
    filters: IncidentFilter | None = None,
    now: datetime | None = None,
    alerts: Mapping[str, Held] | None = None,
) -> IncidentList:
    """Every run as an incident row, open incidents first, each part newest alert first, then filtered.
    ``alerts``: the intake journal's record of what each incident holds, by run id."""
    now = now or datetime.now(UTC)
    filters = filters or IncidentFilter()
    alerts = alerts or {}
    rows = []
    for run in runs:
        r, ts = _records(run, tasks_by_run.get(_run_id(run), ()))
        rows.append(_row(_facts(r, ts, root, sop, now, None, alerts.get(r.run_id))))
    epoch = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: (row.alert_started_at or row.started_at or epoch, row.run_id), reverse=True)
    rows.sort(key=lambda row: not row.open)  # stable: open incidents first, each part newest first
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
    alerts: Held | None = None,
) -> IncidentDetail:
    """One incident, everything the on-call engineer reads. ``runbooks_dir``: where the findings'
    runbooks are checked to exist (None: not checked); ``alerts``: the intake journal's record of the
    incident's groups and alerts (None: the run conf's alerts)."""
    r, ts = _records(run, tasks)
    facts = _facts(r, ts, root, sop, now or datetime.now(UTC), runbooks_dir, alerts)
    return _detail(facts, _row(facts), root, alerts)


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
