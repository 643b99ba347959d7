"""The Incidents view in a real browser on the real local stack: Airflow 3.3's api-server loads the
plugin, the scheduler runs a real ``incident_response`` run (manual, dry run; no testbed, so the
evidence is insufficient and the decision asks a human), and headless Chromium (Debian's, driven by
Playwright) signs in through the simple auth manager's login form, opens the Incidents page in the
Airflow UI, finds the incident, opens it and reads its decision; the test then answers the human gate
over Airflow's HITL REST API and sees the response in the view. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from diagnostics.intake.airflow_api import AirflowApi
from harness.stack import Stack
from tests.conftest import stack_settings
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

DAG_ID = "incident_response"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Live:
    stack: Stack
    api: AirflowApi
    run_id: str
    gate: str

    @property
    def url(self) -> str:
        return str(self.stack.settings.airflow_url)

    @property
    def password(self) -> str:
        return self.stack.secrets["TRIAGE24_ADMIN_PASSWORD"]


def _awaiting(api: AirflowApi, run_id: str) -> str | None:
    resp = api.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    tis = resp.json().get("task_instances", []) if resp.status_code == 200 else []
    return next((t["task_id"] for t in tis if t["state"] == "awaiting_input"), None)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `scripts/setup.sh --dev` installs Debian's chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    stack = Stack(stack_settings(tmp_path_factory.mktemp("ui-browser") / "home"), with_testbed=False)
    try:
        stack.up(timeout_s=300)
        with AirflowApi(stack.settings.airflow_url, "admin", stack.secrets["TRIAGE24_ADMIN_PASSWORD"]) as api:
            api.wait_for_dag(DAG_ID, timeout_s=180)
            run_id = f"manual__ui-{uuid.uuid4().hex[:10]}"
            api.trigger(DAG_ID, run_id, {"target": "testbed", "dry_run": True, "window_minutes": 1})
            gate = wait_for(
                "the incident's human gate to ask (nothing to measure: the decision needs a human)",
                lambda: _awaiting(api, run_id),
                timeout_s=420,
                interval_s=2.0,
            )
            yield Live(stack, api, run_id, gate)
    finally:
        stack.down()


def test_the_view_answers_only_airflow_users_over_http(live: Live) -> None:
    anonymous = httpx.get(f"{live.url}/triage24/ui/api/incidents", timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    forged = httpx.get(
        f"{live.url}/triage24/ui/api/incidents", headers={"Authorization": "Bearer a.b.c"}, timeout=30
    )
    assert forged.status_code == 401
    token = live.api.token()
    data = httpx.get(
        f"{live.url}/triage24/ui/api/incidents", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert data.status_code == 200, data.text
    (row,) = [r for r in data.json()["rows"] if r["run_id"] == live.run_id]
    assert (row["status"], row["phase"], row["pending_gate"], row["target"]) == (
        "awaiting_human",
        "decision",
        live.gate,
        "testbed",
    )
    assert row["decision"]["outcome"] == "insufficient_evidence" and row["dry_run"] is True


def test_an_engineer_signs_in_finds_the_incident_and_reads_its_decision(
    live: Live, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    run_id = live.run_id
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # Without signing in, the view itself refuses (no data on the page).
            anon = browser.new_page()
            resp = anon.goto(f"{live.url}/triage24/ui/incidents")
            assert resp is not None and resp.status == 401
            expect(anon.locator("h1")).to_have_text("Sign in to Airflow")
            anon.close()

            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{live.url}/auth/login?next={quote(live.url + '/', safe='')}")
            page.locator("input[name='username']").fill("admin")
            page.locator("input[name='password']").fill(live.password)
            page.locator("button[type='submit']").click()
            page.wait_for_url(f"{live.url}/")
            # The top-level "Incidents" button of Airflow's navigation (the plugin's external view).
            page.locator("a[href='/plugin/incidents']").first.click()
            page.wait_for_url("**/plugin/incidents")

            view = page.frame_locator("iframe[title='Incidents']")
            row = view.locator(f"#incidents tr[data-run-id='{run_id}']")
            expect(row).to_contain_text("awaiting human")
            expect(row).to_contain_text("insufficient evidence")
            expect(row).to_contain_text("testbed")
            # Filter to incidents waiting for a human: ours is among them.
            view.locator("select[name='status']").select_option("awaiting_human")
            view.locator("button[type='submit']").click()
            expect(view.locator("select[name='status']")).to_have_value("awaiting_human")
            expect(row).to_be_visible()
            page.screenshot(path=str(artifacts_dir / "incidents_view_list.png"), full_page=True)

            row.locator("a").first.click()
            decision = view.locator("#decision")
            expect(decision).to_contain_text("insufficient evidence")
            expect(decision).to_contain_text("by rule insufficient_evidence")
            gate = view.locator("#human-gate")
            expect(gate).to_contain_text("The decision needs you")
            expect(gate).to_contain_text(live.gate)
            expect(view.locator("#timeline tr[data-phase='golden_window']")).to_contain_text("done")
            expect(view.locator("#status")).to_have_text("awaiting human")
            page.screenshot(path=str(artifacts_dir / "incidents_view_incident.png"), full_page=True)

            # The run's own tab shows the same incident.
            page.goto(f"{live.url}/dags/{DAG_ID}/runs/{run_id}/plugin/incident")
            tab = page.frame_locator("iframe[title='Incident']")
            expect(tab.locator("#decision")).to_contain_text("insufficient evidence")

            # "DAG run in Airflow" opens the Airflow page itself, not a UI inside the frame.
            page.goto(f"{live.url}/plugin/incidents/triage24/ui/incidents/{run_id}")
            framed = page.frame_locator("iframe[title='Incidents']")
            framed.locator("a", has_text="DAG run in Airflow").click()
            page.wait_for_url(f"**/dags/{DAG_ID}/runs/{run_id}")
            assert page.url.endswith(f"/dags/{DAG_ID}/runs/{run_id}")

            # The on-call engineer holds (over the HITL REST API); the view shows the response.
            time.sleep(3)  # answer seconds after the question, as a person does (see test_incident_e2e)
            answer = live.api.request(
                "PATCH",
                f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{live.gate}/-1/hitlDetails",
                json={"chosen_options": ["Hold and escalate"]},
            )
            assert answer.status_code == 200, answer.text
            hold = live.stack.settings.artifacts / run_id / "response" / "hold.json"
            wait_for("the hold to be recorded", hold.exists, timeout_s=180, interval_s=1.0)
            page.goto(f"{live.url}/plugin/incidents/triage24/ui/incidents/{run_id}")
            framed = page.frame_locator("iframe[title='Incidents']")
            actions = framed.locator("#actions")
            expect(actions).to_contain_text("hold")
            expect(actions).to_contain_text("answered by admin")
            expect(framed.locator("#human-gate")).to_have_count(0)
            page.screenshot(path=str(artifacts_dir / "incidents_view_after_hold.png"), full_page=True)
        finally:
            browser.close()
    detail = _detail(live)
    assert detail["human_gate"] is None and detail["row"]["time_to_decision_s"] is not None
    assert any(a["name"] == "hold" for a in detail["actions"])


def _detail(live: Live) -> dict[str, Any]:
    resp = httpx.get(
        f"{live.url}/triage24/ui/api/incidents/{live.run_id}",
        headers={"Authorization": f"Bearer {live.api.token()}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data
