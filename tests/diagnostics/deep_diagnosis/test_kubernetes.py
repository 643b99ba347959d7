"""Kubernetes mode of phase 2: the DAG builds a KubernetesPodOperator per check; the pod it would
submit (the operator's own pod-request path, no cluster) runs the CLI with the GPU limits, scheduling
and XCom sidecar that runbooks/targets.yaml asks for."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def kube_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIAGE24_PHASE2_MODE", "kubernetes")
        mp.setenv("TRIAGE24_IMAGE", "registry.example/triage24:1.2.3")
        bag = DagBag(dag_folder=str(REPO / "dags" / "incident_response.py"))
    assert bag.import_errors == {}
    return bag.dags["incident_response"]


def test_each_phase2_check_is_a_pod_operator_after_phase1(kube_dag: Any) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    pods = [t for t in kube_dag.tasks if isinstance(t, KubernetesPodOperator)]
    assert sorted(t.task_id for t in pods) == sorted(
        f"deep_diagnosis.{n}"
        for n in (
            "clip_consistency",
            "embedding_alignment",
            "asr_check",
            "temporal_alignment",
            "alignment_quality",
            "router_dispatch",
            "drift",
        )
    )
    for t in pods:
        assert {"fast_path.verify_now", "fast_path.no_fast_path", "open_incident"} <= t.upstream_task_ids
        assert "deep_diagnosis.deep_summary" in t.downstream_task_ids
        assert t.do_xcom_push is True


def _pod(kube_dag: Any, check: str) -> Any:
    op = kube_dag.get_task(f"deep_diagnosis.{check}")
    incident = base64.b64encode(json.dumps({"incident_id": "x"}).encode()).decode()
    op.arguments = [
        a.replace("{{ ti.xcom_pull(task_ids='open_incident', key='incident_b64') }}", incident)
        for a in op.arguments
    ]
    return op.build_pod_request_obj(dry_run=True), incident  # dry run: no cluster, no kube config


def test_a_gpu_check_pod_runs_the_cli_on_a_gpu_node_and_returns_its_result_through_xcom(
    kube_dag: Any,
) -> None:
    pod, incident = _pod(kube_dag, "asr_check")
    base = next(c for c in pod.spec.containers if c.name == "base")
    assert base.image == "registry.example/triage24:1.2.3"
    assert base.command == ["python", "-m", "diagnostics"]
    assert base.args == [
        "check",
        "asr_check",
        "--incident-b64",
        incident,
        "--xcom",
        "/airflow/xcom/return.json",
    ]
    assert base.resources.limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations] == [
        ("nvidia.com/gpu", "Exists", "NoSchedule")
    ]
    assert pod.metadata.namespace == "triage24"
    env = {e.name: e.value for e in base.env}
    assert env["TRIAGE24_REFERENCE_DEVICE"] == "cuda" and env["TRIAGE24_MODEL_DIR"] == "/models"
    assert base.env_from[0].secret_ref.name == "triage24-env"
    # the XCom contract: the sidecar reads /airflow/xcom/return.json from a shared volume
    assert any(c.name == "airflow-xcom-sidecar" for c in pod.spec.containers)
    mounts = {m.mount_path for m in base.volume_mounts}
    assert {"/airflow/xcom", "/models"} <= mounts  # the model cache comes from the pod template
    assert [v.name for v in pod.spec.volumes].count("xcom") == 1


def test_a_check_without_heavy_model_work_gets_no_gpu(kube_dag: Any) -> None:
    pod, _ = _pod(kube_dag, "drift")
    base = next(c for c in pod.spec.containers if c.name == "base")
    assert "nvidia.com/gpu" not in (base.resources.limits or {})
    assert not pod.spec.node_selector and not pod.spec.tolerations
    assert {e.name: e.value for e in base.env}["TRIAGE24_REFERENCE_DEVICE"] == "cpu"


def test_kubernetes_mode_without_a_pod_section_is_a_runbook_error(tmp_path: Path) -> None:
    from diagnostics.runbooks.schemas import Phase2Execution

    with pytest.raises(ValueError, match="kubernetes mode needs a kubernetes: section"):
        Phase2Execution(mode="local", checks={"asr_check": "kubernetes"})
    assert Phase2Execution(mode="local").mode_of("asr_check") == "local"


def test_the_pod_result_is_adopted_into_the_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from diagnostics.deep_diagnosis.base import DeepResult, VersionOutcome
    from diagnostics.deep_diagnosis.phase import adopt_pod_results
    from diagnostics.incident.model import Incident
    from diagnostics.incident.results import Status

    monkeypatch.setenv("TRIAGE24_ARTIFACT_ROOT", str(tmp_path))
    now = datetime.now(UTC)
    incident = Incident(
        incident_id="inc-1",
        target="testbed",
        source="manual",
        alert_started_at=now,
        analysed_at=now,
        window_s=600,
    )
    result = DeepResult(
        check="asr_check",
        status=Status.FAILED,
        summary="canary: mean WER 0.9",
        versions={"canary": VersionOutcome(version="canary", status=Status.FAILED, summary="mean WER 0.9")},
    )
    brief = {"check": "drift", "status": "ok"}  # a local task's brief: already stored by its task
    assert adopt_pod_results(incident, [result.model_dump(mode="json"), brief]) == ["asr_check"]
    stored = json.loads((tmp_path / "inc-1" / "deep_diagnosis" / "asr_check.json").read_text())
    assert stored["versions"]["canary"]["status"] == "failed"
    assert adopt_pod_results(incident, [result.model_dump(mode="json")]) == []  # stored once
