"""``triage24 intake ...`` (through the ``register`` hook the main CLI calls)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from diagnostics.intake.cli import register
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService
from tests.diagnostics.intake.conftest import DATA, MemoryBackend, body, other_version, real_payload


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="triage24")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["intake", *argv])
    return int(args.func(args))


@pytest.fixture
def env(settings: IntakeSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE24_INTAKE_JOURNAL_DIR", str(settings.journal_dir))


def test_status_list_and_show(
    env: None, service: IntakeService, backend: MemoryBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("status") == 0  # an empty journal is not an error
    assert "deliveries: none" in capsys.readouterr().out
    service.handle(validate(real_payload()), body(real_payload()))
    assert run("status", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["deliveries"] == {"created": 1} and len(report["open"]) == 1
    backend.down = "db down"
    other = other_version(real_payload(), "canary-b")
    service.handle(validate(other), body(other))
    assert run("status") == 1, "a pending incident is reported with exit 1"
    assert "run `triage24 intake reconcile`" in capsys.readouterr().err
    assert run("list", "--json", "--outcome", "pending") == 0
    (pending,) = json.loads(capsys.readouterr().out)
    assert pending["outcome"] == "pending" and "db down" in pending["detail"]
    assert run("show", str(pending["id"])) == 0
    assert 'version="canary-b"' in json.loads(capsys.readouterr().out)["groupKey"]
    assert run("show", "999") == 1


def test_check_grades_a_payload_offline(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run("check", str(DATA / "alertmanager-0.25-firing.json")) == 0
    out = capsys.readouterr().out
    assert "group grade L3 (canary_gate_breach)" in out
    assert "run id: incident__canarygate5xx-testbed-canary__" in out
    bad = tmp_path / "bad.json"
    data = real_payload()
    data["alerts"][0]["startsAt"] = "soon"
    bad.write_text(json.dumps(data))
    assert run("check", str(bad)) == 1
    assert "alerts[0].startsAt" in capsys.readouterr().err


def test_rules_check_detects_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import REPO

    assert run("rules", "--check") == 0
    repo = tmp_path / "repo"
    (repo / "deploy" / "prometheus" / "rules").mkdir(parents=True)
    (repo / "runbooks").symlink_to(REPO / "runbooks")
    monkeypatch.setenv("TRIAGE24_REPO_ROOT", str(repo))
    monkeypatch.setenv("TRIAGE24_RUNBOOKS_DIR", str(repo / "runbooks"))
    assert run("rules", "--check") == 1
    assert run("rules", "--write") == 0
    assert run("rules", "--check") == 0
