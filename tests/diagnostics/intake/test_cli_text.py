"""``triage24 intake check | list | status`` print what senders wrote as text (never as Rich markup), and
``check`` says what the service does: the same run id, no incident for a resolve, a partial group."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from diagnostics.intake import cli
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService
from tests.diagnostics.intake.conftest import DATA, MemoryBackend, alert, body, delivery

PAYLOADS = Path(__file__).parent / "payloads"
MARKUP = ["[/]", "[red]x[/red]", 'job=~"blackbox-[a-z]+"', "[bold", "\\[x]"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console wide enough that no cell wraps: the assertions look for whole strings."""
    monkeypatch.setattr(cli, "console", Console(highlight=False, soft_wrap=True, width=400))
    monkeypatch.setattr(cli, "err", Console(stderr=True, highlight=False, soft_wrap=True, width=400))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="triage24")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["intake", *argv])
    code = int(args.func(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_prints_group_keys_and_labels_as_sent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", str(PAYLOADS / "am-0.27-brackets-and-regex-matchers.json"))
    assert code == 0
    assert 'group {}/{job=~"blackbox-[a-z]+"}:{alertname="ProbeFailed", instance="[/]"} (firing)' in out


def test_check_of_a_resolve_never_says_it_starts_an_incident(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", str(DATA / "alertmanager-0.25-resolved.json"))
    assert code == 0
    assert (
        "group grade L3 (canary_gate_breach): Major - SLA or canary gate breached (of its resolved alerts"
        in out
    )
    assert "starts an incident: no - no firing alert: annotates the group's incident, never starts one" in out
    assert "yes" not in out and "run id" not in out


def test_check_shows_a_partial_group_computed_fingerprints_and_the_sender(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(capsys, "check", str(PAYLOADS / "am-0.27-truncated-max-alerts.json"))
    assert "truncatedAlerts 48: graded on a partial group: the sender left out 48 alert(s)" in out
    _, out, _ = run(capsys, "check", str(PAYLOADS / "am-0.16-no-fingerprint-priority-p0.json"))
    assert "4e4c4c3d872bf6d8 (computed)" in out
    assert "1 alert(s) without a fingerprint: computed from the labels as Alertmanager does" in out
    _, out, _ = run(capsys, "check", str(PAYLOADS / "grafana-11-webhook-v1.json"))
    assert "sent by Grafana's webhook contact point (payload version 1)" in out


def test_check_prints_the_run_id_the_service_creates(
    capsys: pytest.CaptureFixture[str], service: IntakeService
) -> None:
    """Group labels empty, alertname common: the readable part once differed between the two."""
    data = json.loads((PAYLOADS / "kube-prometheus-watchdog-none.json").read_text())
    data["alerts"][0]["labels"]["severity"] = "critical"
    data["groupLabels"] = {}
    path = Path(tempfile.mkdtemp()) / "p.json"
    path.write_text(json.dumps(data))
    created = service.handle(validate(data), body(data))
    assert (
        created.outcome == "created" and created.run_id and created.run_id.startswith("incident__watchdog__")
    )
    _, out, _ = run(capsys, "check", str(path))
    assert f"run id: {created.run_id}\n" in out


@pytest.fixture
def env(settings: IntakeSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE24_INTAKE_JOURNAL_DIR", str(settings.journal_dir))


def test_list_and_status_print_errors_and_details_as_text(
    env: None, service: IntakeService, backend: MemoryBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    backend.down = " ".join(MARKUP)  # an Airflow error quoting the sender's labels
    data = delivery([alert("aa", 1_800_000_000.0, severity="critical", instance="[/]")], {"instance": "[/]"})
    out = service.handle(validate(data), body(data))
    assert out.outcome == "pending"
    code, text, _ = run(capsys, "list")
    assert code == 0 and 'run not created: [/] [red]x[/red] job=~"blac' in text, text  # detail[:80]
    code, text, _ = run(capsys, "status")
    assert code == 1 and " ".join(MARKUP)[:80] in text
    assert out.run_id is not None and out.run_id in text


label_text = st.text(alphabet='[]/\\=~"ab-+ 告', min_size=1, max_size=16)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=label_text, name=st.sampled_from(["instance", "job", "alertname"]))
def test_any_label_value_is_printed_as_sent(
    capsys: pytest.CaptureFixture[str], value: str, name: str
) -> None:
    data: dict[str, Any] = delivery(
        [alert("0a1b", 1_800_000_000.0, severity="Warning", **{name: value})], {name: value}
    )
    path = Path(tempfile.mkdtemp()) / "p.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    code, out, err = run(capsys, "check", str(path))
    assert code == 0, err
    assert f"group {data['groupKey']} (firing)" in out
    assert "group grade L2 (service_degraded)" in out
