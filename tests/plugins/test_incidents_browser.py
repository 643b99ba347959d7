"""The Incidents view in headless Chromium (Debian's, driven by Playwright), without the live stack: the
view's own app (``create_ui_app``) served by uvicorn in a thread over an artifact root written by the
pipeline's own code and a real intake journal, as a person reads it at 3 a.m.

One incident opened by the regression watch's GoldenRegression alert and joined by Prometheus'
ModelNotLoaded (another alert group), rolled back on a critical canary finding and verified recovered;
one held for a human, whose alert is newer but whose run is over. The list shows open incidents first,
each by its title, lead finding, action and both times from the alert; the incident page its title, the
times, the deciding reason with the other rules folded (a <details> element: JavaScript is off in this
browser), and every alert of both groups. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from diagnostics.incident.model import incident_from_conf
from diagnostics.incident.store import write_json
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.journal import Journal
from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService
from diagnostics.views.web.access import AccessDenied, Caller
from tests.conftest import REPO, free_port
from tests.diagnostics.intake.conftest import Clock, MemoryBackend, body, golden_regression, model_not_loaded
from tests.diagnostics.views.test_incidents import (
    APPLIED_AT,
    PHASE1_DONE,
    PHASE2_DONE,
    RUNBOOKS,
    T0,
    VERIFIED_AT,
    tasks,
    write_decision,
    write_findings,
    write_recovery,
    write_rollback,
)

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token"  # the test's authenticator accepts this one only
HELD = "incident__testbed-canary__held0001"


@dataclass
class Served:
    url: str
    root: Path
    joined: str  # the run id the intake created for the joined incident
    alert_at: datetime


def _shifted(records: list[dict[str, Any]], by: timedelta) -> list[dict[str, Any]]:
    """The builders' task records (minutes after T0) moved to another alert time."""
    keys = ("start_date", "end_date")
    return [{**r, **{k: r[k] + by for k in keys if r[k] is not None}} for r in records]


def _journal(home: Path) -> tuple[str, dict[str, Any]]:
    """A real intake journal: GoldenRegression opens the incident, ModelNotLoaded's group joins it."""
    path = home / "intake" / "journal.sqlite3"
    backend, clock = MemoryBackend(), Clock()
    grader = Grader(load_grading(REPO / "runbooks" / "grading.yaml"))
    journal = Journal(path)
    try:
        service = IntakeService(
            journal, backend, grader, IntakeSettings(journal_dir=path.parent), clock=clock
        )
        for payload in (golden_regression(clock.now - 5), model_not_loaded(clock.now - 40)):
            service.handle(validate(payload), body(payload))
            clock.advance(60)
    finally:
        journal.close()
    (run_id,) = backend.runs
    return run_id, backend.runs[run_id].conf


def _artifacts(root: Path, joined: str, conf: dict[str, Any]) -> tuple[datetime, list[dict[str, Any]]]:
    """The joined incident's evidence and runs; the held one's, an hour later."""
    incident = incident_from_conf(joined, conf, now=datetime(2027, 1, 15, 8, 1, tzinfo=UTC))
    t0 = incident.alert_started_at
    write_json(root / joined / "incident.json", incident.model_dump(mode="json"))
    write_findings(root, joined)
    write_decision(root, joined, "rollback")
    # when the builders' tasks (shifted to this alert) end: response.rollback, response.verify_recovery
    write_rollback(root, joined, t0 + (APPLIED_AT - T0))
    write_recovery(root, joined, verified_at=t0 + (VERIFIED_AT - T0))
    held_at = t0 + timedelta(hours=1)
    held_conf = {"target": "testbed", "version": "canary", "alert_started_at": held_at.isoformat()}
    held = incident_from_conf(HELD, held_conf, now=held_at + timedelta(minutes=1))
    write_json(root / HELD / "incident.json", held.model_dump(mode="json"))
    write_decision(root, HELD, "insufficient")
    write_json(root / HELD / "response" / "hold.json",
               {"check": "hold", "status": "degraded", "summary": "canary held as it is (admin); escalated",
                "details": {"decided_by": "admin", "escalate": True}})  # fmt: skip
    runs = [
        {"run_id": HELD, "state": "success", "conf": {"target": "testbed"},
         "start_date": held_at + timedelta(minutes=1), "end_date": held_at + timedelta(minutes=40),
         "tasks": _shifted(tasks(**PHASE1_DONE, **PHASE2_DONE, decision__decide="success",
                                 decision__human_gate_L3="success", response__hold="success"), held_at - T0)},
        {"run_id": joined, "state": "running", "conf": conf, "start_date": t0 + timedelta(seconds=20),
         "end_date": None,
         "tasks": _shifted(tasks(**PHASE1_DONE, **PHASE2_DONE, decision__decide="success",
                                 decision__go_rollback="success", response__rollback="success",
                                 response__verify_recovery="success"), t0 - T0)},
    ]  # fmt: skip
    return t0, runs


class Source:
    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.records = runs

    def runs(self, limit: int) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "tasks"} for r in self.records[:limit]]

    def run(self, run_id: str) -> dict[str, Any] | None:
        return next((r for r in self.runs(1000) if r["run_id"] == run_id), None)

    def task_instances(self, run_ids: Any) -> dict[str, list[dict[str, Any]]]:
        return {r["run_id"]: r["tasks"] for r in self.records if r["run_id"] in run_ids}


async def _authenticate(token: str) -> Caller:
    if token != TOKEN:
        raise AccessDenied(401, "not the test's token")
    return Caller(name="oncall")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import uvicorn
    from triage24_ui import UiConfig, create_ui_app

    home = tmp_path_factory.mktemp("browser-home")
    root = home / "artifacts"
    joined, conf = _journal(home)
    t0, runs = _artifacts(root, joined, conf)
    config = UiConfig(
        artifact_root=lambda: root,
        runbooks_dir=lambda: RUNBOOKS,
        airflow_base_path=lambda: "",
        login_url=lambda _: None,
        now=lambda: t0 + timedelta(hours=2),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIAGE24_INTAKE_JOURNAL_DIR", str(home / "intake"))  # the view reads the journal there
        app = create_ui_app(Source(runs), _authenticate, config)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start within 30 s"
        try:
            yield Served(f"http://127.0.0.1:{port}", root, joined, t0)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture
def page(served: Served) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `scripts/setup.sh --dev` installs Debian's chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # No JavaScript: the folded reasons must open with HTML alone.
            context = browser.new_context(viewport={"width": 1500, "height": 1000}, java_script_enabled=False)
            context.add_cookies([{"name": "_token", "value": TOKEN, "url": served.url}])
            tab = context.new_page()
            tab.set_default_timeout(20_000)
            yield tab
        finally:
            browser.close()


def test_the_list_shows_open_incidents_first_by_title_with_lead_action_and_times(
    served: Served, page: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    resp = page.goto(f"{served.url}/incidents")
    assert resp is not None and resp.status == 200
    rows = page.locator("#incidents tr[data-run-id]")
    expect(rows).to_have_count(2)
    # the joined incident's alert is an hour older, but it is open: it comes first
    assert [rows.nth(i).get_attribute("data-run-id") for i in range(2)] == [served.joined, HELD]
    expect(page.locator("#incidents tbody.open tr.part")).to_have_text("Open (1)")
    expect(page.locator("#incidents tbody.closed tr.part")).to_have_text("Over (1)")
    first = rows.nth(0)
    expect(first.locator("a.title")).to_have_text("testbed canary · model_not_loaded on embedding")
    expect(first.locator("td.lead")).to_have_text("critical model_not_loaded on embedding (canary)")
    expect(first.locator("td.action")).to_have_text("rolled back")
    expect(first.locator("td.ttm")).to_have_text("27 min 30 s")
    expect(first.locator("td.ttr")).to_have_text("28 min 45 s")
    expect(first.locator("td.alerts")).to_contain_text("2 firing of 2 +1 joined")
    held = rows.nth(1)
    expect(held.locator("a.title")).to_have_text(
        "testbed canary · manual investigation"
    )  # no finding, no alert
    expect(held.locator("td.action")).to_have_text("held, escalated")
    expect(held.locator("td.ttm")).to_have_text("not mitigated")
    expect(held.locator("td.ttr")).to_have_text("not verified")
    page.screenshot(path=str(artifacts_dir / "incidents_browser_list.png"), full_page=True)


def test_the_incident_page_shows_title_times_folded_reasons_and_every_alert(
    served: Served, page: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{served.url}/incidents")
    page.locator(f"#incidents tr[data-run-id='{served.joined}'] a.title").click()
    expect(page.locator("h1#title")).to_have_text("testbed canary · model_not_loaded on embedding")
    assert page.title() == "testbed canary · model_not_loaded on embedding · Triage24"
    expect(page.locator("#time-to-mitigate")).to_have_text(
        "27 min 30 s — rolled back at 2027-01-15 08:27:25Z"
    )
    expect(page.locator("#time-to-recover")).to_have_text(
        "28 min 45 s — recovered, verified at 2027-01-15 08:28:40Z"
    )
    expect(page.locator("#action-taken")).to_have_text("rolled back")

    deciding = page.locator("#deciding-reasons li")
    expect(deciding).to_have_count(1)
    expect(deciding).to_contain_text("critical canary finding: critical model_not_loaded on embedding")
    folded = page.locator("details#other-reasons")
    expect(folded.locator("summary")).to_have_text("6 more reason(s) from 6 rule(s) that did not decide")
    hidden = folded.locator("li[data-rule='continue']")
    expect(hidden).to_be_hidden()
    page.screenshot(path=str(artifacts_dir / "incidents_browser_incident.png"), full_page=True)

    folded.locator("summary").click()  # opens with HTML alone: JavaScript is off
    expect(hidden).to_be_visible()
    expect(hidden).to_contain_text("applied, but critical_canary_finding comes first")
    expect(folded.locator("li[data-rule='canary_gate_breach']")).to_contain_text("did not apply")

    alerts = page.locator("#alert-list tbody tr")
    expect(alerts).to_have_count(2)
    expect(alerts.nth(0)).to_contain_text("GoldenRegression")
    expect(alerts.nth(0)).to_contain_text("opened")
    expect(alerts.nth(1)).to_contain_text("ModelNotLoaded")
    expect(alerts.nth(1)).to_contain_text("joined")
    expect(page.locator("#alert-groups li")).to_have_count(2)
    page.screenshot(path=str(artifacts_dir / "incidents_browser_reasons_open.png"), full_page=True)
