"""The demo follows the incident its own fault's alert went to (issue 19): read from a real intake
journal by the alert's labels - the incident it opened, or the regression run's incident it joined -
never merely the newest incident run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.journal import Journal
from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService, Outcome
from harness.demo import FAULTS, DemoError, find_alert_incident, wait_alert_incident
from tests.conftest import REPO
from tests.diagnostics.intake.conftest import (
    Clock,
    MemoryBackend,
    alert,
    body,
    delivery,
    golden_regression,
    model_not_loaded,
)

LABELS = FAULTS["model_not_loaded"]["labels"]


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[tuple[IntakeService, MemoryBackend, Clock]]:
    backend, clock = MemoryBackend(), Clock()
    settings = IntakeSettings(journal_dir=tmp_path / "intake")
    grader = Grader(load_grading(REPO / "runbooks" / "grading.yaml"))
    service = IntakeService(Journal(settings.journal_path()), backend, grader, settings, clock=clock)
    yield service, backend, clock
    service.journal.close()


def send(service: IntakeService, payload: dict[str, Any]) -> Outcome:
    return service.handle(validate(payload), body(payload))


def test_the_fault_alert_matches_the_prometheus_rule_labels() -> None:
    rules = (REPO / "deploy" / "prometheus" / "rules" / "testbed.yml").read_text()
    assert "- alert: ModelNotLoaded" in rules and LABELS["alertname"] == "ModelNotLoaded"
    assert model_not_loaded(0)["alerts"][0]["labels"].items() >= LABELS.items()


def test_the_demo_follows_the_regression_incident_its_alert_joined(
    intake: tuple[IntakeService, MemoryBackend, Clock],
) -> None:
    service, _, clock = intake
    regression = send(service, golden_regression(clock.now - 5))  # the scheduled run at stack start
    since = clock.now
    clock.advance(45)
    assert send(service, model_not_loaded(clock.now - 40)).outcome == "joined"
    clock.advance(10)
    other = {"alertname": "LatencySLABreach", "target": "other", "version": "v9"}
    newest = send(service, delivery([alert("0b", clock.now, severity="warning", **other)], other))
    assert newest.outcome == "created", "a newer incident of another target"
    found = find_alert_incident(service.journal, LABELS, since)
    assert found is not None and found.run_id == regression.run_id != newest.run_id
    assert (found.joined, found.opened_by, found.state) == (
        True,
        "alertname=GoldenRegression, target=testbed",
        "open",
    )
    assert found.how == (
        f"alert 7e1a0c33d2b4f5a6 joined incident {regression.run_id} (opened by alertname=GoldenRegression, "
        "target=testbed)"
    )


def test_the_demo_follows_the_incident_its_alert_opened(
    intake: tuple[IntakeService, MemoryBackend, Clock],
) -> None:
    service, backend, clock = intake
    since = clock.now
    backend.down = "metadata DB starting"
    clock.advance(45)
    opened = send(service, model_not_loaded(clock.now - 40))
    assert opened.outcome == "pending"
    assert find_alert_incident(service.journal, LABELS, since) is None, "no run to follow yet"
    backend.down = None
    service.reconcile()
    found = find_alert_incident(service.journal, LABELS, since)
    assert found is not None and (found.run_id, found.joined) == (opened.run_id, False)
    assert found.how == f"alert 7e1a0c33d2b4f5a6 opened incident {opened.run_id}"
    assert find_alert_incident(service.journal, LABELS, clock.now + 1) is None, "delivered before the fault"


def test_waiting_for_the_alert_names_where_to_look(tmp_path: Path) -> None:
    now = [0.0]
    said: list[str] = []

    def sleep(s: float) -> None:
        now[0] += s

    journal = tmp_path / "intake" / "journal.sqlite3"
    with pytest.raises(DemoError) as info:
        wait_alert_incident(
            journal, LABELS, 0.0, 30, said.append, "Prometheus", clock=lambda: now[0], sleep=sleep
        )
    message = str(info.value)
    assert f"30 s after the fault in the intake journal {journal}" in message
    assert "check Prometheus, and `triage24 intake status`" in message
    assert said == ["still waiting for the alert (15 s)", "still waiting for the alert (30 s)"]
    assert not journal.exists(), "the demo never creates the intake's journal"


def test_waiting_returns_once_the_run_exists(intake: tuple[IntakeService, MemoryBackend, Clock]) -> None:
    service, _, clock = intake
    since = clock.now
    clock.advance(45)
    opened = send(service, model_not_loaded(clock.now - 40))
    found = wait_alert_incident(
        service.journal.path, LABELS, since, 30, pytest.fail, "-", clock=lambda: 0.0, sleep=pytest.fail
    )
    assert found.run_id == opened.run_id
