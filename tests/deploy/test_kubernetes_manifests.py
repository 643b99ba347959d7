"""The Kubernetes side: Helm values for Airflow's chart and the pod template of the phase-2 GPU checks.

No cluster and no helm here: the YAML is checked for what Triage24 needs (executor, the baked image,
secrets by reference, resources, GPU scheduling, the XCom contract), and the pod template is run
through the cncf-kubernetes provider's own KubernetesPodOperator code, the way the DAG consumes it
with ``pod_template_file``, to prove the merged pod is one Kubernetes would accept.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "deploy" / "helm" / "values.yaml"
POD_TEMPLATE = REPO / "deploy" / "kubernetes" / "gpu-check-pod-template.yaml"
GPU = "nvidia.com/gpu"
XCOM_DIR = "/airflow/xcom"


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return dict(yaml.safe_load(VALUES.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(yaml.safe_load(POD_TEMPLATE.read_text(encoding="utf-8")))


def _base(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["spec"]["containers"][0])


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}


def _dockerfile_env() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    return dict(re.findall(r"(AIRFLOW__CORE__\w+|TRIAGE24_\w+)=(\S+)", text))


# --- Helm values --------------------------------------------------------------------------------------


def test_helm_runs_the_kubernetes_executor_on_the_project_image(
    values: dict[str, Any], template: dict[str, Any]
) -> None:
    assert values["executor"] == "KubernetesExecutor"
    image = values["images"]["airflow"]
    assert (image["repository"], image["tag"]) == (
        values["defaultAirflowRepository"],
        values["defaultAirflowTag"],
    )
    assert f"{image['repository']}:{image['tag']}" == _base(template)["image"]
    lock = (REPO / "requirements.txt").read_text(encoding="utf-8")
    assert f"apache-airflow=={values['airflowVersion']}\n" in lock
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["TRIAGE24_IMAGE"] == _base(template)["image"]  # the image the GPU pods run
    assert env["TRIAGE24_PHASE2_MODE"] == "kubernetes"
    # no Celery, no broker
    assert values["redis"]["enabled"] is False


def test_helm_uses_the_dags_and_plugins_baked_in_the_image(values: dict[str, Any]) -> None:
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["dags"]["persistence"]["enabled"] is False
    core = values["config"]["core"]
    docker = _dockerfile_env()
    assert core["dags_folder"] == docker["AIRFLOW__CORE__DAGS_FOLDER"]
    assert core["plugins_folder"] == docker["AIRFLOW__CORE__PLUGINS_FOLDER"]
    assert core["load_examples"] == "False"
    assert core["auth_manager"].endswith("SimpleAuthManager")
    assert values["createUserJob"]["defaultUser"]["enabled"] is False


def test_helm_takes_every_secret_from_kubernetes_secrets(values: dict[str, Any]) -> None:
    conns = {s["envName"]: (s["secretName"], s["secretKey"]) for s in values["secret"]}
    for conn in (
        "AIRFLOW_CONN_TRIAGE24_PROMETHEUS",
        "AIRFLOW_CONN_TRIAGE24_ELASTICSEARCH",
        "AIRFLOW_CONN_TRIAGE24_WEBHOOK",
    ):
        assert conns[conn] == ("triage24-connections", conn)
    # dags/triage24_airflow/connections.py `evidence_sources` reads triage24_prometheus; the logs
    # connection defaults to triage24_elasticsearch (diagnostics/runbooks/schemas.py)
    source = (REPO / "dags" / "triage24_airflow" / "connections.py").read_text(encoding="utf-8")
    assert 'PROMETHEUS = "triage24_prometheus"' in source
    schemas = (REPO / "diagnostics" / "runbooks" / "schemas.py").read_text(encoding="utf-8")
    assert 'default="triage24_elasticsearch"' in schemas
    assert "secretRef:\n    name: triage24-env" in values["extraEnvFrom"]
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key], key
    assert values["data"]["metadataSecretName"]
    # and no secret value inline
    for key in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"):
        assert key not in values, key
    assert "metadataConnection" not in values["data"]
    assert not {e["name"] for e in values["env"]} & {"TRIAGE24_WEBHOOK_TOKEN", "TRIAGE24_TESTBED_ADMIN_TOKEN"}


def test_helm_sets_resources_for_every_component(values: dict[str, Any]) -> None:
    for component in ("apiServer", "scheduler", "dagProcessor", "triggerer", "workers"):
        resources = values[component]["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"], component
        assert resources["limits"]["memory"], component
    assert values["dagProcessor"]["enabled"] is True
    assert values["apiServer"]["replicas"] == 1  # the intake's SQLite journal has one writer


def test_helm_shares_the_triage24_state_volume(values: dict[str, Any]) -> None:
    (volume,) = values["volumes"]
    (mount,) = values["volumeMounts"]
    assert volume["name"] == mount["name"] == "triage24-state"
    assert volume["persistentVolumeClaim"]["claimName"] == "triage24-state"
    env = {e["name"]: e["value"] for e in values["env"]}
    assert mount["mountPath"] == env["TRIAGE24_HOME"] == _dockerfile_env()["TRIAGE24_HOME"]
    assert env["TRIAGE24_ARTIFACT_ROOT"].startswith(mount["mountPath"] + "/")
    passwords = values["config"]["core"]["simple_auth_manager_passwords_file"]
    (auth_mount,) = values["apiServer"]["extraVolumeMounts"]
    assert passwords.startswith(auth_mount["mountPath"] + "/") and auth_mount["readOnly"] is True
    (auth_volume,) = values["apiServer"]["extraVolumes"]
    assert auth_volume["name"] == auth_mount["name"] and auth_volume["secret"]["secretName"]


# --- the GPU check pod template ---------------------------------------------------------------------


def test_pod_template_runs_a_check_of_the_project_cli(template: dict[str, Any]) -> None:
    assert (template["apiVersion"], template["kind"]) == ("v1", "Pod")
    base = _base(template)
    assert base["name"] == "base"  # KubernetesPodOperator's base_container_name
    assert base["image"].startswith("ghcr.io/triage24/triage24:")
    command = [*base["command"], *base["args"]]
    assert command[:4] == ["python", "-m", "diagnostics", "check"]
    assert re.fullmatch(r"[a-z][a-z0-9_]*", command[4])
    assert command[command.index("--xcom") + 1] == f"{XCOM_DIR}/return.json"
    assert template["spec"]["restartPolicy"] == "Never"


def test_pod_template_asks_for_one_gpu_on_a_gpu_node(template: dict[str, Any]) -> None:
    spec = template["spec"]
    resources = _base(template)["resources"]
    assert resources["limits"][GPU] == 1
    assert resources["limits"]["memory"] and resources["requests"]["cpu"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    for init in spec.get("initContainers") or []:
        assert GPU not in (init.get("resources") or {}).get("limits", {}), "an init container holds a GPU"


def test_pod_template_has_a_model_cache_and_leaves_the_xcom_volume_to_the_operator(
    template: dict[str, Any],
) -> None:
    spec = template["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    base = _base(template)
    mounts = {m["name"]: m["mountPath"] for m in base["volumeMounts"]}
    model_dir = _env(base)["TRIAGE24_MODEL_DIR"]
    assert mounts["model-cache"] == model_dir
    assert "emptyDir" in volumes["model-cache"] or "persistentVolumeClaim" in volumes["model-cache"]
    (init,) = spec["initContainers"]
    assert init["command"] == ["triage24", "models", "prepare"]
    assert _env(init)["TRIAGE24_MODEL_DIR"] == model_dir
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]}["model-cache"] == model_dir
    # do_xcom_push adds volume `xcom` + its mount + the sidecar: declaring them here would clash
    assert "xcom" not in volumes
    assert XCOM_DIR not in mounts.values()
    assert [c["name"] for c in spec["containers"]] == ["base"]
    assert base["envFrom"] == [{"secretRef": {"name": "triage24-env", "optional": True}}]


def test_pod_template_agrees_with_the_phase2_settings_of_the_runbooks(template: dict[str, Any]) -> None:
    """runbooks/targets.yaml `phase2_execution.kubernetes` builds the operator's own arguments."""
    targets = yaml.safe_load((REPO / "runbooks" / "targets.yaml").read_text(encoding="utf-8"))
    pod = (targets.get("phase2_execution") or {}).get("kubernetes")
    if not pod:
        pytest.skip("runbooks/targets.yaml has no phase2_execution.kubernetes section")
    spec, base = template["spec"], _base(template)
    assert pod["node_selector"] == spec["nodeSelector"]
    assert [{k: v for k, v in t.items() if v is not None} for t in pod["tolerations"]] == spec["tolerations"]
    assert pod["env"]["TRIAGE24_MODEL_DIR"] == _env(base)["TRIAGE24_MODEL_DIR"]
    assert pod["env_from_secret"] == base["envFrom"][0]["secretRef"]["name"]
    assert pod["namespace"] == template["metadata"]["namespace"]
    # the image: ${TRIAGE24_IMAGE:-repository:tag}; the repository is the template's
    default_image = re.sub(r"^\$\{TRIAGE24_IMAGE:-(.*)\}$", r"\1", pod["image"])
    assert default_image.rsplit(":", 1)[0] == base["image"].rsplit(":", 1)[0]
    assert pod["gpus"] == base["resources"]["limits"][GPU]


def test_the_operator_builds_a_valid_pod_from_the_template(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """KubernetesPodOperator(pod_template_file=...) with the arguments the DAG builds for a phase-2
    check (diagnostics/deep_diagnosis/kubernetes.py from runbooks/targets.yaml, do_xcom_push=True):
    the merged pod
    keeps the GPU scheduling and the model cache, gets exactly one xcom volume, and has no name clashes."""
    # A kubeconfig-less connection: build_pod_request_obj(dry_run=True) reads only its settings.
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT", '{"conn_type": "kubernetes", "extra": {"in_cluster": false}}'
    )
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    from diagnostics.deep_diagnosis.kubernetes import pod_operator_kwargs
    from diagnostics.runbooks import load_runbooks

    cfg = load_runbooks(REPO / "runbooks").targets.phase2_execution.kubernetes
    assert cfg is not None
    check = "clip_consistency"
    kwargs = pod_operator_kwargs(check, cfg, incident_b64="e30=", gpu=True)
    assert kwargs["do_xcom_push"] is True
    assert kwargs["pod_template_file"] == str(POD_TEMPLATE)  # targets.yaml names the template
    op = KubernetesPodOperator(**kwargs)
    image = kwargs["image"]
    pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))
    spec = pod["spec"]
    # unique names, or the API server rejects the pod
    for kind in ("volumes", "containers", "initContainers"):
        names = Counter(item["name"] for item in spec.get(kind) or [])
        assert all(n == 1 for n in names.values()), (kind, names)
    assert "xcom" in {v["name"] for v in spec["volumes"]}
    base, sidecar = spec["containers"]
    assert base["name"] == "base" and sidecar["name"] == "airflow-xcom-sidecar"
    assert XCOM_DIR in {m["mountPath"] for m in base["volumeMounts"]}
    assert "/models" in {m["mountPath"] for m in base["volumeMounts"]}
    mounts = Counter(m["mountPath"] for m in base["volumeMounts"])
    assert all(n == 1 for n in mounts.values()), mounts
    # a variable given twice (template and operator) must not be given two values
    values_by_name: dict[str, set[str]] = {}
    for e in base["env"]:
        values_by_name.setdefault(e["name"], set()).add(e.get("value", ""))
    assert all(len(v) == 1 for v in values_by_name.values()), values_by_name
    # the operator's command and GPU limit, the template's scheduling and model cache
    assert [*base["command"], *base["args"]][:5] == ["python", "-m", "diagnostics", "check", check]
    assert base["resources"]["limits"][GPU] == "1"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert [c["name"] for c in spec["initContainers"]] == ["model-cache"]
    assert base["image"] == image and spec["restartPolicy"] == "Never"
