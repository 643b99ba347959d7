"""Correlation across alert groups on the journal and an in-memory Airflow (issue 19): the scheduled
regression run's GoldenRegression and Prometheus' ModelNotLoaded for the same canary are one incident,
a joined group keeps updating it, the window bounds joining, a join is one transaction, the CLI shows
every joined alert, and a version-1 journal is upgraded in place."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from diagnostics.intake import cli
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.journal import Journal, JournalError, Tx
from diagnostics.intake.members import incident_alerts, incident_of_alert
from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService, Outcome
from tests.diagnostics.intake.conftest import (
    MODEL_NOT_LOADED,
    Clock,
    MemoryBackend,
    body,
    golden_regression,
    model_not_loaded,
)

KEY = "same_target_version: target=testbed, version=canary"


def send(service: IntakeService, payload: dict[str, Any]) -> Outcome:
    return service.handle(validate(payload), body(payload))


def test_the_regression_alert_and_model_not_loaded_are_one_incident(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    regression = send(service, golden_regression(clock.now - 5))
    assert (regression.outcome, regression.grade, regression.correlation) == ("created", "L2", KEY)
    assert regression.run_id is not None and regression.run_id.startswith(
        "incident__goldenregression-testbed__"
    )
    clock.advance(120)
    fault = send(service, model_not_loaded(clock.now - 40))
    assert (fault.outcome, fault.http_status, fault.run_id) == ("joined", 200, regression.run_id)
    assert (fault.grade, fault.rule, fault.escalated, fault.correlation) == (
        "L4",
        "core_path_failing",
        True,
        KEY,
    )
    assert fault.as_dict()["correlation"] == KEY, "the answer tells the sender"
    assert list(backend.runs) == [regression.run_id], "no second run"
    incident = service.journal.incident(regression.run_id)
    assert incident is not None
    assert (incident.grade, incident.escalated, incident.updates) == ("L4", True, 1)
    held = incident_alerts(service.journal, [regression.run_id])[regression.run_id]
    assert [(g.labels, g.rule) for g in held.groups] == [
        ({"alertname": "GoldenRegression", "target": "testbed"}, ""),
        ({"target": "testbed", "version": "canary"}, "same_target_version"),
    ]
    assert held.groups[1].joined_at == clock.now and held.groups[1].key == "target=testbed, version=canary"
    assert [(a.labels["alertname"], a.status) for a in held.alerts] == [
        ("GoldenRegression", "firing"),
        ("ModelNotLoaded", "firing"),
    ]
    note = backend.runs[regression.run_id].note
    assert "**L4**" in note and "alerts firing 2, resolved 0" in note
    assert "joined by 1 group(s) (rule `same_target_version`): target=testbed, version=canary" in note
    # The demo's lookup: the incident the fault's own alert went to.
    found = incident_of_alert(service.journal, MODEL_NOT_LOADED, clock.now - 1)
    assert found is not None and found[1].run_id == regression.run_id


def test_a_joined_group_keeps_updating_the_incident_it_joined(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    opened = send(service, golden_regression(clock.now - 5))
    clock.advance(30)
    t0 = clock.now - 40
    assert send(service, model_not_loaded(t0)).outcome == "joined"
    clock.advance(15)
    assert send(service, model_not_loaded(t0)).outcome == "duplicate"  # Alertmanager's re-send
    clock.advance(60)
    resolved = send(service, model_not_loaded(t0, status="resolved", ends=clock.now))
    assert (resolved.outcome, resolved.run_id) == ("resolved", opened.run_id)
    clock.advance(60)
    again = send(service, model_not_loaded(clock.now - 30))  # the fault again: a new episode
    assert (again.outcome, again.run_id, again.detail) == ("update", opened.run_id, "1 new firing alert(s)")
    assert len(backend.runs) == 1
    held = incident_alerts(service.journal, [opened.run_id or ""])[opened.run_id or ""]
    assert len(held.groups) == 2, "joined once"
    assert [(a.labels["alertname"], a.episodes) for a in held.alerts] == [
        ("GoldenRegression", 1),
        ("ModelNotLoaded", 2),
    ]


def test_in_either_order_the_later_group_joins_and_never_lowers_the_grade(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    fault = send(service, model_not_loaded(clock.now - 40))
    assert (fault.outcome, fault.grade) == ("created", "L4")
    clock.advance(200)
    regression = send(service, golden_regression(clock.now - 5))
    assert (regression.outcome, regression.run_id, regression.grade) == ("joined", fault.run_id, "L4")
    assert "grade raised" not in regression.detail and len(backend.runs) == 1


def test_past_the_window_a_new_group_opens_its_own_incident(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    first = send(service, golden_regression(clock.now - 5))
    clock.advance(1801)  # no delivery to it for longer than window_s
    second = send(service, model_not_loaded(clock.now - 40))
    assert second.outcome == "created" and second.run_id != first.run_id
    assert len(backend.runs) == 2
    assert service.journal.counts()["incidents"] == {"open": 2}


def test_concurrent_deliveries_of_both_groups_make_one_run(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    payloads = [golden_regression(clock.now - 5), model_not_loaded(clock.now - 40)]

    def post(i: int) -> Outcome:
        return send(service, payloads[i % 2])

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = [o.outcome for o in pool.map(post, range(40))]
    assert len(backend.runs) == 1
    assert outcomes.count("created") == 1 and outcomes.count("joined") == 1
    assert set(outcomes) <= {"created", "joined", "duplicate", "update", "pending"}


def test_a_join_is_written_in_one_transaction(
    service: IntakeService, backend: MemoryBackend, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = send(service, golden_regression(clock.now - 5))
    run_id = opened.run_id or ""

    def fail(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Tx, "cover", fail)  # the last write of the delivery's transaction
    with pytest.raises(JournalError, match="disk I/O error"):
        send(service, model_not_loaded(clock.now - 40))
    monkeypatch.undo()
    assert [d.outcome for d in service.journal.deliveries()] == ["created"], "no delivery row"
    incident = service.journal.incident(run_id)
    assert incident is not None and (incident.grade, incident.updates) == ("L2", 0), "no update"
    held = incident_alerts(service.journal, [run_id])[run_id]
    assert len(held.groups) == 1 and len(held.alerts) == 1, "no join, no covered alert"
    # Alertmanager retries the refused delivery: now it joins.
    assert send(service, model_not_loaded(clock.now - 40)).outcome == "joined"


def test_status_shows_every_joined_group_and_alert(
    service: IntakeService,
    settings: IntakeSettings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRIAGE24_INTAKE_JOURNAL_DIR", str(settings.journal_dir))
    monkeypatch.setattr(cli, "console", Console(highlight=False, soft_wrap=True, width=400))
    opened = send(service, golden_regression(clock.now - 5))
    clock.advance(60)
    send(service, model_not_loaded(clock.now - 40))
    parser = argparse.ArgumentParser(prog="triage24")
    cli.register(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> str:
        args = parser.parse_args(["intake", *argv])
        assert args.func(args) == 0
        return capsys.readouterr().out

    (entry,) = json.loads(run("status", "--json"))["open"]
    assert entry["run_id"] == opened.run_id and entry["correlation_rule"] == "same_target_version"
    assert [g["opened"] for g in entry["groups"]] == [True, False]
    assert [a["labels"]["alertname"] for a in entry["alerts"]] == ["GoldenRegression", "ModelNotLoaded"]
    text = run("status")
    assert "1 + 1 joined" in text and "2 firing of 2" in text
    assert f"alerts of {opened.run_id}" in text
    assert "joined (same_target_version: target=testbed, version=canary)" in text
    assert "7e1a0c33d2b4f5a6" in text and "ModelNotLoaded" in text
    listed = json.loads(run("list", "--json", "--outcome", "joined"))
    assert [d["run_id"] for d in listed] == [opened.run_id]


V1_INCIDENTS = """
CREATE TABLE incidents (
    run_id TEXT PRIMARY KEY, dag_id TEXT NOT NULL, group_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'open', 'closed')), run_state TEXT,
    created_at REAL NOT NULL, opened_at REAL, closed_at REAL, grade TEXT NOT NULL, rule TEXT NOT NULL,
    escalated INTEGER NOT NULL, escalation_rule TEXT NOT NULL, escalation_reason TEXT NOT NULL,
    escalated_at REAL, conf TEXT NOT NULL, group_labels TEXT NOT NULL DEFAULT '{}',
    updates INTEGER NOT NULL DEFAULT 0, resolved_at REAL, last_delivery_at REAL NOT NULL,
    note_dirty INTEGER NOT NULL DEFAULT 0, note_written_at REAL, state_checked_at REAL,
    last_running_at REAL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO incidents (run_id, dag_id, group_key, state, created_at, grade, rule, escalated,
    escalation_rule, escalation_reason, conf, last_delivery_at)
    VALUES ('r-old', 'incident_response', 'g', 'open', 1.0, 'L2', 'x', 0, 'L2.never', '-', '{}', 1.0);
"""


def test_a_version_1_journal_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_INCIDENTS)
    journal = Journal(path)
    old = journal.incident("r-old")
    assert old is not None and (old.correlation_key, old.correlation_rule, old.state) == (None, "", "open")
    assert journal.open_incident("g") == old
    journal.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"incidents_correlation", "incident_groups_run", "reevaluations_incident"} <= indexes
    Journal(path).close()  # a second open (another api-server worker) changes nothing


def test_check_names_the_key_and_the_open_incident_it_would_join(
    service: IntakeService,
    settings: IntakeSettings,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRIAGE24_INTAKE_JOURNAL_DIR", str(settings.journal_dir))
    monkeypatch.setattr(cli, "console", Console(highlight=False, soft_wrap=True, width=400))
    clock.now = time.time() - 100
    opened = send(service, golden_regression(clock.now - 5))
    path = tmp_path / "model-not-loaded.json"
    path.write_text(json.dumps(model_not_loaded(clock.now)))
    parser = argparse.ArgumentParser(prog="triage24")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["intake", "check", str(path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert (
        "correlation: rule same_target_version, key target=testbed, version=canary: joins another group's "
        "open incident with this key delivered to within 1800 s instead of opening one"
    ) in out
    said = re.search(
        r"open incident (\S+) has this key, last delivery (\d+) s ago: another group joins it now", out
    )
    assert said is not None and said[1] == opened.run_id and 100 <= int(said[2]) <= 110


def test_a_joined_incident_closes_when_every_groups_alerts_are_quiet_and_is_pruned_whole(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    t0 = clock.now - 5
    opened = send(service, golden_regression(t0))
    run_id = opened.run_id or ""
    clock.advance(60)
    t1 = clock.now - 40
    send(service, model_not_loaded(t1))
    backend.runs[run_id].state = "success"
    resolved = golden_regression(t0)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    assert send(service, resolved).outcome == "resolved"
    clock.advance(service.grader.quiet_s + 1)
    assert service.maintain()[0] == [], "the joined group's ModelNotLoaded still fires"
    assert send(service, model_not_loaded(t1, status="resolved", ends=clock.now)).run_id == run_id
    clock.advance(service.grader.quiet_s + 1)
    assert service.maintain()[0] == [run_id]
    clock.advance(31 * 86_400)
    pruned = service.reconcile().pruned
    assert (pruned["incidents"], pruned["incident_groups"]) == (1, 1)


def test_closing_the_open_incidents_lets_the_next_alert_open_its_own(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    # The scenario runner's fresh start between scenarios: an earlier incident must not absorb the next.
    first = send(service, golden_regression(clock.now - 5))
    with service.journal.transaction() as tx:
        assert tx.close_open_incidents(clock.now) == [first.run_id]
        assert tx.close_open_incidents(clock.now) == []
    closed = service.journal.incident(str(first.run_id))
    assert closed is not None and closed.state == "closed"
    clock.advance(60)
    fault = send(service, model_not_loaded(clock.now - 40))
    assert fault.outcome == "created" and fault.run_id != first.run_id
    assert len(backend.runs) == 2
