"""``triage24 report INCIDENT_ID``: prints both paths; an unknown incident is exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.cli import main
from tests.diagnostics.verified_delivery.report.conftest import (
    ROLLBACK,
    ROLLBACK_ALERT,
    ROLLBACK_TIMES,
    copy_incident,
)

INCIDENT = "manual__2026-12-01T11:07:30.496796+00:00"


def test_report_prints_the_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    incident = copy_incident(ROLLBACK, tmp_path, ROLLBACK_ALERT, ROLLBACK_TIMES, name=INCIDENT)
    assert main(["report", INCIDENT, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"html {incident / 'report' / 'report.html'}"
    assert out[1] == f"markdown {incident / 'report' / 'report.md'}"
    assert "decision rollback (critical_canary_finding)" in out[-1]
    assert (incident / "report" / "report.html").is_file()


def test_report_json_and_the_configured_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_incident(ROLLBACK, tmp_path, ROLLBACK_ALERT, ROLLBACK_TIMES, name=INCIDENT)
    monkeypatch.setenv("TRIAGE24_ARTIFACT_ROOT", str(tmp_path))
    assert main(["report", INCIDENT, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["outcome"] == "rollback" and record["time_to_recover_s"] == 46.294
    assert record["html"] == str(tmp_path / INCIDENT / "report" / "report.html")


@pytest.mark.parametrize("incident_id", ["nope", "../etc", "a/b"])
def test_no_such_incident_is_exit_2(
    tmp_path: Path, incident_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", incident_id, "--root", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
