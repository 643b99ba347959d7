"""The run conf as one typed, versioned model: the intake's alert group and the manual form."""

from __future__ import annotations

import pytest

from diagnostics.incident.conf import INTAKE_SCHEMA, ConfError, IncidentConf, ManualConf, parse_conf


def test_the_intake_conf_round_trips_under_its_wire_name() -> None:
    conf = IncidentConf(
        target="testbed",
        version="canary",
        grade="L3",
        alerts=[{"status": "firing", "labels": {"alertname": "X"}, "starts_at": "2026-12-07T03:00:00Z"}],
    )
    wire = conf.as_conf()
    assert wire["schema"] == INTAKE_SCHEMA and "schema_" not in wire
    again = parse_conf(wire)
    assert isinstance(again, IncidentConf) and again == conf
    assert [a.alertname for a in again.firing] == ["X"]


def test_a_conf_without_schema_is_the_manual_form_with_its_defaults() -> None:
    form = parse_conf({"target": "testbed", "deep_checks": ["drift"]})
    assert isinstance(form, ManualConf)
    assert (form.window_minutes, form.dry_run, form.target) == (15.0, False, "testbed")


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"schema": "triage24.intake/v9"}, "schema: unknown conf schema 'triage24.intake/v9'"),
        ({"schema": INTAKE_SCHEMA, "grade": 3}, "grade: Input should be a valid string"),
        ({"schema": INTAKE_SCHEMA, "alerts": [{"status": "firing"}]}, "alerts.0.starts_at: Field required"),
        ({"dry_run": 1}, "dry_run: expected true or false, got 1"),
        ({"window_minutes": 500}, "window_minutes: must be between 1 and 120 (got 500)"),
    ],
)
def test_a_bad_conf_names_the_field(conf: dict[str, object], message: str) -> None:
    with pytest.raises(ConfError) as err:
        parse_conf(conf)
    assert str(err.value).startswith(message)
