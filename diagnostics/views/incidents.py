"""The on-call Incidents view's pages as data: one incident per ``incident_response`` run.

Assembled from Airflow's own records of each run (its state, conf and task instances, handed in as
plain dicts) and the run's evidence under the artifact root (``<root>/<run id>/...``); nothing else is
stored anywhere. Pure: no Airflow import. The plugin (``plugins/triage24_ui.py``) fetches the records;
:mod:`diagnostics.views.web` renders what this module returns, and serves the same models as JSON.

- :func:`list_incidents`: the rows of the list (target, grade, status, current SOP phase, decision,
  time to decision, time to recover, overdue, alerts held and groups joined), filtered by target /
  grade / status.
- :func:`incident_detail`: one incident: the phase timeline against the SOP deadlines
  (:mod:`~diagnostics.views.timeline`), the findings of both phases ranked with their runbook actions
  (:mod:`~diagnostics.views.findings`), the decision and its reasons, what the response did, the
  pending human gate (:mod:`~diagnostics.views.decision`), the report and the audit bundles, and
  every alert group and alert the incident holds (:mod:`~diagnostics.views.alerts`: the intake
  journal's, with the groups that joined it by a correlation rule), and its re-evaluations on new
  evidence: why this run re-evaluates, or which run superseded it
  (:mod:`~diagnostics.views.reevaluation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from diagnostics.incident import task_ids
from diagnostics.intake.records import IncidentAlerts as Held
from diagnostics.runbooks.schemas import Sop
from diagnostics.views.alerts import alerts_view
from diagnostics.views.artifacts import REPORT, RunArtifacts
from diagnostics.views.bundles import bundles_of
from diagnostics.views.decision import (
    decided_at,
    decision_brief,
    decision_data,
    decision_detail,
    response_actions,
)
from diagnostics.views.findings import ranked_findings
from diagnostics.views.models import (
    DeadlineState,
    DecisionDetail,
    HumanGate,
    IncidentDetail,
    IncidentFilter,
    IncidentList,
    IncidentRow,
    IncidentStatus,
    RunRecord,
    TaskRecord,
)
from diagnostics.views.reevaluation import own_reevaluation, reevaluation_lines, superseded
from diagnostics.views.timeline import AWAITING_INPUT, build_timeline, current_phase, incident_status
from diagnostics.views.values import as_bool, as_datetime, as_dict, as_float, as_str, seconds_between

DAG_ID = task_ids.DAG_ID


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
    held: Held | None = None,
) -> tuple[IncidentRow, IncidentDetail | None]:
    art = RunArtifacts(root, run.run_id)
    incident = art.json("incident.json")
    conf = run.conf
    inc = incident or {}
    target = as_str(inc.get("target")) or as_str(conf.get("target")) or "unknown"
    grade = as_str(inc.get("grade")) or as_str(conf.get("grade"))
    source = as_str(inc.get("source")) or ("alertmanager" if conf.get("schema") else "manual")
    dry_run = inc.get("dry_run") if isinstance(inc.get("dry_run"), bool) else conf.get("dry_run") is True
    t0 = as_datetime(inc.get("alert_started_at")) or run.start_date or run.queued_at
    status = incident_status(run, tasks)
    timeline = build_timeline(
        sop, tasks, t0, now, run_over=status in (IncidentStatus.FINISHED, IncidentStatus.FAILED)
    )
    current = current_phase(timeline, status)
    decision, decision_source = decision_data(art)
    recovery = art.json("response", "recovery_verification.json")
    pending = next((t for t in tasks if t.state == AWAITING_INPUT), None)
    alerts = alerts_view(held, conf)
    again = own_reevaluation(run.run_id, conf, held)
    taken_over = superseded(run.run_id, art, held)
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
        decision=decision_brief(decision, decision_source),
        alert_started_at=t0,
        started_at=run.start_date,
        ended_at=run.end_date,
        time_to_decision_s=seconds_between(decided_at(tasks, art), t0),
        time_to_recover_s=as_float(as_dict(recovery).get("time_to_recover_s")),
        recovered=as_bool(as_dict(recovery).get("recovered")),
        overdue=any(line.deadline_state == DeadlineState.OVERDUE for line in timeline),
        overdue_phases=[line.id for line in timeline if line.deadline_state == DeadlineState.OVERDUE],
        missed_deadlines=[line.id for line in timeline if line.deadline_state == DeadlineState.MISSED],
        pending_gate=pending.task_id if pending else None,
        alert_count=len(alerts.alerts) if alerts else None,
        alerts_firing=alerts.firing if alerts else None,
        joined_groups=sum(g.joined for g in alerts.groups) if alerts else 0,
        reevaluates=again.reevaluates if again else None,
        superseded_by=taken_over.by_run if taken_over else None,
    )
    if not detail:
        return row, None
    findings, summaries = ranked_findings(art, sop, runbooks_dir)
    decided = decision_detail(decision, decision_source)
    gate = _human_gate(run.run_id, pending, decided) if pending is not None else None
    return row, IncidentDetail(
        row=row,
        incident=incident,
        timeline=timeline,
        findings=findings,
        phase_summaries=summaries,
        decision=decided,
        actions=response_actions(art),
        human_gate=gate,
        report_available=art.exists(*REPORT),
        bundles=bundles_of(root, run.run_id),
        dag_run_path=dag_run_path(run.run_id),
        problems=art.problems,
        alerts=alerts,
        reevaluation=again,
        superseded=taken_over,
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
    row, _ = _assemble(r, ts, root, sop, now or datetime.now(UTC), None, detail=False)
    return row


def list_incidents(
    runs: Iterable[Mapping[str, Any] | RunRecord],
    tasks_by_run: Mapping[str, Iterable[Mapping[str, Any] | TaskRecord]],
    root: Path,
    sop: Sop,
    filters: IncidentFilter | None = None,
    now: datetime | None = None,
    alerts: Mapping[str, Held] | None = None,
) -> IncidentList:
    """Every run as an incident row, newest alert first, then filtered. ``alerts``: the intake
    journal's record of what each incident holds, by run id."""
    now = now or datetime.now(UTC)
    filters = filters or IncidentFilter()
    alerts = alerts or {}
    rows = []
    for run in runs:
        r, ts = _records(run, tasks_by_run.get(_run_id(run), ()))
        rows.append(_assemble(r, ts, root, sop, now, None, detail=False, held=alerts.get(r.run_id))[0])
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
    alerts: Held | None = None,
) -> IncidentDetail:
    """One incident, everything the on-call engineer reads. ``runbooks_dir``: where the findings'
    runbooks are checked to exist (None: not checked); ``alerts``: the intake journal's record of the
    incident's groups and alerts (None: the run conf's alerts)."""
    r, ts = _records(run, tasks)
    now = now or datetime.now(UTC)
    _, detail = _assemble(r, ts, root, sop, now, runbooks_dir, detail=True, held=alerts)
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
