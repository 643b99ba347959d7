"""The ``kubernetes_deployment`` method: roll a Deployment back to its previous revision.

This is what ``kubectl rollout undo deployment/NAME`` does (k8s.io/kubectl polymorphichelpers,
``DeploymentRollbacker``), with the official Python client:

1. read the Deployment; a paused one is refused (kubectl refuses it too);
2. list the ReplicaSets it owns (``metadata.ownerReferences`` with the Deployment's ``uid`` as the
   controller), ordered by the ``deployment.kubernetes.io/revision`` annotation; the previous
   revision is the second highest;
3. if the Deployment's pod template already equals that ReplicaSet's (ignoring the
   ``pod-template-hash`` label), there is nothing to do;
4. else send a JSON patch: ``replace /spec/template`` with the ReplicaSet's template without the
   ``pod-template-hash`` label, and ``replace /metadata/annotations`` with the Deployment's own
   bookkeeping annotations plus the ReplicaSet's other annotations (e.g. ``kubernetes.io/change-cause``).

Objects are read and patched as raw JSON (``_preload_content=False``), not through the client's
models: a model drops fields this client version does not know, and writing such a template back
would silently lose them.

The API client comes from the caller (e.g. the Airflow KubernetesHook of the rollback config's
``connection_id``), a kubeconfig path, ``$KUBECONFIG``, or the in-cluster service account.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from diagnostics.response.rollback.contracts import Action, ActionError, Plan, State
from diagnostics.runbooks.schemas import KubernetesRollback, Target

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# Annotations kubectl keeps from the Deployment instead of copying them from the ReplicaSet.
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


def api_client_for(kubeconfig: str | Path | None, environ: Mapping[str, str]) -> Any:
    """A ``kubernetes.client.ApiClient`` from a kubeconfig path, ``$KUBECONFIG``, the in-cluster
    service account (``KUBERNETES_SERVICE_HOST`` set) or ``~/.kube/config``, in that order."""
    from kubernetes import client, config

    path = str(kubeconfig) if kubeconfig else environ.get("KUBECONFIG")
    try:
        if path:
            return config.new_client_from_config(config_file=path)
        if environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config(config_file=str(Path.home() / ".kube" / "config"))
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise ActionError(
            f"no usable Kubernetes API configuration ({type(exc).__name__}: {str(exc)[:200]}): pass a "
            "kubeconfig path, set KUBECONFIG, or run in the cluster with a service account"
        ) from None


@contextlib.contextmanager
def api_errors(what: str, host: str) -> Iterator[None]:
    """Turn the client's failures into an :class:`ActionError` saying what was being done."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        message = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = str(json.loads(exc.body).get("message", ""))
        raise ActionError(
            f"Kubernetes API at {host}: HTTP {exc.status} {exc.reason} on {what}"
            + (f": {message[:300]}" if message else "")
        ) from None
    except HTTPError as exc:
        raise ActionError(
            f"cannot reach the Kubernetes API at {host} ({what}): {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    except (OSError, ValueError) as exc:
        raise ActionError(f"Kubernetes API at {host}: {what} failed: {type(exc).__name__}: {exc}") from None


def raw_json(response: Any) -> dict[str, Any]:
    """The JSON object of a ``_preload_content=False`` response."""
    data = json.loads(response.data)
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    return data


def _revision(obj: Mapping[str, Any]) -> int | None:
    value = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    """A pod template without the ``pod-template-hash`` label (the controller adds it to ReplicaSets)."""
    out = copy.deepcopy(dict(template))
    labels = out.get("metadata", {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return out


def _images(template: Mapping[str, Any]) -> list[str]:
    containers = template.get("spec", {}).get("containers") or []
    return [str(c.get("image")) for c in containers if isinstance(c, dict)]


def _hash(rs: Mapping[str, Any]) -> str | None:
    labels = rs.get("metadata", {}).get("labels") or {}
    value = labels.get(HASH_LABEL)
    return str(value) if value else None


def owned_replicasets(deployment: Mapping[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ReplicaSets whose controller is ``deployment``, by revision, oldest first."""
    uid = deployment.get("metadata", {}).get("uid")
    owned = [
        rs
        for rs in items
        if _revision(rs) is not None
        and any(
            ref.get("uid") == uid and ref.get("controller", False)
            for ref in rs.get("metadata", {}).get("ownerReferences") or []
        )
    ]
    return sorted(owned, key=lambda rs: _revision(rs) or 0)


def patch_annotations(deployment: Mapping[str, Any], rs: Mapping[str, Any]) -> dict[str, str]:
    """The Deployment's bookkeeping annotations plus the ReplicaSet's others (kubectl's rule)."""
    own = deployment.get("metadata", {}).get("annotations") or {}
    theirs = rs.get("metadata", {}).get("annotations") or {}
    merged = {k: v for k, v in own.items() if k in ANNOTATIONS_TO_SKIP}
    merged.update({k: v for k, v in theirs.items() if k not in ANNOTATIONS_TO_SKIP})
    return merged


class DeploymentDriver:
    """``kubectl rollout undo`` of one Deployment through an ``ApiClient``."""

    method = "kubernetes_deployment"

    def __init__(self, config: KubernetesRollback, api_client: Any) -> None:
        from kubernetes import client

        self.config = config
        self.apps = client.AppsV1Api(api_client)
        self.host = str(getattr(api_client.configuration, "host", "?"))

    @classmethod
    def from_target(
        cls,
        target: Target,
        environ: Mapping[str, str],
        *,
        api_client: Any = None,
        kubeconfig: str | Path | None = None,
    ) -> DeploymentDriver:
        """The driver of ``target``'s kubernetes_deployment config, over ``api_client`` or one from
        ``kubeconfig`` (:func:`api_client_for`)."""
        if not isinstance(target.rollback, KubernetesRollback):
            raise ActionError(f"target {target.name} does not use the kubernetes_deployment method")
        return cls(target.rollback, api_client or api_client_for(kubeconfig, environ))

    def secrets(self) -> tuple[str, ...]:
        return ()  # the client's credentials never enter a message

    @property
    def _where(self) -> str:
        return f"deployment {self.config.namespace}/{self.config.deployment}"

    def read(self) -> State:
        ns, name, timeout = self.config.namespace, self.config.deployment, self.config.timeout_s
        with api_errors(f"reading {self._where}", self.host):
            deployment = raw_json(
                self.apps.read_namespaced_deployment(
                    name, ns, _preload_content=False, _request_timeout=timeout
                )
            )
        match = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        with api_errors(f"listing the ReplicaSets of {self._where}", self.host):
            listed = raw_json(
                self.apps.list_namespaced_replica_set(
                    ns, label_selector=selector, _preload_content=False, _request_timeout=timeout
                )
            )
        history = owned_replicasets(deployment, listed.get("items") or [])
        template = deployment.get("spec", {}).get("template") or {}
        current = next((rs for rs in history if without_hash(rs["spec"]["template"]) == template), None)
        summary: dict[str, Any] = {
            "namespace": ns,
            "deployment": name,
            "revision": _revision(deployment),
            "template_hash": _hash(current) if current else None,
            "images": _images(template),
            "paused": bool(deployment.get("spec", {}).get("paused")),
            "revisions": [_revision(rs) for rs in history],
        }
        return State(summary, {"deployment": deployment, "history": history})

    def plan(self, action: Action, state: State, promote_to: float | None) -> Plan:
        if action != "rollback":
            raise ActionError(
                "promotion is not supported by the kubernetes_deployment method: a Deployment has no "
                "traffic weight; promote through the deployment pipeline",
                "refused",
            )
        deployment, history = state.raw["deployment"], state.raw["history"]
        if state.summary["paused"]:
            raise ActionError(
                f"{self._where} is paused: a paused Deployment cannot be rolled back; resume it first "
                f"(kubectl rollout resume deployment/{self.config.deployment} -n {self.config.namespace})"
            )
        if len(history) < 2:
            raise ActionError(
                f"no rollout history to go back to: {self._where} has "
                f"{len(history)} revision(s) ({state.summary['revisions']})"
            )
        previous = history[-2]
        revision, images = _revision(previous), _images(previous["spec"]["template"])
        template = without_hash(previous["spec"]["template"])
        desired = {"template_hash": _hash(previous), "images": images, "restores_revision": revision}
        if template == deployment.get("spec", {}).get("template"):
            return Plan(False, f"the pod template already matches revision {revision} ({images})", desired)
        body = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {
                "op": "replace",
                "path": "/metadata/annotations",
                "value": patch_annotations(deployment, previous),
            },
        ]
        return Plan(
            True,
            f"restore the pod template of revision {revision} ({', '.join(images)}) in place of revision "
            f"{state.summary['revision']} ({', '.join(state.summary['images'])})",
            desired,
            body=body,
            leaves=state.summary["template_hash"],
            reaches=_hash(previous),
        )

    def execute(self, plan: Plan) -> dict[str, Any]:
        ns, name = self.config.namespace, self.config.deployment
        with api_errors(f"patching {self._where}", self.host):
            patched = raw_json(
                self.apps.patch_namespaced_deployment(
                    name,
                    ns,
                    plan.body,
                    _content_type="application/json-patch+json",
                    _preload_content=False,
                    _request_timeout=self.config.timeout_s,
                )
            )
        template = patched.get("spec", {}).get("template") or {}
        return {
            "namespace": ns,
            "deployment": name,
            "generation": patched.get("metadata", {}).get("generation"),
            # the API server may default or mutate fields; only an identical template is that revision
            "template_hash": plan.reaches if template == plan.body[0]["value"] else None,
            "images": _images(template),
            "restores_revision": plan.desired.get("restores_revision"),
        }
