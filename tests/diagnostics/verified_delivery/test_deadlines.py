"""SOP deadlines measured from the alert: met / missed / open / overdue, and the Deadline Alert callback."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from diagnostics.verified_delivery.deadlines import (
    deadline_missed,
    deadline_report,
    mark_overdue,
    overdue_phases,
)

ALERT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
PHASES = {"golden_window": 2.0, "deep_diagnosis": 12.0, "verified_delivery": 24.0}


def _incident(root: Path, incident_id: str = "inc-1") -> Path:
    d = root / incident_id
    d.mkdir(parents=True)
    (d / "incident.json").write_text(
        json.dumps({"incident_id": incident_id, "target": "testbed", "alert_started_at": ALERT.isoformat()})
    )
    return d


def _done(d: Path, rel: str, at: datetime) -> None:
    p = d / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("{}")
    os.utime(p, (at.timestamp(), at.timestamp()))


def test_each_phase_is_judged_against_alert_time_plus_its_deadline(tmp_path: Path) -> None:
    d = _incident(tmp_path)
    _done(d, "golden_window/summary.json", ALERT + timedelta(minutes=3))
    _done(d, "deep_diagnosis/summary.json", ALERT + timedelta(hours=13))
    states = {
        x.phase: x
        for x in deadline_report("inc-1", root=tmp_path, now=ALERT + timedelta(hours=14), phases=PHASES)
    }
    assert states["golden_window"].state == "met" and states["golden_window"].due == ALERT + timedelta(
        hours=2
    )
    assert states["deep_diagnosis"].state == "missed"
    assert states["verified_delivery"].state == "open"
    late = deadline_report("inc-1", root=tmp_path, now=ALERT + timedelta(hours=25), phases=PHASES)
    assert [x.state for x in late] == ["met", "missed", "overdue"]


def test_the_callback_marks_an_unfinished_phase_overdue_and_leaves_a_finished_one(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRIAGE24_ARTIFACT_ROOT", str(tmp_path))
    d = _incident(tmp_path)
    _done(d, "golden_window/summary.json", ALERT + timedelta(minutes=3))
    assert (
        mark_overdue("inc-1", "golden_window", root=tmp_path, now=ALERT + timedelta(hours=2, minutes=1))
        is False
    )
    assert overdue_phases("inc-1", tmp_path) == []
    # the Deadline Alert's context, as Airflow's scheduler builds it for a triggerer callback
    context = {"dag_run": {"dag_run_id": "inc-1", "dag_id": "incident_response"}, "deadline": {"id": "x"}}
    asyncio.run(deadline_missed(context, phase="deep_diagnosis"))
    # the real clock is long past 03:00 + 12 h of 2026-12-01 only if today is later; mark explicitly too
    assert (
        mark_overdue("inc-1", "deep_diagnosis", root=tmp_path, now=ALERT + timedelta(hours=12, minutes=1))
        is True
    )
    record = json.loads((d / "deadlines.json").read_text())
    assert record["overdue"]["deep_diagnosis"]["due"] == (ALERT + timedelta(hours=12)).isoformat()
    assert overdue_phases("inc-1", tmp_path) == ["deep_diagnosis"]


def test_a_callback_without_a_run_logs_and_returns(caplog) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(deadline_missed({}, phase="golden_window"))
    assert "without a dag_run" in caplog.text
