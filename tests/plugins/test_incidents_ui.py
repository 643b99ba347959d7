"""The Incidents view inside Airflow's api-server, in-process: Airflow's own app (create_app) loads the
plugin and mounts the view; the incidents are real runs of the parsed incident_response DAG in the
session's metadata DB, with task states set as the scheduler would, and artifacts written by the
pipeline's own code; the tokens are Airflow's JWTs, real or forged."""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.conftest import REPO
from tests.diagnostics.views.test_incidents import (
    APPLIED_AT,
    PHASE1_DONE,
    PHASE2_DONE,
    T0,
    seal,
    tasks,
    write_decision,
    write_findings,
    write_incident,
    write_recovery,
    write_report,
    write_rollback,
)

# The unit-test Airflow config's JWT secret is shorter than PyJWT recommends; the view's own checks
# do not depend on its length.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

DAG_ID = "incident_response"
BUNDLE = "triage24-ui-tests"
UI = "/triage24/ui"
# Fixed: test ids are built from it, and every pytest worker must collect the same ids (each session
# has its own Airflow DB and artifact root, so nothing collides).
SUFFIX = "5e1f7c2a"
WAITING = f"incident__testbed-canary__ui{SUFFIX}"
ROLLED = f"incident__testbed-canary__rb{SUFFIX}"
ODD = f"manual__odd{SUFFIX}"
XSS = "<script>alert('x')</script>"


@dataclass
class Ui:
    client: TestClient
    token: str
    root: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(UI + path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def with_cookie(self, token: str, path: str, **kw: Any) -> Any:
        """As the Airflow UI's frame asks: the ``_token`` cookie, no Authorization header."""
        self.client.cookies.set("_token", token)
        try:
            return self.client.get(UI + path, **kw)
        finally:
            self.client.cookies.clear()


def _register_incident_dag() -> None:
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.get(DagBundleModel, BUNDLE) is None:
            session.add(DagBundleModel(name=BUNDLE))
    bag = BundleDagBag(
        dag_folder=str(REPO / "dags" / "incident_response.py"), bundle_path=REPO / "dags", bundle_name=BUNDLE
    )
    assert bag.import_errors == {}, bag.import_errors
    sync_bag_to_db(bag, BUNDLE, None)


def _create_run(run_id: str, conf: dict[str, Any], run_state: str, task_states: list[dict[str, Any]]) -> None:
    """A real run (trigger_dag creates it and its task instances), then the states the scheduler and
    workers would have left."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType
    from sqlalchemy import select

    trigger_dag(DAG_ID, triggered_by=DagRunTriggeredByType.REST_API, run_id=run_id, conf=conf)
    wanted = {t["task_id"]: t for t in task_states}
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == DAG_ID, DagRun.run_id == run_id))
        assert run is not None
        run.state = run_state
        run.start_date = T0 + timedelta(minutes=1)
        run.end_date = T0 + timedelta(minutes=50) if run_state == "success" else None
        tis = session.scalars(select(TaskInstance).where(TaskInstance.run_id == run_id)).all()
        assert {ti.task_id for ti in tis} >= set(wanted) - {"decision.human_gate_ungraded"}
        for ti in tis:
            given = wanted.get(ti.task_id)
            if given is not None:
                ti.state, ti.start_date, ti.end_date = given["state"], given["start_date"], given["end_date"]


@pytest.fixture(scope="module")
def ui(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    root = tmp_path_factory.mktemp("ui-artifacts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIAGE24_ARTIFACT_ROOT", str(root))
        _register_incident_dag()
        # Waiting for a human (L3): full evidence, a report and a sealed audit bundle.
        write_incident(root, WAITING)
        write_findings(root, WAITING)
        write_decision(root, WAITING, "insufficient")
        write_report(root, WAITING)
        bundle = seal(root, WAITING)
        (bundle / "evidence" / "leak.json").symlink_to(root / WAITING / "incident.json")
        waiting = tasks(**PHASE1_DONE, **PHASE2_DONE, decision__decide="success",
                        decision__human_gate_L3="awaiting_input")  # fmt: skip
        _create_run(WAITING, {"target": "testbed", "grade": "L3"}, "running", waiting)
        # Rolled back and recovered.
        write_incident(root, ROLLED)
        write_decision(root, ROLLED, "rollback")
        write_rollback(root, ROLLED, APPLIED_AT)
        write_recovery(root, ROLLED)
        rolled = tasks(**PHASE1_DONE, **PHASE2_DONE, decision__decide="success",
                       decision__go_rollback="success", response__rollback="success",
                       response__verify_recovery="success")  # fmt: skip
        _create_run(ROLLED, {"target": "testbed", "grade": "L4"}, "success", rolled)
        # Queued, with a hostile-looking target in its conf and no artifacts yet.
        _create_run(ODD, {"target": XSS}, "queued", tasks())

        from airflow.api_fastapi.app import create_app, get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from triage24_plugin import Triage24Plugin

        app = create_app()
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="oncall", role="viewer"))
        with TestClient(app) as client:
            yield Ui(client, token, root)
        service = Triage24Plugin.fastapi_apps[0]["app"].state.intake._service
        if service is not None:
            service.stop()


# --- Airflow loads the view -----------------------------------------------------------------------


def test_airflow_lists_the_view_in_its_ui_and_mounts_it(ui: Ui) -> None:
    resp = ui.client.get("/api/v2/plugins", headers=ui.auth)
    assert resp.status_code == 200, resp.text
    (plugin,) = [p for p in resp.json()["plugins"] if p["name"] == "triage24"]
    views = {v["name"]: v for v in plugin["external_views"]}
    nav = views["Incidents"]
    assert (nav["href"], nav["destination"], nav["url_route"], nav["nav_top_level"]) == (
        "/triage24/ui/incidents",
        "nav",
        "incidents",
        True,
    )
    assert views["Incident"]["href"] == "/triage24/ui/incidents/{RUN_ID}"
    assert views["Incident"]["destination"] == "dag_run" and views["Incident"]["url_route"] == "incident"
    assert {a["url_prefix"] for a in plugin["fastapi_apps"]} == {"/triage24/intake", "/triage24/ui"}


# --- access ---------------------------------------------------------------------------------------

ROUTES = [
    "/",
    "/incidents",
    f"/incidents/{WAITING}",
    f"/incidents/{WAITING}/report",
    "/runbooks",
    "/runbooks/model_not_loaded.md",
    "/api/incidents",
    f"/api/incidents/{WAITING}",
]


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _forged(ui: Ui) -> dict[str, str]:
    from airflow.configuration import conf

    claims = _claims(ui.token)
    secret = conf.get("api_auth", "jwt_secret")
    head, body, sig = ui.token.split(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    return {
        "another key": jwt.encode(claims, "not-the-airflow-secret-" * 4, algorithm="HS512"),
        "alg none": jwt.encode(claims, "", algorithm="none"),
        "bad signature": f"{head}.{body}.{flipped}",
        "expired": jwt.encode(
            {
                **claims,
                "exp": int(time.time()) - 3600,
                "iat": int(time.time()) - 7200,
                "nbf": int(time.time()) - 7200,
            },
            secret,
            algorithm="HS512",
        ),
        "wrong audience": jwt.encode({**claims, "aud": "someone-else"}, secret, algorithm="HS512"),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_answers_401_without_an_airflow_token(ui: Ui, path: str) -> None:
    resp = ui.client.get(UI + path, follow_redirects=False)
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"].startswith("Bearer")
    if path.startswith("/api/"):
        assert resp.json()["error"] == "unauthorized"
    else:
        assert resp.headers["content-type"].startswith("text/html")
        # the page links to Airflow's sign-in, coming back here afterwards
        assert re.search(r'href="/auth/login\?next=http%3A%2F%2Ftestserver%2Ftriage24%2Fui', resp.text), (
            resp.text
        )
        assert WAITING not in resp.text.split("next=")[0]
    assert "metrics_sla insufficient evidence" not in resp.text and "<table" not in resp.text  # no data


def test_forged_expired_or_foreign_tokens_answer_401(ui: Ui) -> None:
    for why, token in _forged(ui).items():
        for path in ("/api/incidents", "/incidents", f"/api/incidents/{WAITING}"):
            bearer = ui.client.get(UI + path, headers={"Authorization": f"Bearer {token}"})
            assert bearer.status_code == 401, (why, path, bearer.text)
            cookie = ui.with_cookie(token, path)
            assert cookie.status_code == 401, (why, path, cookie.text)
        if why == "expired":
            assert "expired" in bearer.text
    basic = ui.client.get(UI + "/api/incidents", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status_code == 401 and "Bearer" in basic.json()["detail"]
    # a real token in the wrong scheme, or a forged bearer beside a real cookie, gets nowhere either
    forged = _forged(ui)["another key"]
    mixed = ui.with_cookie(ui.token, "/api/incidents", headers={"Authorization": f"Bearer {forged}"})
    assert mixed.status_code == 401


def test_a_real_airflow_token_opens_every_route_as_bearer_or_as_the_ui_cookie(ui: Ui) -> None:
    for path in ROUTES:
        resp = ui.get(path, follow_redirects=False)
        assert resp.status_code in (200, 307), (path, resp.status_code, resp.text[:300])
    via_cookie = ui.with_cookie(ui.token, "/api/incidents")
    assert via_cookie.status_code == 200 and via_cookie.json()["total"] >= 3
    assert ui.get("/", follow_redirects=False).headers["location"] == "/triage24/ui/incidents"


# --- the list -------------------------------------------------------------------------------------


def test_the_list_shows_the_runs_as_incidents(ui: Ui) -> None:
    data = ui.get("/api/incidents").json()
    rows = {r["run_id"]: r for r in data["rows"]}
    assert {WAITING, ROLLED, ODD} <= set(rows)
    w = rows[WAITING]
    assert (w["status"], w["phase"], w["grade"], w["target"]) == (
        "awaiting_human",
        "decision",
        "L3",
        "testbed",
    )
    assert (
        w["pending_gate"] == "decision.human_gate_L3" and w["decision"]["outcome"] == "insufficient_evidence"
    )
    r = rows[ROLLED]
    assert (r["status"], r["decision"]["outcome"], r["action_taken"]) == (
        "finished",
        "rollback",
        "rolled back",
    )
    # from the alert: decided at 16 min, the canary out at 27:30, the recovery verified at 28:45
    assert (r["time_to_decision_s"], r["time_to_mitigate_s"], r["time_to_recover_s"]) == (960, 1650, 1725)
    assert (w["title"], r["title"]) == (
        "testbed · model_not_loaded on embedding", "testbed · manual investigation",
    )  # fmt: skip
    assert (w["lead"]["problem"], w["open"], r["open"]) == ("model_not_loaded", True, False)
    assert (w["time_to_mitigate_s"], w["mitigation"], w["recovery"]) == (
        None,
        "not mitigated",
        "not verified",
    )
    assert r["overdue"] is False and w["overdue"] is True  # the fixture's alert was in March 2026
    assert (rows[ODD]["status"], rows[ODD]["target"]) == ("queued", XSS)
    assert str(ui.root) not in json.dumps(data)

    html = ui.get("/incidents")
    assert html.status_code == 200
    assert f'href="/triage24/ui/incidents/{WAITING}"' in html.text
    assert "awaiting human" in html.text and "OVERDUE: golden_window" in html.text
    assert XSS not in html.text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html.text
    csp = html.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce and f'<script nonce="{nonce.group(1)}">' in html.text
    assert html.text.count("<script") == 1 and "frame-ancestors 'self'" in csp
    assert html.headers["cache-control"] == "no-store"


def test_the_list_filters_by_target_grade_and_status(ui: Ui) -> None:
    def ids(**params: str) -> set[str]:
        resp = ui.get("/api/incidents", params=params)
        assert resp.status_code == 200, resp.text
        return {r["run_id"] for r in resp.json()["rows"]} & {WAITING, ROLLED, ODD}

    assert ids(status="awaiting_human") == {WAITING}
    assert ids(status="finished", grade="L4") == {ROLLED}
    assert ids(grade="ungraded") == {ODD}
    assert ids(target="testbed") == {WAITING, ROLLED}
    assert ids(target=XSS) == {ODD}
    page = ui.get("/incidents", params={"status": "awaiting_human"}).text
    assert WAITING in page and ROLLED not in page
    assert '<option value="awaiting_human" selected>' in page
    bad = ui.get("/api/incidents", params={"status": "resolved"})
    assert bad.status_code == 400 and "awaiting_human" in bad.json()["detail"]
    assert ui.get("/incidents", params={"limit": "0"}).status_code == 400
    assert ui.get("/api/incidents", params={"limit": "1"}).json()["total"] == 1


# --- one incident ---------------------------------------------------------------------------------


def test_the_incident_page_has_the_decision_the_gate_the_timeline_and_the_findings(ui: Ui) -> None:
    resp = ui.get(f"/incidents/{WAITING}")
    assert resp.status_code == 200
    page = resp.text
    assert "insufficient evidence</strong>" in page and "metrics_sla insufficient evidence" in page
    assert "The decision needs you" in page and "<strong>hold</strong>" in page
    gate = f"/dags/incident_response/runs/{WAITING}/tasks/decision.human_gate_L3/required_actions"
    assert f'<a data-airflow href="{gate}">' in page
    assert f'<a data-airflow href="/dags/incident_response/runs/{WAITING}">DAG run in Airflow</a>' in page
    assert f'href="/triage24/ui/incidents/{WAITING}/report"' in page
    assert f'href="/triage24/ui/incidents/{WAITING}/bundles/' in page
    assert 'href="/triage24/ui/runbooks/model_not_loaded.md"' in page
    assert "no_such_runbook.md (not found)" in page
    assert page.index("model_not_loaded") < page.index("http_5xx_burst"), "ranked by severity"
    assert 'data-phase="golden_window"' in page and "OVERDUE" in page
    detail = ui.get(f"/api/incidents/{WAITING}").json()
    assert detail["human_gate"]["task_id"] == "decision.human_gate_L3"
    assert [f["problem"] for f in detail["findings"]][:2] == ["model_not_loaded", "embedding_dim_mismatch"]

    rolled = ui.get(f"/incidents/{ROLLED}").text
    assert "rollback</strong>" in rolled and "recovery_verification" in rolled
    assert "recovered 10 s into the verification" in rolled, "the verification's own wait, labelled as such"
    assert (
        '<dd id="time-to-mitigate">27 min 30 s' in rolled and '<dd id="time-to-recover">28 min 45 s' in rolled
    )
    assert "The decision needs you" not in rolled and "no report yet" in rolled

    odd = ui.get(f"/incidents/{ODD}").text
    assert "Not decided yet" in odd and XSS not in odd

    missing = ui.get("/incidents/no_such_run")
    assert missing.status_code == 404 and "no run &#39;no_such_run&#39;" in missing.text
    assert ui.get("/api/incidents/no_such_run").json()["error"] == "not_found"


# --- report, bundle, runbooks ---------------------------------------------------------------------


def test_the_report_is_served_sandboxed_and_paths_cannot_leave_the_artifact_root(ui: Ui) -> None:
    report = ui.get(f"/incidents/{WAITING}/report")
    assert report.status_code == 200 and "<h1>Incident report</h1>" in report.text
    assert report.headers["content-security-policy"].startswith("sandbox;")
    assert report.headers["content-disposition"].startswith("inline")
    download = ui.get(f"/incidents/{WAITING}/report", params={"download": "1"})
    assert download.headers["content-disposition"].startswith("attachment")
    assert ui.get(f"/incidents/{ROLLED}/report").status_code == 404
    for path in ("/incidents/%2e%2e/report", "/incidents/..%2F..%2Fetc/report", "/incidents/.hidden/report"):
        assert ui.get(path).status_code == 404, path


def test_the_audit_bundle_is_listed_downloadable_and_confined(ui: Ui) -> None:
    (stamp_dir,) = (ui.root / "audit" / "bundles" / WAITING).iterdir()
    stamp = stamp_dir.name
    base = f"/incidents/{WAITING}/bundles/{stamp}"
    listing = ui.get(base)
    assert listing.status_code == 200
    assert "decision_snapshot.json" in listing.text and "triage24 audit verify audit/bundles/" in listing.text
    snapshot = ui.get(f"{base}/files/decision_snapshot.json")
    assert snapshot.status_code == 200 and json.loads(snapshot.text)["incident_id"] == WAITING
    assert snapshot.headers["content-security-policy"].startswith("sandbox;")
    evidence = ui.get(f"{base}/files/evidence/decision/decision.json")
    assert evidence.status_code == 200 and json.loads(evidence.text)["outcome"] == "insufficient_evidence"
    for bad in ("evidence/leak.json", "%2e%2e/%2e%2e/%2e%2e/" + WAITING + "/incident.json", ".", "evidence"):
        assert ui.get(f"{base}/files/{bad}").status_code == 404, bad
    assert ui.get(f"/incidents/{WAITING}/bundles/%2e%2e").status_code == 404
    assert ui.get(f"/incidents/{ROLLED}/bundles/{stamp}").status_code == 404

    archive = ui.get(f"{base}.tar.gz")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
        assert all(m.isfile() for m in tar.getmembers())
    prefix = f"{WAITING}-{stamp}/"
    assert {prefix + n for n in ("manifest.json", "seal.json", "decision_snapshot.json")} <= set(names)
    assert prefix + "evidence/leak.json" not in names, "links are never followed into the archive"


def test_runbooks_are_rendered_and_linked(ui: Ui) -> None:
    index = ui.get("/runbooks")
    assert 'href="/triage24/ui/runbooks/sop.md"' in index.text
    page = ui.get("/runbooks/model_not_loaded.md")
    assert page.status_code == 200 and '<article class="markdown" id="runbook">' in page.text
    assert "<h1>" in page.text
    for name in ("..%2Fpyproject.toml", "sop.yaml", "nope.md"):
        assert ui.get(f"/runbooks/{name}").status_code == 404, name


# --- the app's own seams --------------------------------------------------------------------------


def test_a_user_the_auth_manager_refuses_gets_403() -> None:
    from triage24_ui import UiConfig, create_ui_app

    from diagnostics.views.web.access import AccessDenied, Caller

    class NoRuns:
        def runs(self, limit: int) -> list[dict[str, Any]]:
            raise AssertionError("no data may be read for a refused user")

        def run(self, run_id: str) -> dict[str, Any] | None:
            raise AssertionError("no data may be read for a refused user")

        def task_instances(self, run_ids: Any) -> dict[str, list[dict[str, Any]]]:
            raise AssertionError("no data may be read for a refused user")

    async def refuse(token: str) -> Caller:
        raise AccessDenied(403, "guest may not read the runs of the DAG incident_response")

    app = create_ui_app(NoRuns(), refuse, UiConfig(login_url=lambda _: None))
    with TestClient(app) as client:
        data = client.get("/api/incidents", headers={"Authorization": "Bearer x"})
        client.cookies.set("_token", "x")
        page = client.get("/incidents/abc")
    assert data.status_code == 403 and data.json() == {
        "error": "forbidden",
        "detail": "guest may not read the runs of the DAG incident_response",
    }
    assert page.status_code == 403 and "Not allowed" in page.text
