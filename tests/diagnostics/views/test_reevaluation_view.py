"""The Incidents view shows a re-evaluation (issue 19 §3): which delivery called for it, why, the new
run, and that the run it took over from is superseded - from a real intake journal, and from the runs'
own records (the re-evaluation's conf, the superseded run's response record) where the journal has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from diagnostics.incident import task_ids as T
from diagnostics.incident.results import CheckResult, Status
from diagnostics.incident.store import write_result
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.journal import Journal
from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService
from diagnostics.views import incidents as view
from diagnostics.views.alerts import JOURNAL, JournalAlerts
from diagnostics.views.reevaluation import RECORD
from diagnostics.views.web.access import Caller, caller_dependency
from diagnostics.views.web.incident_routes import incident_router
from diagnostics.views.web.site import Site
from tests.conftest import REPO
from tests.diagnostics.intake.conftest import Clock, MemoryBackend, body, delivery
from tests.diagnostics.intake.test_reevaluation import GROUP, WAITING, gate_5xx, latency
from tests.diagnostics.views.test_incidents import SOP, run, tasks
from tests.diagnostics.views.test_joined_alerts import NOW, Config, Source

WHY = "CanaryGate5xx raised L2 -> L3"


@dataclass
class Chain:
    journal_path: Path
    r1: str
    r2: str
    delivery_id: int
    conf1: dict[str, Any]
    conf2: dict[str, Any]


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    """A real journal: an L2 incident waited at its gate; a gate breach re-evaluated it."""
    path = tmp_path / "intake" / "journal.sqlite3"
    backend, clock = MemoryBackend(), Clock()
    grader = Grader(load_grading(REPO / "runbooks" / "grading.yaml"))
    journal = Journal(path)
    service = IntakeService(journal, backend, grader, IntakeSettings(journal_dir=path.parent), clock=clock)
    first = delivery([latency(clock.now - 100)], GROUP)
    r1 = service.handle(validate(first), body(first)).run_id or ""
    backend.runs[r1].tasks = dict(WAITING)
    clock.advance(120)
    second = delivery([latency(clock.now - 220), gate_5xx(clock.now - 30)], GROUP)
    out = service.handle(validate(second), body(second))
    r2 = out.reevaluation or ""
    yield Chain(path, r1, r2, out.delivery_id, backend.runs[r1].conf, backend.runs[r2].conf)
    journal.close()


def superseded_record(root: Path, run_id: str, by: str) -> None:
    result = CheckResult(
        check="superseded",
        status=Status.OK,
        summary=f"superseded by {by}: {WHY}; the canary is left to that run, not escalated here",
        details={"superseded_by": by, "reason": WHY, "decided_by": "human gate L2", "escalate": False},
    )
    write_result(root, run_id, "response", "superseded", result)


def test_the_new_run_says_why_and_the_old_one_says_superseded(chain: Chain, tmp_path: Path) -> None:
    held = JournalAlerts(lambda: chain.journal_path).alerts([chain.r1, chain.r2])
    assert set(held) == {chain.r1, chain.r2}, "a re-evaluation run gets its incident's record"
    root = tmp_path / "artifacts"
    new = view.incident_detail(
        run(chain.r2, "running", conf=chain.conf2), tasks(), root, SOP, now=NOW, alerts=held[chain.r2]
    )
    again = new.reevaluation
    assert again is not None and (again.reevaluates, again.delivery_id, again.reason) == (
        chain.r1, chain.delivery_id, WHY
    )  # fmt: skip
    assert again.state == "done" and again.answered_gate == T.human_gate("L2")
    assert new.row.reevaluates == chain.r1 and new.superseded is None
    assert new.alerts is not None and new.alerts.source == JOURNAL and len(new.alerts.alerts) == 2
    old = view.incident_detail(
        run(chain.r1, "running", conf=chain.conf1), tasks(), root, SOP, now=NOW, alerts=held[chain.r1]
    )
    assert old.superseded is not None and (old.superseded.by_run, old.superseded.reason) == (chain.r2, WHY)
    assert old.superseded.source == JOURNAL and old.row.superseded_by == chain.r2
    assert [(e.run_id, e.reevaluates) for e in old.reevaluations] == [(chain.r2, chain.r1)]


def test_without_the_journal_the_runs_own_records_tell_it(chain: Chain, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    superseded_record(root, chain.r1, chain.r2)
    old = view.incident_detail(run(chain.r1, "success", conf=chain.conf1), tasks(), root, SOP, now=NOW)
    assert old.superseded is not None and old.superseded.source == RECORD
    assert (old.superseded.by_run, old.superseded.reason) == (chain.r2, WHY)
    assert any(a.name == "superseded" for a in old.actions)
    new = view.incident_detail(run(chain.r2, "running", conf=chain.conf2), tasks(), root, SOP, now=NOW)
    assert new.reevaluation is not None and new.reevaluation.state is None  # the conf's, no journal here
    assert (new.reevaluation.reevaluates, new.reevaluation.reason) == (chain.r1, WHY)
    first = view.incident_detail(
        run(chain.r1, "running", conf=chain.conf1), tasks(), Path("/x"), SOP, now=NOW
    )
    assert first.reevaluation is None and first.superseded is None


def test_the_pages_show_the_re_evaluation(chain: Chain, tmp_path: Path) -> None:
    async def anyone(token: str) -> Caller:
        return Caller(name="oncall")

    root = tmp_path / "artifacts"
    superseded_record(root, chain.r1, chain.r2)
    site = Site(
        Source([run(chain.r2, "running", conf=chain.conf2), run(chain.r1, "success", conf=chain.conf1)]),
        Config(root),
        alerts=JournalAlerts(lambda: chain.journal_path),
    )
    app = FastAPI()
    app.include_router(incident_router(site, caller_dependency(anyone)))
    client = TestClient(app, headers={"Authorization": "Bearer t"})
    listing = client.get("/incidents").text
    assert ">re-evaluation</span>" in listing and ">superseded</span>" in listing
    html = client.get(f"/incidents/{chain.r1}").text
    escaped = WHY.replace(">", "&gt;")
    assert '<section class="callout" id="superseded">' in html and chain.r2 in html and escaped in html
    assert '<table id="reevaluations">' in html and f"(answered {T.human_gate('L2')})" in html
    html = client.get(f"/incidents/{chain.r2}").text
    assert '<section id="reevaluation">' in html and f"intake delivery {chain.delivery_id}" in html
    data = client.get(f"/api/incidents/{chain.r2}").json()
    assert data["row"]["reevaluates"] == chain.r1 and data["reevaluation"]["reason"] == WHY
