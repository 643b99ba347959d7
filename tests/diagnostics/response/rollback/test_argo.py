"""The argo_rollout method: the real kubernetes client's CustomObjectsApi against a recorded Rollout
(paused at a 20 % canary step) served on loopback; the exact merge patch is asserted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics.incident.results import Status
from diagnostics.response.rollback.base import apply
from tests.diagnostics.response.rollback.conftest import api_client, fixture, make_target, status_body
from tests.support.http import Canned, CannedServer, Recorded, canned_server

NS, NAME = "multimodal", "clip-encoder"
ROLLOUT_PATH = f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/{NAME}"
TARGET = make_target({"method": "argo_rollout", "namespace": NS, "rollout": NAME})


class FakeRollouts:
    def __init__(self) -> None:
        self.rollout = fixture("rollout.json")
        self.status_subresource = True

    def get(self, req: Recorded) -> Canned:
        return Canned(200, self.rollout)

    def patch(self, req: Recorded) -> Canned:
        if req.path.endswith("/status") and not self.status_subresource:
            return Canned(404, status_body(404, "the server could not find the requested resource"))
        self.rollout["status"].update(json.loads(req.body)["status"])
        self.rollout["status"]["phase"] = "Degraded"
        self.rollout["status"]["message"] = "RolloutAborted: Rollout aborted update to revision 4"
        return Canned(200, self.rollout)


@pytest.fixture
def fake() -> FakeRollouts:
    return FakeRollouts()


@pytest.fixture
def server(fake: FakeRollouts) -> Iterator[CannedServer]:
    routes = {
        ("GET", ROLLOUT_PATH): fake.get,
        ("PATCH", f"{ROLLOUT_PATH}/status"): fake.patch,
        ("PATCH", ROLLOUT_PATH): fake.patch,
    }
    with canned_server(routes) as srv:  # type: ignore[arg-type]
        yield srv


def run(server: CannedServer, state_dir: Path, incident: str = "inc-1", **kw: Any) -> Any:
    kw.setdefault("dry_run", False)
    return apply(
        "rollback",
        TARGET,
        incident_id=incident,
        state_dir=state_dir,
        environ={},
        api_client=api_client(server.url),
        **kw,
    )


def patches(server: CannedServer) -> list[Recorded]:
    return [r for r in server.requests if r.method == "PATCH"]


def test_abort_is_a_merge_patch_on_the_status_subresource(server: CannedServer, tmp_path: Path) -> None:
    result = run(server, tmp_path)
    assert result.status is Status.OK, result.summary
    assert result.outcome == "applied"
    assert result.before == {
        "namespace": NS,
        "rollout": NAME,
        "abort": False,
        "phase": "Paused",
        "stable_rs": "6d5c4b3a2",
        "current_pod_hash": "8b4f6d7c9",
        "canary_weight": 20,
        "message": "CanaryPauseStep",
    }
    assert result.after["abort"] is True and result.after["phase"] == "Degraded"
    assert "traffic back to stable ReplicaSet 6d5c4b3a2" in result.summary
    [patch] = patches(server)
    assert patch.path == f"{ROLLOUT_PATH}/status"
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert json.loads(patch.body) == {"status": {"abort": True}}


def test_already_aborted_is_a_noop(server: CannedServer, tmp_path: Path) -> None:
    assert run(server, tmp_path).outcome == "applied"
    again = run(server, tmp_path, incident="inc-2")
    assert (again.status, again.outcome, again.changed) == (Status.OK, "noop", False)
    assert "already aborted" in again.summary
    assert len(patches(server)) == 1


def test_without_a_status_subresource_the_object_is_patched(
    fake: FakeRollouts, server: CannedServer, tmp_path: Path
) -> None:
    fake.status_subresource = False  # Argo Rollouts before v0.6
    result = run(server, tmp_path)
    assert result.outcome == "applied"
    assert [p.path for p in patches(server)] == [f"{ROLLOUT_PATH}/status", ROLLOUT_PATH]
    assert json.loads(patches(server)[1].body) == {"status": {"abort": True}}


def test_a_fully_promoted_rollout_has_nothing_to_abort(
    fake: FakeRollouts, server: CannedServer, tmp_path: Path
) -> None:
    fake.rollout["status"]["currentPodHash"] = fake.rollout["status"]["stableRS"]
    result = run(server, tmp_path)
    assert (result.status, result.outcome) == (Status.FAILED, "refused")
    assert "fully promoted" in (result.error or "") and "kubectl argo rollouts undo clip-encoder" in (
        result.error or ""
    )
    assert patches(server) == []


def test_dry_run_sends_nothing(server: CannedServer, tmp_path: Path) -> None:
    result = run(server, tmp_path, dry_run=True)
    assert (result.outcome, result.would_change, result.after["abort"]) == ("dry_run", True, True)
    assert patches(server) == []


def test_a_missing_rollout_is_a_failed_result(tmp_path: Path) -> None:
    missing = Canned(404, status_body(404, 'rollouts.argoproj.io "clip-encoder" not found'))
    with canned_server({("GET", ROLLOUT_PATH): missing}) as srv:
        result = run(srv, tmp_path)
    assert result.status is Status.FAILED
    assert (
        'HTTP 404 Not Found on reading rollout multimodal/clip-encoder: rollouts.argoproj.io "clip-encoder"'
        in (result.error or "")
    )
