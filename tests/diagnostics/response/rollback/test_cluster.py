"""Opt-in: the kubernetes_deployment rollback against a real cluster.

Runs only with ``TRIAGE24_KUBECONFIG=/path/to/kubeconfig`` (and ``-m kubernetes`` or no marker
filter); ``TRIAGE24_K8S_NAMESPACE`` (default ``default``) is where a throw-away Deployment with zero
replicas (``registry.k8s.io/pause``, so nothing is scheduled or pulled) is created, updated once,
rolled back and deleted.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics.response.rollback.base import apply
from diagnostics.response.rollback.kubernetes import api_client_for, owned_replicasets
from tests.diagnostics.response.rollback.conftest import make_target

pytestmark = pytest.mark.kubernetes

KUBECONFIG = os.environ.get("TRIAGE24_KUBECONFIG")
NAMESPACE = os.environ.get("TRIAGE24_K8S_NAMESPACE", "default")
IMAGES = ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.10")


@pytest.fixture
def cluster_deployment() -> Iterator[tuple[Any, str]]:
    if not KUBECONFIG:
        pytest.skip(
            "needs a real cluster: set TRIAGE24_KUBECONFIG=/path/to/kubeconfig "
            "(and optionally TRIAGE24_K8S_NAMESPACE) to run it"
        )
    from kubernetes import client

    api = api_client_for(KUBECONFIG, {})
    apps = client.AppsV1Api(api)
    name = f"triage24-rollback-{uuid.uuid4().hex[:8]}"
    labels = {"app": name}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "pause", "image": IMAGES[0]}]},
            },
        },
    }
    apps.create_namespaced_deployment(NAMESPACE, body)
    try:
        _wait_revisions(apps, name, 1)
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "pause", "image": IMAGES[1]}]}}}}
        apps.patch_namespaced_deployment(name, NAMESPACE, patch)
        _wait_revisions(apps, name, 2)
        yield api, name
    finally:
        apps.delete_namespaced_deployment(name, NAMESPACE, propagation_policy="Background")


def _owned(apps: Any, name: str) -> list[dict[str, Any]]:
    api = apps.api_client
    deployment = api.sanitize_for_serialization(apps.read_namespaced_deployment(name, NAMESPACE))
    rs = api.sanitize_for_serialization(
        apps.list_namespaced_replica_set(NAMESPACE, label_selector=f"app={name}")
    )
    return owned_replicasets(deployment, rs.get("items") or [])


def _wait_revisions(apps: Any, name: str, top: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        revisions = [
            int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
            for rs in _owned(apps, name)
        ]
        if revisions and max(revisions) >= top:
            return
        time.sleep(0.5)
    raise TimeoutError(f"deployment {NAMESPACE}/{name} has no revision {top} after {timeout_s} s")


def test_rollout_undo_on_a_real_cluster(cluster_deployment: tuple[Any, str], tmp_path: Path) -> None:
    from kubernetes import client

    api, name = cluster_deployment
    apps = client.AppsV1Api(api)
    target = make_target({"method": "kubernetes_deployment", "namespace": NAMESPACE, "deployment": name})

    def run(incident: str) -> Any:
        return apply(
            "rollback", target, incident_id=incident, dry_run=False, state_dir=tmp_path, api_client=api
        )

    first = run("inc-cluster")
    assert first.outcome == "applied", first.summary
    assert first.before["images"] == [IMAGES[1]] and first.after["images"] == [IMAGES[0]]
    image = apps.read_namespaced_deployment(name, NAMESPACE).spec.template.spec.containers[0].image
    assert image == IMAGES[0]
    assert run("inc-cluster").outcome == "already_applied"
    # the controller gives revision 1's ReplicaSet revision 3; "previous" is now the bad one
    _wait_revisions(apps, name, 3)
    later = run("inc-cluster-2")
    assert later.outcome == "refused", later.summary
    assert (
        apps.read_namespaced_deployment(name, NAMESPACE).spec.template.spec.containers[0].image == IMAGES[0]
    )
