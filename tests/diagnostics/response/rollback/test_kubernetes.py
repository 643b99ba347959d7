"""The kubernetes_deployment method: the real kubernetes client against recorded, real-shaped API
answers (a Deployment, its ReplicaSetList) served on loopback; the exact JSON patch is asserted.

The fake API applies the patch to its Deployment, so a second call sees the rolled-back template.
``simulate_controller`` does what the Deployment controller does next: the ReplicaSet whose template
now matches gets the next revision number — after which a naive ``rollout undo`` would roll forward.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics.incident.results import Status
from diagnostics.response.rollback.base import apply
from diagnostics.response.rollback.kubernetes import api_client_for
from tests.conftest import free_port
from tests.diagnostics.response.rollback.conftest import api_client, fixture, make_target, status_body
from tests.support.http import Canned, CannedServer, Recorded, canned_server

NS, NAME = "multimodal", "llm-gateway"
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"
RS_PATH = f"/apis/apps/v1/namespaces/{NS}/replicasets"
TARGET = make_target({"method": "kubernetes_deployment", "namespace": NS, "deployment": NAME})


class FakeApps:
    """A Deployment and its ReplicaSets as the API server would answer them."""

    def __init__(self) -> None:
        self.deployment = fixture("deployment.json")
        self.replicasets = fixture("replicasets.json")
        self.patch_status = 200

    def get_deployment(self, req: Recorded) -> Canned:
        return Canned(200, self.deployment)

    def list_replicasets(self, req: Recorded) -> Canned:
        return Canned(200, self.replicasets)

    def patch_deployment(self, req: Recorded) -> Canned:
        if self.patch_status != 200:
            return Canned(
                self.patch_status, status_body(self.patch_status, "admission webhook denied the request")
            )
        for op in json.loads(req.body):
            assert op["op"] == "replace"
            parent, key = op["path"].strip("/").split("/")
            self.deployment[parent][key] = op["value"]
        self.deployment["metadata"]["generation"] += 1
        return Canned(200, self.deployment)

    def simulate_controller(self) -> None:
        """The controller reuses the matching ReplicaSet and gives it the next revision."""
        template = self.deployment["spec"]["template"]
        top = max(
            int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in self.owned()
        )
        for rs in self.owned():
            labels = dict(rs["spec"]["template"]["metadata"]["labels"])
            labels.pop("pod-template-hash")
            if {
                **rs["spec"]["template"],
                "metadata": {**rs["spec"]["template"]["metadata"], "labels": labels},
            } == (template):
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(top + 1)
                self.deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(top + 1)

    def owned(self) -> list[dict[str, Any]]:
        uid = self.deployment["metadata"]["uid"]
        return [
            rs
            for rs in self.replicasets["items"]
            if any(ref["uid"] == uid for ref in rs["metadata"]["ownerReferences"])
        ]


@pytest.fixture
def fake() -> FakeApps:
    return FakeApps()


@pytest.fixture
def server(fake: FakeApps) -> Iterator[CannedServer]:
    routes = {
        ("GET", DEPLOYMENT_PATH): fake.get_deployment,
        ("GET", RS_PATH): fake.list_replicasets,
        ("PATCH", DEPLOYMENT_PATH): fake.patch_deployment,
    }
    with canned_server(routes) as srv:  # type: ignore[arg-type]
        yield srv


def patches(server: CannedServer) -> list[Recorded]:
    return [r for r in server.requests if r.method == "PATCH"]


def run(server: CannedServer, state_dir: Path, incident: str = "inc-1", dry_run: bool = False) -> Any:
    return apply(
        "rollback",
        TARGET,
        incident_id=incident,
        dry_run=dry_run,
        state_dir=state_dir,
        environ={},
        api_client=api_client(server.url),
    )


def test_rollback_patches_the_previous_revisions_template(
    fake: FakeApps, server: CannedServer, tmp_path: Path
) -> None:
    rs1 = fake.replicasets["items"][0]
    result = run(server, tmp_path)
    assert result.status is Status.OK, result.summary
    assert (result.outcome, result.changed) == ("applied", True)
    assert result.before == {
        "namespace": NS,
        "deployment": NAME,
        "revision": 2,
        "template_hash": "7d9f8c6b5d",
        "images": ["registry.example.com/llm-gateway:2.1.0"],
        "paused": False,
        "revisions": [1, 2],  # the shadow Deployment's ReplicaSet (another owner) is not history
    }
    assert result.after["images"] == ["registry.example.com/llm-gateway:2.0.3"]
    assert result.after["template_hash"] == "5c8b7f9d4" and result.after["restores_revision"] == 1
    assert "revision 1 (registry.example.com/llm-gateway:2.0.3)" in result.summary

    # what went over the wire: list by the Deployment's selector, then kubectl's JSON patch
    listing = next(r for r in server.requests if r.path.startswith(RS_PATH))
    assert listing.path == f"{RS_PATH}?labelSelector=app%3Dllm-gateway"
    [patch] = patches(server)
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    expected_template = copy.deepcopy(rs1["spec"]["template"])
    expected_template["metadata"]["labels"] = {"app": "llm-gateway"}  # pod-template-hash dropped
    assert json.loads(patch.body) == [
        {"op": "replace", "path": "/spec/template", "value": expected_template},
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {
                # the Deployment's own bookkeeping stays ...
                "deployment.kubernetes.io/revision": "2",
                "kubectl.kubernetes.io/last-applied-configuration": fake.deployment["metadata"][
                    "annotations"
                ]["kubectl.kubernetes.io/last-applied-configuration"],
                # ... the revision's other annotations come back (not desired/max-replicas)
                "kubernetes.io/change-cause": "initial 2.0.3",
            },
        },
    ]
    assert expected_template["metadata"]["creationTimestamp"] is None  # sent as null, as recorded
    assert fake.deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0.3")


def test_second_call_is_a_noop_and_the_same_incident_is_not_resent(
    fake: FakeApps, server: CannedServer, tmp_path: Path
) -> None:
    assert run(server, tmp_path).outcome == "applied"
    again = run(server, tmp_path)
    assert (again.outcome, again.idempotent_noop) == ("already_applied", True)
    other = run(server, tmp_path, incident="inc-2")
    assert (other.status, other.outcome, other.changed) == (Status.OK, "noop", False)
    assert "already matches revision 1" in other.summary
    assert len(patches(server)) == 1


def test_no_roll_forward_to_the_version_a_rollback_left(
    fake: FakeApps, server: CannedServer, tmp_path: Path
) -> None:
    assert run(server, tmp_path).outcome == "applied"
    fake.simulate_controller()  # revision 1's ReplicaSet is now revision 3; "previous" is the bad 2
    assert [rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in fake.owned()] == [
        "3",
        "2",
    ]
    later = run(server, tmp_path, incident="inc-later")
    assert (later.status, later.outcome, later.changed) == (Status.FAILED, "refused", False)
    assert "7d9f8c6b5d" in (later.error or "") and "known-bad" in (later.error or "")
    assert len(patches(server)) == 1


def test_dry_run_sends_no_patch(fake: FakeApps, server: CannedServer, tmp_path: Path) -> None:
    result = run(server, tmp_path, dry_run=True)
    assert (result.status, result.outcome, result.would_change) == (Status.OK, "dry_run", True)
    assert result.after["images"] == ["registry.example.com/llm-gateway:2.0.3"]
    assert patches(server) == []


def test_a_paused_deployment_is_refused(fake: FakeApps, server: CannedServer, tmp_path: Path) -> None:
    fake.deployment["spec"]["paused"] = True
    result = run(server, tmp_path)
    assert result.status is Status.FAILED and "paused" in (result.error or "")
    assert "kubectl rollout resume deployment/llm-gateway -n multimodal" in (result.error or "")
    assert patches(server) == []


def test_no_history_is_a_failure(fake: FakeApps, server: CannedServer, tmp_path: Path) -> None:
    fake.replicasets["items"] = fake.replicasets["items"][1:]
    result = run(server, tmp_path)
    assert result.status is Status.FAILED and "no rollout history" in (result.error or "")


def test_api_errors_are_failed_results(fake: FakeApps, server: CannedServer, tmp_path: Path) -> None:
    fake.patch_status = 403
    result = run(server, tmp_path)
    assert result.status is Status.FAILED and result.outcome == "failed"
    assert "HTTP 403 Forbidden on patching deployment multimodal/llm-gateway" in (result.error or "")
    assert "admission webhook denied the request" in (result.error or "")
    # a failed change is not counted by the rate limit and not remembered as applied
    fake.patch_status = 200
    assert run(server, tmp_path).outcome == "applied"


def test_an_unreachable_api_is_a_failed_result(tmp_path: Path) -> None:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{free_port()}"
    configuration.retries = 0
    result = apply(
        "rollback",
        TARGET,
        incident_id="inc-u",
        dry_run=False,
        state_dir=tmp_path,
        environ={},
        api_client=client.ApiClient(configuration),
    )
    assert result.status is Status.FAILED
    assert "cannot reach the Kubernetes API at http://127.0.0.1:" in (result.error or "")


def test_promotion_is_not_a_deployment_action(server: CannedServer, tmp_path: Path) -> None:
    result = apply(
        "promote",
        TARGET,
        incident_id="inc-p",
        dry_run=False,
        state_dir=tmp_path,
        environ={},
        api_client=api_client(server.url),
        promote_to=50,
    )
    assert result.outcome == "refused" and "not supported" in (result.error or "")


def test_missing_kube_config_is_a_clear_failure(tmp_path: Path) -> None:
    result = apply(
        "rollback",
        TARGET,
        incident_id="inc-k",
        dry_run=False,
        state_dir=tmp_path,
        environ={},
        kubeconfig=tmp_path / "no-such-kubeconfig",
    )
    assert result.status is Status.FAILED
    assert "no usable Kubernetes API configuration" in (result.error or "")
    assert "set KUBECONFIG" in (result.error or "")


def test_api_client_from_a_kubeconfig_file(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "kube-secret-token"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    client = api_client_for(path, {})
    assert client.configuration.host == "https://10.0.0.1:6443"
    assert api_client_for(None, {"KUBECONFIG": str(path)}).configuration.host == "https://10.0.0.1:6443"
