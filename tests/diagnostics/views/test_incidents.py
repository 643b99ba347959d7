"""The Incidents view's data (diagnostics.views), from plain run / task dicts and artifacts
written by the pipeline's own code: the incident, phase summaries of real findings, a real decision,
a real recovery verification and a real sealed audit bundle.

The builders here are shared with the plugin's tests (tests/plugins/test_incidents_ui.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from diagnostics.decision import decide
from diagnostics.incident.model import incident_from_conf
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.incident.store import write_json, write_result
from diagnostics.incident.summary import summarize
from diagnostics.response.rollback.contracts import ActionResult
from diagnostics.response.verify import ProbePart, RecoveryProbe, verify_recovery
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.loader import load_yaml_model
from diagnostics.runbooks.schemas import Sop
from diagnostics.verified_delivery.audit.chain import seal_incident
from diagnostics.verified_delivery.audit.keys import AuditKey
from diagnostics.views import incidents as view
from diagnostics.views.artifacts import ArtifactNotFound, artifact_file
from diagnostics.views.bundles import bundles_of
from diagnostics.views.formatting import format_duration, format_time
from diagnostics.views.models import IncidentList
from diagnostics.views.runbooks import RunbookNotFound, render_runbook, runbook_names
from diagnostics.views.timeline import phase_of_task
from tests.conftest import REPO
from tests.diagnostics.decision.builders import POLICY, healthy

BOOKS = load_runbooks()
SOP = load_yaml_model(REPO / "runbooks" / "sop.yaml", Sop)
RUNBOOKS = REPO / "runbooks"
T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
AUDIT_KEY = AuditKey("incidents-view-test-audit-key-0123456789abcdef")
FIXTURES = REPO / "tests" / "diagnostics" / "fixtures"

# The incident DAG's task ids (as the scheduler creates them for every run).
TASK_IDS = [
    "open_incident",
    *(
        f"golden_window.{c}"
        for c in ("health_snapshot", "model_integrity", "metrics_sla", "log_classification")
    ),
    "golden_window.phase_summary",
    "fast_path.fast_gate",
    "fast_path.rollback_now",
    "fast_path.verify_now",
    "fast_path.no_fast_path",
    *(f"deep_diagnosis.{c}" for c in ("clip_consistency", "asr_check", "drift")),
    "deep_diagnosis.deep_summary",
    "decision.decide",
    "decision.go_rollback",
    "decision.go_continue",
    "decision.done_by_fast_path",
    *(f"decision.human_gate_{g}" for g in ("L1", "L2", "L3", "L4", "ungraded")),
    *(f"decision.human_{c}" for c in ("rollback", "hold", "continue")),
    "response.rollback",
    "response.verify_recovery",
    "response.continue_release",
    "response.hold",
    "verified_delivery.audit_bundle",
]


VERIFIED_AT = T0 + timedelta(minutes=28, seconds=45)  # response.verify_recovery of tasks() ends at 29 min
APPLIED_AT = T0 + timedelta(minutes=27, seconds=30)  # response.rollback of tasks() ends at 28 min


def _problem(problem_id: str) -> Any:
    return next(p for p in BOOKS.priority_matrix.problems if p.id == problem_id)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- builders (also used by the plugin tests) -----------------------------------------------------


def write_incident(root: Path, run_id: str, t0: datetime = T0, **conf: Any) -> dict[str, Any]:
    incident = incident_from_conf(
        run_id,
        {"target": "testbed", "alert_started_at": t0.isoformat(), **conf},
        now=t0 + timedelta(minutes=1),
    )
    data = incident.model_dump(mode="json")
    write_json(root / run_id / "incident.json", data)
    return data


def write_findings(root: Path, run_id: str) -> None:
    """Phase 1: a high 5xx burst and a critical canary model mismatch; phase 2: a critical dimension
    mismatch and a finding whose runbook does not exist."""
    phase1 = [
        CheckResult(
            check="log_classification",
            status=Status.DEGRADED,
            summary="5xx burst on the canary",
            findings=[Finding.from_problem(_problem("http_5xx_burst"), "log_classification", "412 x HTTP 503",
                                           version="canary", channel="text")],
        ),
        CheckResult(
            check="model_integrity",
            status=Status.FAILED,
            summary="canary clip checksum mismatch",
            findings=[Finding.from_problem(_problem("model_not_loaded"), "model_integrity",
                                           "sha256 3f2a… != pinned 9c1e…", version="canary")],
        ),
    ]  # fmt: skip
    summary = summarize("golden_window", phase1, gate={"verdict": "breach"})
    write_result(root, run_id, "golden_window", "summary", summary)
    deep = [
        CheckResult(
            check="embedding_alignment",
            status=Status.FAILED,
            summary="dimension mismatch",
            findings=[
                Finding.from_problem(
                    _problem("embedding_dim_mismatch"), "embedding_alignment", "image 512 vs text 768",
                    version="canary",
                ),
                Finding(check="drift", problem="input_drift", severity="low", component="embedding",
                        title="Input drift", evidence="KS 0.31", action="watch",
                        runbook="no_such_runbook.md"),
            ],
        )
    ]  # fmt: skip
    write_result(root, run_id, "deep_diagnosis", "summary", summarize("deep_diagnosis", deep))


def write_decision(root: Path, run_id: str, kind: str = "insufficient") -> dict[str, Any]:
    """A real decision: ``insufficient`` (asks a human, L3: hold after 900 s) or ``rollback``."""
    from diagnostics.decision import FindingBrief
    from diagnostics.runbooks.schemas import Severity

    if kind == "insufficient":
        inputs = healthy(
            incident_id=run_id,
            metrics_status=Status.INSUFFICIENT_EVIDENCE,
            metrics_summary="testbed: no metrics: refused",
        )
    else:
        from tests.diagnostics.decision.builders import phase1

        critical = FindingBrief(
            problem="model_not_loaded", severity=Severity.CRITICAL,
            component="embedding", version="canary", evidence="checksum mismatch",
        )  # fmt: skip
        inputs = healthy(incident_id=run_id, phase1=phase1(critical, model_integrity=Status.FAILED))
    decision = decide(inputs, POLICY)
    write_result(root, run_id, "decision", "decision", decision)
    return decision.model_dump(mode="json")


def write_rollback(root: Path, run_id: str, applied_at: datetime, **changes: Any) -> dict[str, Any]:
    """A rollback result as the gateway_weight method stored it in a real run (the canary weight
    10 -> 0; tests/diagnostics/fixtures/incident_rollback), for this run, applied at ``applied_at``."""
    stored = json.loads((FIXTURES / "incident_rollback" / "response" / "rollback.json").read_text())
    result = ActionResult.model_validate(
        {
            **stored,
            "incident_id": run_id,
            "started_at": (applied_at - timedelta(milliseconds=47)).isoformat(),
            "finished_at": applied_at.isoformat(),
            **changes,
        }
    )
    write_result(root, run_id, "response", "rollback", result)
    return result.model_dump(mode="json")


def write_recovery(root: Path, run_id: str, verified_at: datetime | None = None) -> float:
    """A real recovery verification: two bad samples, then recovered (5 s apart): 10 s to recover,
    stored at ``verified_at`` (default: when the builders' verify_recovery task ends, 29 min after the
    alert; the view reads when the verdict was stored from the file)."""
    now = [0.0]
    readings = iter([False, False, True, True, True])

    def probe() -> RecoveryProbe:
        return RecoveryProbe(parts=[ProbePart(name="stable_health", state="ok" if next(readings) else "bad")])

    def sleep(s: float) -> None:
        now[0] += s

    result = verify_recovery(probe, timeout_s=300, interval_s=5, clock=lambda: now[0], sleep=sleep)
    path = write_result(root, run_id, "response", "recovery_verification", result)
    stamp = (verified_at or VERIFIED_AT).timestamp()
    os.utime(path, (stamp, stamp))
    assert result.time_to_recover_s is not None
    return result.time_to_recover_s


def write_report(root: Path, run_id: str) -> Path:
    path = root / run_id / "report" / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!doctype html><h1>Incident report</h1><p>canary rolled back</p>", encoding="utf-8")
    return path


def seal(root: Path, run_id: str) -> Path:
    info = seal_incident(run_id, AUDIT_KEY, root=root, now=at(90))
    return Path(info.path)


def tasks(done_until: str | None = None, **states: str | None) -> list[dict[str, Any]]:
    """Every task of the DAG, ``None`` state (not scheduled); ``states`` sets some (task id with ``__``
    for ``.``), each started 1 min after the alert and ended by the minute of its place in the list."""
    out = []
    for i, task_id in enumerate(TASK_IDS):
        key = task_id.replace(".", "__")
        state = states.get(key)
        started = at(1 + i) if state and state not in ("scheduled", "queued") else None
        ended = at(2 + i) if state in ("success", "failed", "skipped", "upstream_failed") else None
        out.append(
            {"task_id": task_id, "state": state, "start_date": started, "end_date": ended, "try_number": 1}
        )
    return out


def run(
    run_id: str, state: str, conf: dict[str, Any] | None = None, **dates: datetime | None
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "state": state,
        "conf": conf if conf is not None else {"target": "testbed"},
        "queued_at": dates.get("queued_at", at(0.5)),
        "start_date": dates.get("start_date", at(1)),
        "end_date": dates.get("end_date"),
    }


PHASE1_DONE = {
    "open_incident": "success",
    **{f"golden_window__{c}": "success" for c in ("health_snapshot", "model_integrity", "metrics_sla",
                                                   "log_classification", "phase_summary")},
    "fast_path__fast_gate": "success",
    "fast_path__rollback_now": "skipped",
    "fast_path__verify_now": "skipped",
    "fast_path__no_fast_path": "success",
}  # fmt: skip
PHASE2_DONE = {
    f"deep_diagnosis__{c}": "success" for c in ("clip_consistency", "asr_check", "drift", "deep_summary")
}


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "artifacts"


# --- the list -------------------------------------------------------------------------------------


def _three(root: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """A rolled-back, recovered incident (L4, finished); one waiting for a human (manual); one whose
    golden window still runs 3 h after its alert (L2, overdue)."""
    rolled = "incident__testbed-canary__aaaa"
    write_json(
        root / rolled / "incident.json",
        {**write_incident(root, rolled, version="canary"), "grade": "L4", "source": "alertmanager"},
    )
    write_findings(root, rolled)
    write_decision(root, rolled, "rollback")
    write_rollback(root, rolled, APPLIED_AT)
    ttr = write_recovery(root, rolled)
    assert ttr == 10.0
    rolled_tasks = tasks(
        **PHASE1_DONE, **PHASE2_DONE, decision__decide="success", decision__go_rollback="success",
        response__rollback="success", response__verify_recovery="success",
    )  # fmt: skip
    waiting = "manual__2026-03-01T04:00:00+00:00"
    write_incident(root, waiting, t0=at(60))
    write_decision(root, waiting, "insufficient")
    waiting_tasks = tasks(**PHASE1_DONE, **PHASE2_DONE, decision__decide="success",
                          decision__human_gate_ungraded="awaiting_input")  # fmt: skip
    slow = "incident__other-canary__bbbb"
    write_json(root / slow / "incident.json", {**write_incident(root, slow, t0=at(30)), "target": "other",
                                                "grade": "L2"})  # fmt: skip
    slow_tasks = tasks(open_incident="success", golden_window__metrics_sla="running")
    runs = [
        run(rolled, "success", conf={"target": "testbed", "grade": "L4"}, end_date=at(50)),
        run(waiting, "running", start_date=at(61)),
        run(slow, "running", conf={"target": "other", "grade": "L2"}, start_date=at(31)),
    ]
    return runs, {rolled: rolled_tasks, waiting: waiting_tasks, slow: slow_tasks}


NOW = at(210)  # 3.5 h after the first alert


def test_the_list_shows_status_phase_decision_times_and_overdue_per_incident(root: Path) -> None:
    runs, by_run = _three(root)
    data = view.list_incidents(runs, by_run, root, SOP, now=NOW)
    assert [r.run_id for r in data.rows] == [
        "manual__2026-03-01T04:00:00+00:00",  # newest alert first
        "incident__other-canary__bbbb",
        "incident__testbed-canary__aaaa",
    ]
    waiting, slow, rolled = data.rows
    assert (rolled.status, rolled.phase, rolled.grade_label, rolled.target) == (
        "finished",
        None,
        "L4",
        "testbed",
    )
    assert rolled.decision is not None and (rolled.decision.outcome, rolled.decision.rule) == (
        "rollback",
        "critical_canary_finding",
    )
    # decided when decision.decide ended
    decided = next(t["end_date"] for t in by_run[rolled.run_id] if t["task_id"] == "decision.decide")
    assert rolled.time_to_decision_s == (decided - T0).total_seconds() == 16 * 60
    # both from the alert: the rollback applied at 27:30, the recovery verified at 28:45
    assert (rolled.time_to_mitigate_s, rolled.mitigated_at, rolled.mitigation) == (
        27 * 60 + 30, APPLIED_AT, "rolled back",
    )  # fmt: skip
    assert (rolled.time_to_recover_s, rolled.verified_at, rolled.recovered) == (
        28 * 60 + 45,
        VERIFIED_AT,
        True,
    )
    assert (rolled.title, rolled.action_taken) == (
        "testbed canary · model_not_loaded on embedding",
        "rolled back",
    )
    assert rolled.lead is not None and (rolled.lead.severity, rolled.lead.component) == (
        "critical",
        "embedding",
    )
    assert not rolled.overdue and rolled.missed_deadlines == []
    assert [r.open for r in data.rows] == [True, True, False]

    assert (waiting.status, waiting.phase, waiting.grade_label) == ("awaiting_human", "decision", "ungraded")
    assert waiting.pending_gate == "decision.human_gate_ungraded"
    assert waiting.decision is not None and waiting.decision.needs_human
    assert waiting.decision.outcome == "insufficient_evidence"
    assert waiting.time_to_decision_s is None, "asking a human is not a decision yet"
    assert waiting.source == "manual"
    assert waiting.title == "testbed · manual investigation" and waiting.lead is None
    assert (waiting.action_taken, waiting.time_to_mitigate_s, waiting.mitigation) == (
        None,
        None,
        "not mitigated",
    )
    assert (waiting.time_to_recover_s, waiting.recovery, waiting.recovered) == (None, "not verified", None)

    assert (slow.status, slow.phase, slow.target, slow.grade) == ("running", "golden_window", "other", "L2")
    assert slow.overdue and slow.overdue_phases == ["golden_window"], (
        "3 h after the alert, past the 2 h deadline"
    )
    assert slow.decision is None and slow.time_to_decision_s is None

    assert (
        data.total == 3 and data.targets == ["other", "testbed"] and data.grades == ["L2", "L4", "ungraded"]
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "awaiting_human"}, ["manual__2026-03-01T04:00:00+00:00"]),
        ({"target": "other"}, ["incident__other-canary__bbbb"]),
        ({"grade": "ungraded"}, ["manual__2026-03-01T04:00:00+00:00"]),
        ({"grade": "L4", "status": "finished"}, ["incident__testbed-canary__aaaa"]),
        ({"grade": "L4", "status": "running"}, []),
        ({"target": "", "grade": "", "status": ""}, None),  # blank = no filter
    ],
)
def test_filters_by_target_grade_and_status(
    root: Path, params: dict[str, str], expected: list[str] | None
) -> None:
    runs, by_run = _three(root)
    data = view.list_incidents(runs, by_run, root, SOP, view.parse_filter(params), now=NOW)
    assert [r.run_id for r in data.rows] == (expected if expected is not None else [r["run_id"] for r in (
        runs[1], runs[2], runs[0])])  # fmt: skip
    assert data.total == 3


def test_a_bad_filter_names_the_parameter_and_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"status: .*one of: queued, running, awaiting_human, finished, failed"
    ):
        view.parse_filter({"status": "resolved"})
    with pytest.raises(ValueError, match="target"):
        view.parse_filter({"target": "x" * 101})


# --- one incident ---------------------------------------------------------------------------------


def test_the_timeline_measures_each_phase_against_its_deadline_from_the_alert(root: Path) -> None:
    rid = "incident__testbed-canary__cccc"
    write_incident(root, rid)
    states = {**PHASE1_DONE, **PHASE2_DONE, "decision__decide": "success"}
    detail = view.incident_detail(run(rid, "running"), tasks(**states, response__hold="running"), root, SOP,
                                  now=at(40))  # fmt: skip
    lines = {p.id: p for p in detail.timeline}
    assert list(lines) == ["intake", "golden_window", "deep_diagnosis", "decision", "verified_delivery"]
    gw = lines["golden_window"]
    assert (gw.state, gw.deadline_state, gw.deadline_h) == ("done", "met", 2)
    # its tasks, the fast path's included, ran from minute 2 to minute 11 after the alert
    assert gw.started_after_s == 2 * 60 and gw.ended_after_s == 11 * 60
    assert gw.deadline_at == at(120) and gw.deadline_used == pytest.approx(11 / 120, abs=1e-4)
    assert lines["intake"].deadline_state == "none" and lines["decision"].deadline_h is None
    assert lines["deep_diagnosis"].deadline_state == "met"
    v3 = lines["verified_delivery"]
    assert (v3.state, v3.deadline_state, v3.remaining_s) == ("running", "open", (24 * 60 - 40) * 60)
    assert detail.row.phase == "verified_delivery" and not detail.row.overdue
    assert {t.task_id for t in gw.tasks} >= {"golden_window.metrics_sla", "fast_path.fast_gate"}

    # The same run read 25 h after the alert: phase 3 is overdue.
    late = view.incident_detail(run(rid, "running"), tasks(**states, response__hold="running"), root, SOP,
                                now=at(25 * 60))  # fmt: skip
    assert late.row.overdue and late.row.overdue_phases == ["verified_delivery"]
    assert {p.id: p.deadline_state.value for p in late.timeline}["verified_delivery"] == "overdue"


def test_a_phase_that_ended_after_its_deadline_is_missed(root: Path) -> None:
    rid = "incident__testbed-canary__dddd"
    write_incident(root, rid, t0=at(-180))  # the alert fired 3 h before the tasks ran
    detail = view.incident_detail(
        run(rid, "success", end_date=at(60)), tasks(**PHASE1_DONE), root, SOP, now=at(70)
    )
    lines = {p.id: p for p in detail.timeline}
    assert lines["golden_window"].deadline_state == "missed"
    assert detail.row.missed_deadlines == ["golden_window"] and not detail.row.overdue
    assert detail.row.status == "finished" and detail.row.phase is None


def test_findings_of_both_phases_are_ranked_with_actions_and_runbooks(root: Path) -> None:
    rid = "incident__testbed-canary__eeee"
    write_incident(root, rid)
    write_findings(root, rid)
    detail = view.incident_detail(run(rid, "running"), tasks(**PHASE1_DONE), root, SOP, RUNBOOKS, now=at(30))
    ranked = [(f.rank, f.severity, f.problem, f.phase) for f in detail.findings]
    assert ranked == [
        (1, "critical", "model_not_loaded", "golden_window"),
        (2, "critical", "embedding_dim_mismatch", "deep_diagnosis"),
        (3, "high", "http_5xx_burst", "golden_window"),
        (4, "low", "input_drift", "deep_diagnosis"),
    ]
    first = detail.findings[0]
    assert first.runbook == "model_not_loaded.md" and first.action.startswith(
        "Compare the loaded model's SHA-256"
    )
    assert (first.component, first.version, first.check) == ("embedding", "canary", "model_integrity")
    assert detail.findings[2].channel == "text" and detail.findings[2].evidence == "412 x HTTP 503"
    assert detail.findings[3].runbook is None and detail.findings[3].runbook_missing == "no_such_runbook.md"
    assert detail.phase_summaries["golden_window"].startswith("2 finding(s); most severe: critical")


def test_the_decision_its_reasons_and_the_pending_human_gate(root: Path) -> None:
    rid = "incident__testbed-canary__ffff"
    write_incident(root, rid)
    stored = write_decision(root, rid, "insufficient")
    states = {
        **PHASE1_DONE,
        **PHASE2_DONE,
        "decision__decide": "success",
        "decision__human_gate_L3": "awaiting_input",
    }
    detail = view.incident_detail(run(rid, "running"), tasks(**states), root, SOP, now=at(30))
    d = detail.decision
    assert d is not None and d.source == "decision"
    assert (d.outcome, d.rule, d.needs_human) == ("insufficient_evidence", "insufficient_evidence", True)
    assert d.reasons == stored["reasons"] and d.reasons[0].startswith("metrics_sla insufficient evidence")
    assert (d.human_default, d.human_timeout_s, d.human_escalate) == ("hold", 900, True)
    gate = detail.human_gate
    assert gate is not None and gate.task_id == "decision.human_gate_L3"
    asked = next(t["start_date"] for t in tasks(**states) if t["task_id"] == "decision.human_gate_L3")
    assert gate.asked_at == asked and gate.default_at == asked + timedelta(seconds=900)
    assert gate.required_action_path == (
        f"/dags/incident_response/runs/{rid}/tasks/decision.human_gate_L3/required_actions"
    )
    assert detail.dag_run_path == f"/dags/incident_response/runs/{rid}"
    assert detail.row.status == "awaiting_human" and detail.row.phase == "decision"

    # Answered (hold): decided when the gate ended; the response recorded.
    answered = {**states, "decision__human_gate_L3": "success", "decision__human_hold": "success",
                "response__hold": "success"}  # fmt: skip
    done = view.incident_detail(
        run(rid, "success", end_date=at(60)), tasks(**answered), root, SOP, now=at(61)
    )
    gate_end = next(t["end_date"] for t in tasks(**answered) if t["task_id"] == "decision.human_gate_L3")
    assert done.row.time_to_decision_s == (gate_end - T0).total_seconds()
    assert done.human_gate is None and done.row.status == "finished"


def test_a_fast_path_rollback_is_decided_at_the_fast_gate(root: Path) -> None:
    rid = "incident__testbed-canary__gggg"
    write_incident(root, rid)
    decision = write_decision(root, rid, "rollback")
    write_json(root / rid / "decision" / "fast_decision.json", decision)
    (root / rid / "decision" / "decision.json").unlink()  # phase 2 still runs: only the fast decision exists
    states = {**PHASE1_DONE, "fast_path__rollback_now": "running", "fast_path__no_fast_path": "skipped"}
    detail = view.incident_detail(run(rid, "running"), tasks(**states), root, SOP, now=at(30))
    assert detail.decision is not None and detail.decision.source == "fast_decision"
    assert detail.row.decision is not None and detail.row.decision.outcome == "rollback"
    fast_end = next(t["end_date"] for t in tasks(**states) if t["task_id"] == "fast_path.fast_gate")
    assert detail.row.time_to_decision_s == (fast_end - T0).total_seconds()


def test_report_bundles_and_actions_are_found(root: Path) -> None:
    rid = "incident__testbed-canary__hhhh"
    write_incident(root, rid)
    write_decision(root, rid, "rollback")
    write_recovery(root, rid)
    write_report(root, rid)
    bundle = seal(root, rid)
    detail = view.incident_detail(
        run(rid, "success", end_date=at(95)), tasks(**PHASE1_DONE), root, SOP, now=at(99)
    )
    assert detail.report_available
    (ref,) = detail.bundles
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert ref.stamp == bundle.name and ref.files == len(manifest["files"]) and ref.files >= 4
    assert ref.relative_path == f"audit/bundles/{rid}/{bundle.name}"
    assert ref.bundle_digest == json.loads((bundle / "seal.json").read_text())["bundle_digest"]
    (action,) = detail.actions
    assert (action.name, action.status, action.recovered, action.time_to_recover_s) == (
        "recovery_verification", "ok", True, 10.0,
    )  # fmt: skip


def test_unreadable_evidence_is_listed_and_never_breaks_the_page(root: Path) -> None:
    rid = "incident__testbed-canary__iiii"
    write_incident(root, rid)
    broken = root / rid / "decision" / "decision.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"outcome": "rollb')  # a writer that died mid-file
    (root / rid / "golden_window").mkdir()
    (root / rid / "golden_window" / "summary.json").write_text("[1, 2]")
    detail = view.incident_detail(run(rid, "running"), tasks(open_incident="success"), root, SOP, now=at(5))
    assert detail.decision is None and detail.findings == []
    assert any(p.startswith("decision/decision.json: unreadable (JSONDecodeError") for p in detail.problems)
    assert "golden_window/summary.json: not a JSON object" in detail.problems

    # A run id that cannot be a folder name: nothing is read from disk, the run is still shown.
    odd = view.incident_detail(
        run("../../etc", "queued", conf={"target": "<b>x</b>"}), [], root, SOP, now=at(5)
    )
    assert odd.row.target == "<b>x</b>" and odd.row.status == "queued" and odd.incident is None
    assert odd.problems == ["run id '../../etc' cannot name an artifact folder: no evidence shown"]
    assert bundles_of(root, "..") == []


def test_airflow_enum_states_and_missing_fields_are_accepted(root: Path) -> None:
    from enum import Enum

    class RunState(str, Enum):  # noqa: UP042 - the shape of Airflow's DagRunState
        QUEUED = "queued"

    row = view.incident_row(
        {"run_id": "r1", "state": RunState.QUEUED, "conf": None}, [], root, SOP, now=at(1)
    )
    assert (row.status, row.run_state, row.target, row.grade_label, row.phase) == (
        "queued", "queued", "unknown", "ungraded", "intake",
    )  # fmt: skip


def test_tasks_map_to_the_sop_phases() -> None:
    assert phase_of_task("open_incident", SOP) == "intake"
    assert phase_of_task("golden_window.metrics_sla", SOP) == "golden_window"
    assert phase_of_task("fast_path.rollback_now", SOP) == "golden_window"
    assert phase_of_task("deep_diagnosis.drift", SOP) == "deep_diagnosis"
    assert phase_of_task("decision.human_gate_L4", SOP) == "decision"
    assert phase_of_task("response.verify_recovery", SOP) == "verified_delivery"
    assert phase_of_task("verified_delivery.diff_report", SOP) == "verified_delivery"
    assert phase_of_task("something_new", SOP) == "verified_delivery"


# --- files ----------------------------------------------------------------------------------------


def test_artifact_files_never_leave_their_folder(tmp_path: Path) -> None:
    base = tmp_path / "root"
    (base / "run" / "report").mkdir(parents=True)
    (base / "run" / "report" / "report.html").write_text("ok")
    (tmp_path / "secret.txt").write_text("outside")
    (base / "run" / "escape.html").symlink_to(tmp_path / "secret.txt")
    (base / "run" / ".hidden").write_text("x")
    assert artifact_file(base, "run", "report", "report.html").read_text() == "ok"
    for parts in [
        ("..", "secret.txt"),
        ("run", "..", "..", "secret.txt"),
        ("run", "escape.html"),  # a link out of the root
        ("run", ".hidden"),
        ("run", "report"),  # a folder
        ("run", "report/report.html"),  # one part, one name
        ("run", "missing.html"),
        ("",),
        ("run", "a\0b"),
    ]:
        with pytest.raises(ArtifactNotFound):
            artifact_file(base, *parts)


# --- runbooks -------------------------------------------------------------------------------------


def test_the_runbooks_render_as_html() -> None:
    names = runbook_names(RUNBOOKS)
    assert {"model_not_loaded.md", "sop.md", "http_5xx_burst.md"} <= set(names)
    html = render_runbook(RUNBOOKS, "model_not_loaded.md")
    first_heading = next(line for line in (RUNBOOKS / "model_not_loaded.md").read_text().splitlines()
                         if line.startswith("# "))  # fmt: skip
    assert f"<h1>{first_heading[2:].strip()}</h1>" in html.replace("&quot;", '"')
    for name in ("../pyproject.toml", "sop.yaml", ".md", "no_such.md", "a/b.md"):
        with pytest.raises(RunbookNotFound):
            render_runbook(RUNBOOKS, name)


def test_raw_html_and_script_links_in_a_runbook_stay_text(tmp_path: Path) -> None:
    (tmp_path / "evil.md").write_text(
        "# Fix\n\n<script>alert(1)</script>\n\n[click](javascript:alert(1)) [ok](sop.md)\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    html = render_runbook(tmp_path, "evil.md")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript:' not in html and '<a href="sop.md">ok</a>' in html
    assert "<table>" in html and "<td>1</td>" in html


def test_durations_and_times_read_well() -> None:
    cases = {None: "—", 0.25: "250 ms", 4.25: "4.2 s", 42: "42 s", 185: "3 min 05 s", 7620: "2 h 07 min",
             93600: "1 d 02 h", -30: "-30 s"}  # fmt: skip
    assert {k: format_duration(k) for k in cases} == cases
    assert format_time(datetime(2026, 3, 1, 3, 4, 5, tzinfo=UTC)) == "2026-03-01 03:04:05Z"
    assert format_time(None) == "—"


def test_the_models_are_the_json_of_the_data_routes(root: Path) -> None:
    runs, by_run = _three(root)
    data = view.list_incidents(runs, by_run, root, SOP, now=NOW)
    again = IncidentList.model_validate_json(data.model_dump_json())
    assert again == data
    assert os.fspath(root)  # the artifact root is never part of the JSON
    assert str(root) not in data.model_dump_json()


def test_once_the_run_is_over_nothing_shows_as_running(root: Path) -> None:
    rid = "incident__testbed-canary__jjjj"
    write_incident(root, rid)
    # The branch chose the rollback; the human gates and the other responses never ran (None).
    states = {**PHASE1_DONE, **PHASE2_DONE, "decision__decide": "success", "decision__go_rollback": "success",
              "response__rollback": "success", "response__verify_recovery": "failed"}  # fmt: skip
    over = view.incident_detail(run(rid, "failed", end_date=at(40)), tasks(**states), root, SOP, now=at(41))
    assert {p.id: p.state.value for p in over.timeline} == {
        "intake": "done",
        "golden_window": "done",
        "deep_diagnosis": "done",
        "decision": "done",
        "verified_delivery": "failed",
    }
    assert over.row.status == "failed" and over.row.phase is None and not over.row.overdue
