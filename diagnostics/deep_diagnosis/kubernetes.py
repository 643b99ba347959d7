"""Kubernetes mode of phase 2: the KubernetesPodOperator arguments that run one check in a GPU pod.

The pod runs the project image's CLI, ``python -m diagnostics check <name> --incident-b64 … --xcom``:
the same check code as a local task, with the reference models on the pod's GPU (``device: auto``).
The CLI writes the full result to ``/airflow/xcom/return.json``; with ``do_xcom_push`` the operator's
sidecar returns it as the task's XCom and the phase summary stores it under the artifact root.
Pure: builds keyword arguments (kubernetes client models), no Airflow import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diagnostics.runbooks.schemas import KubernetesExecution

XCOM_PATH = "/airflow/xcom/return.json"
GPU_RESOURCE = "nvidia.com/gpu"


def check_command(check: str, incident_b64: str) -> tuple[list[str], list[str]]:
    """(cmds, arguments) of the pod's container."""
    return ["python", "-m", "diagnostics"], [
        "check",
        check,
        "--incident-b64",
        incident_b64,
        "--xcom",
        XCOM_PATH,
    ]


def pod_operator_kwargs(
    check: str, cfg: KubernetesExecution, *, incident_b64: str, gpu: bool = True
) -> dict[str, Any]:
    """Keyword arguments for ``KubernetesPodOperator`` running ``check`` as configured by ``cfg``.

    ``gpu``: the check does heavy reference-model work; a check that does not gets no GPU limit (and
    no GPU node selector/tolerations), so it does not hold a GPU for HTTP calls.
    """
    from kubernetes.client import models as k8s

    limits: dict[str, str] = {"cpu": cfg.cpu, "memory": cfg.memory}
    if gpu and cfg.gpus > 0:
        limits[GPU_RESOURCE] = str(cfg.gpus)
    on_gpu = gpu and cfg.gpus > 0
    cmds, arguments = check_command(check, incident_b64)
    kwargs: dict[str, Any] = {
        "task_id": check,
        "name": f"triage24-{check.replace('_', '-')}",
        "namespace": cfg.namespace,
        "kubernetes_conn_id": cfg.connection_id,
        "image": cfg.image,
        "cmds": cmds,
        "arguments": arguments,
        "labels": {"app.kubernetes.io/name": "triage24", "triage24/check": check.replace("_", "-")},
        "container_resources": k8s.V1ResourceRequirements(
            limits=limits, requests={"cpu": cfg.cpu, "memory": cfg.memory}
        ),
        "node_selector": dict(cfg.node_selector) if on_gpu else {},
        "tolerations": [
            k8s.V1Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
            for t in cfg.tolerations
        ]
        if on_gpu
        else [],
        "env_vars": {**cfg.env, "TRIAGE24_REFERENCE_DEVICE": "cuda" if on_gpu else "cpu"},
        "do_xcom_push": True,
        "trigger_rule": "all_done",  # after the fast path, whatever it did (see the DAG)
        "get_logs": True,
        "on_finish_action": "delete_pod",
        "startup_timeout_seconds": cfg.startup_timeout_s,
    }
    if cfg.env_from_secret:
        kwargs["env_from"] = [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=cfg.env_from_secret))]
    if cfg.service_account:
        kwargs["service_account_name"] = cfg.service_account
    if cfg.pod_template_file and on_gpu:  # the template schedules onto GPU nodes
        from diagnostics.config import Settings

        template = Path(cfg.pod_template_file).expanduser()
        kwargs["pod_template_file"] = str(
            template if template.is_absolute() else Settings().repo_root / template
        )
    return kwargs
