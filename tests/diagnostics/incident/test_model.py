"""Incidents from a run's conf: the intake's alert group or the manual form; bad confs name the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from diagnostics.incident.model import IncidentError, incident_from_conf

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def intake_conf(**overrides: Any) -> dict[str, Any]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "CanaryGate5xx", "target": "testbed", "version": "canary"},
        "starts_at": "2026-11-22T02:50:00Z",
        "fingerprint": "0123456789abcdef",
    }
    resolved = {**alert, "status": "resolved", "starts_at": "2026-11-22T01:00:00Z"}
    return {
        "schema": "triage24.intake/v1",
        "target": "testbed",
        "version": "canary",
        "grade": "L3",
        "escalated": True,
        "alerts": [alert, resolved],
        **overrides,
    }


def test_an_alert_group_sets_target_grade_and_a_window_covering_the_alert() -> None:
    inc = incident_from_conf("incident__x__" + "a" * 24, intake_conf(), now=NOW)
    assert (inc.source, inc.target, inc.grade, inc.escalated) == ("alertmanager", "testbed", "L3", True)
    assert inc.alert_started_at == datetime(2026, 11, 22, 2, 50, tzinfo=UTC)  # the resolved alert is ignored
    assert inc.suspected_version == "canary"
    assert inc.alert_names == ("CanaryGate5xx",)
    # 10 min since the alert + 1 min lead is less than the default 15 min window
    assert inc.window_s == 15 * 60
    assert inc.window_start == NOW - timedelta(minutes=15)


def test_an_old_alert_widens_the_window_up_to_the_golden_two_hours() -> None:
    inc = incident_from_conf(
        "r1", intake_conf(alerts=[{"status": "firing", "starts_at": "2026-11-22T02:00:00Z"}]), NOW
    )
    assert inc.window_s == 61 * 60  # 60 min since the alert, plus a minute before it
    inc = incident_from_conf(
        "r1", intake_conf(alerts=[{"status": "firing", "starts_at": "2026-11-21T20:00:00Z"}]), NOW
    )
    assert inc.window_s == 120 * 60


def test_a_manual_run_uses_the_form() -> None:
    inc = incident_from_conf("manual__2026", {"target": "testbed", "window_minutes": 5, "dry_run": True}, NOW)
    assert (inc.source, inc.window_s, inc.dry_run, inc.grade) == ("manual", 300.0, True, None)
    assert inc.alert_started_at == NOW
    assert inc.summary()["window"] == ["2026-11-22T02:55:00+00:00", "2026-11-22T03:00:00+00:00"]


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"window_minutes": 0}, "window_minutes: must be between 1 and 120 (got 0)"),
        ({"window_minutes": "soon"}, "window_minutes: expected a number of minutes, got 'soon'"),
        ({"dry_run": "yes"}, "dry_run: expected true or false, got 'yes'"),
        ({"schema": "v0"}, "schema: unknown conf schema 'v0'"),
        ({"target": "Not A Target!"}, "target: String should match pattern"),
        ({"alert_started_at": "yesterday"}, "alert_started_at: not an ISO-8601 timestamp"),
    ],
)
def test_bad_confs_name_the_field(conf: dict[str, Any], message: str) -> None:
    with pytest.raises(IncidentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        incident_from_conf("r1", conf, NOW)


def test_a_run_id_that_cannot_be_a_path_is_refused() -> None:
    with pytest.raises(IncidentError, match="incident_id"):
        incident_from_conf("../../etc", {}, NOW)
