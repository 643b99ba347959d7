"""The view's routers as wired by create_ui_app, without Airflow: every route answers only an
authenticated caller, checks the caller once per request, and reads no data before that."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from diagnostics.views.web.access import AccessDenied, Caller
from tests.conftest import REPO


class NoData:
    def runs(self, limit: int) -> list[dict[str, Any]]:
        raise AssertionError("no data may be read before the caller is known")

    def run(self, run_id: str) -> dict[str, Any] | None:
        raise AssertionError("no data may be read before the caller is known")

    def task_instances(self, run_ids: Any) -> dict[str, list[dict[str, Any]]]:
        raise AssertionError("no data may be read before the caller is known")


def _app(authenticate: Any) -> Any:
    from triage24_ui import UiConfig, create_ui_app

    def nowhere() -> Path:
        raise AssertionError("no artifact may be read before the caller is known")

    config = UiConfig(
        artifact_root=nowhere, runbooks_dir=nowhere, airflow_base_path=lambda: "", login_url=lambda _: None
    )
    return create_ui_app(NoData(), authenticate, config)


def _paths(app: Any) -> list[str]:
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert len(routes) == 11, [r.path for r in routes]
    return [re.sub(r"\{[^}]+\}", "x", r.path) for r in routes]


def test_every_route_refuses_a_request_without_a_token() -> None:
    async def never(token: str) -> Caller:
        raise AssertionError("no token: nothing to authenticate")

    app = _app(never)
    with TestClient(app) as client:
        for path in _paths(app):
            resp = client.get(path, follow_redirects=False)
            assert resp.status_code == 401, (path, resp.text)
            assert resp.headers["www-authenticate"].startswith("Bearer"), path


@pytest.mark.parametrize("status", [401, 403])
def test_every_route_asks_the_authenticator_once_and_obeys_it(status: int) -> None:
    calls: list[str] = []

    async def refuse(token: str) -> Caller:
        calls.append(token)
        raise AccessDenied(status, "refused")

    app = _app(refuse)
    with TestClient(app) as client:
        for path in _paths(app):
            calls.clear()
            resp = client.get(path, headers={"Authorization": "Bearer t"}, follow_redirects=False)
            assert resp.status_code == status, (path, resp.text)
            assert calls == ["t"], path


def test_an_accepted_caller_is_authenticated_once_per_request() -> None:
    from triage24_ui import UiConfig, create_ui_app

    calls: list[str] = []

    async def accept(token: str) -> Caller:
        calls.append(token)
        return Caller(name="oncall")

    config = UiConfig(
        runbooks_dir=lambda: REPO / "runbooks", airflow_base_path=lambda: "", login_url=lambda _: None
    )
    with TestClient(create_ui_app(NoData(), accept, config)) as client:
        resp = client.get("/runbooks/model_not_loaded.md", headers={"Authorization": "Bearer t"})
    assert resp.status_code == 200 and "oncall" in resp.text
    assert calls == ["t"]
