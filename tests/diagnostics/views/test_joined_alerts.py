"""The Incidents view shows every alert an incident holds: the groups that opened and joined it (by the
correlation rule of grading.yaml) and their alerts, from a real intake journal; the run conf's alerts
where the journal has no record of the run."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.journal import Journal
from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService
from diagnostics.views import incidents as view
from diagnostics.views.alerts import CONF, JOURNAL, JournalAlerts
from diagnostics.views.web.access import Caller, caller_dependency
from diagnostics.views.web.incident_routes import incident_router
from diagnostics.views.web.site import Site
from tests.conftest import REPO
from tests.diagnostics.intake.conftest import (
    Clock,
    MemoryBackend,
    body,
    golden_regression,
    model_not_loaded,
)
from tests.diagnostics.views.test_incidents import RUNBOOKS, SOP, run, tasks

NOW = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)


@dataclass
class Joined:
    journal_path: Path
    run_id: str
    conf: dict[str, Any]


@pytest.fixture
def joined(tmp_path: Path) -> Iterator[Joined]:
    """A real journal: the regression run's GoldenRegression opened an incident, ModelNotLoaded joined."""
    path = tmp_path / "intake" / "journal.sqlite3"
    backend, clock = MemoryBackend(), Clock()
    grader = Grader(load_grading(REPO / "runbooks" / "grading.yaml"))
    journal = Journal(path)
    service = IntakeService(journal, backend, grader, IntakeSettings(journal_dir=path.parent), clock=clock)
    for payload in (golden_regression(clock.now - 5), model_not_loaded(clock.now - 40)):
        service.handle(validate(payload), body(payload))
        clock.advance(60)
    (run_id,) = backend.runs
    yield Joined(path, run_id, backend.runs[run_id].conf)
    journal.close()


def test_the_incident_shows_the_group_that_joined_it_and_every_alert(joined: Joined) -> None:
    held = JournalAlerts(lambda: joined.journal_path).alerts([joined.run_id, "manual__x"])
    assert list(held) == [joined.run_id], "a run the journal does not know is left out"
    detail = view.incident_detail(
        run(joined.run_id, "running", conf=joined.conf), tasks(), Path("/nonexistent"), SOP,
        now=NOW, alerts=held[joined.run_id],
    )  # fmt: skip
    alerts = detail.alerts
    assert alerts is not None and alerts.source == JOURNAL and alerts.firing == 2
    opener, second = alerts.groups
    assert (opener.joined, opener.labels) == (False, {"alertname": "GoldenRegression", "target": "testbed"})
    assert (second.joined, second.rule, second.key) == (
        True,
        "same_target_version",
        "target=testbed, version=canary",
    )
    assert second.labels == {"target": "testbed", "version": "canary"}
    assert [(a.alertname, a.status, a.severity, a.joined) for a in alerts.alerts] == [
        ("GoldenRegression", "firing", "warning", False),
        ("ModelNotLoaded", "firing", "critical", True),
    ]
    assert (detail.row.alert_count, detail.row.alerts_firing, detail.row.joined_groups) == (2, 2, 1)


def test_without_a_journal_record_the_run_conf_alerts_show(joined: Joined) -> None:
    detail = view.incident_detail(
        run(joined.run_id, "running", conf=joined.conf), tasks(), Path("/x"), SOP, now=NOW
    )
    assert detail.alerts is not None and detail.alerts.source == CONF
    assert [a.alertname for a in detail.alerts.alerts] == ["GoldenRegression"]
    assert detail.alerts.alerts[0].summary == "testbed canary image: golden regression failing (clip_pair_3)"
    assert detail.row.joined_groups == 0 and detail.row.alert_count == 1
    manual = view.incident_detail(run("manual__1", "running"), tasks(), Path("/x"), SOP, now=NOW)
    assert manual.alerts is None and manual.row.alert_count is None


def test_a_missing_journal_is_never_created_by_the_view(tmp_path: Path) -> None:
    path = tmp_path / "intake" / "journal.sqlite3"
    assert JournalAlerts(lambda: path).alerts(["incident__x"]) == {}
    assert not path.exists() and not path.parent.exists()


# --- the pages --------------------------------------------------------------------------------------


@dataclass
class Source:
    records: list[dict[str, Any]]

    def runs(self, limit: int) -> list[dict[str, Any]]:
        return self.records[:limit]

    def run(self, run_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r["run_id"] == run_id), None)

    def task_instances(self, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return {r: tasks() for r in run_ids}


@dataclass
class Config:
    root: Path
    artifact_root: Any = field(init=False)
    runbooks_dir: Any = field(default=lambda: RUNBOOKS)
    airflow_base_path: Any = field(default=lambda: "")
    login_url: Any = field(default=lambda next_url: None)
    now: Any = field(default=lambda: NOW)

    def __post_init__(self) -> None:
        self.artifact_root = lambda: self.root


def test_the_pages_and_the_api_show_the_joined_alerts(joined: Joined, tmp_path: Path) -> None:
    async def anyone(token: str) -> Caller:
        return Caller(name="oncall")

    site = Site(
        Source([run(joined.run_id, "running", conf=joined.conf)]),
        Config(tmp_path / "artifacts"),
        alerts=JournalAlerts(lambda: joined.journal_path),
    )
    app = FastAPI()
    app.include_router(incident_router(site, caller_dependency(anyone)))
    client = TestClient(app, headers={"Authorization": "Bearer t"})
    listing = client.get("/incidents").text
    assert "2 firing</span> of 2" in listing and "+1 joined" in listing
    page = client.get(f"/incidents/{joined.run_id}")
    assert page.status_code == 200
    html = page.text
    assert '<section id="alerts">' in html and "2 of 2 alert(s) firing, in 2 alert group(s)" in html
    assert "by rule <code>same_target_version</code> (target=testbed, version=canary)" in html
    assert 'data-fingerprint="7e1a0c33d2b4f5a6"' in html and "ModelNotLoaded" in html
    data = client.get(f"/api/incidents/{joined.run_id}").json()
    assert [g["joined"] for g in data["alerts"]["groups"]] == [False, True]
    assert data["row"]["joined_groups"] == 1


def test_a_run_that_ended_stays_open_while_the_journal_has_its_alerts_firing(joined: Joined) -> None:
    held = JournalAlerts(lambda: joined.journal_path).alerts([joined.run_id])
    ended = run(joined.run_id, "success", conf=joined.conf)
    listed = view.list_incidents([ended], {joined.run_id: tasks()}, Path("/x"), SOP, now=NOW, alerts=held)
    (row,) = listed.rows
    assert (row.status, row.alerts_firing, row.open) == ("finished", 2, True)
    assert row.title == "testbed canary · GoldenRegression", "before findings: the alert that opened it"
    # the run conf's alerts are those it was opened with, not news: a finished run there is over
    alone = view.list_incidents([ended], {joined.run_id: tasks()}, Path("/x"), SOP, now=NOW)
    assert (alone.rows[0].alerts_firing, alone.rows[0].open) == (1, False)


def test_journal_alerts_get_their_summary_from_the_run_conf_where_it_has_them(joined: Joined) -> None:
    held = JournalAlerts(lambda: joined.journal_path).alerts([joined.run_id])[joined.run_id]
    detail = view.incident_detail(
        run(joined.run_id, "running", conf=joined.conf), tasks(), Path("/x"), SOP, now=NOW, alerts=held
    )
    assert detail.alerts is not None
    assert [(a.alertname, a.summary) for a in detail.alerts.alerts] == [
        ("GoldenRegression", "testbed canary image: golden regression failing (clip_pair_3)"),
        ("ModelNotLoaded", None),  # joined from another group: the journal keeps no annotations
    ]
