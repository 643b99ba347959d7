"""The ``argo_rollout`` method: abort an Argo Rollout, which sends all traffic back to the stable RS.

This is what ``kubectl argo rollouts abort NAME`` does (argo-rollouts
``pkg/kubectl-argo-rollouts/cmd/abort/abort.go``, ``AbortRollout``): a JSON merge patch
``{"status": {"abort": true}}`` on the ``rollouts`` resource (``argoproj.io/v1alpha1``) through its
``status`` subresource, and, where the CRD has no status subresource (controllers before v0.6, the
API answers 404), on the object itself. The Rollout is read first: already aborted is a no-op, and
a fully promoted Rollout (the stable ReplicaSet is the current one) has nothing to abort — that is
refused with the reason rather than reported as a rollback that changed nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diagnostics.response.rollback.contracts import Action, ActionError, Plan, State
from diagnostics.response.rollback.kubernetes import api_client_for, api_errors
from diagnostics.runbooks.schemas import ArgoRollback, Target

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"
ABORT_PATCH: dict[str, Any] = {"status": {"abort": True}}
MERGE_PATCH = "application/merge-patch+json"


def rollout_summary(rollout: dict[str, Any]) -> dict[str, Any]:
    """The few status fields a human needs to see what an abort changed."""
    meta, status = rollout.get("metadata", {}), rollout.get("status") or {}
    weights = ((status.get("canary") or {}).get("weights") or {}).get("canary") or {}
    return {
        "namespace": meta.get("namespace"),
        "rollout": meta.get("name"),
        "abort": bool(status.get("abort")),
        "phase": status.get("phase"),
        "stable_rs": status.get("stableRS"),
        "current_pod_hash": status.get("currentPodHash"),
        "canary_weight": weights.get("weight"),
        "message": status.get("message"),
    }


class RolloutDriver:
    """Abort of one Argo Rollout through ``CustomObjectsApi``."""

    method = "argo_rollout"

    def __init__(self, config: ArgoRollback, api_client: Any) -> None:
        from kubernetes import client

        self.config = config
        self.api = client.CustomObjectsApi(api_client)
        self.host = str(getattr(api_client.configuration, "host", "?"))

    @classmethod
    def from_target(
        cls,
        target: Target,
        environ: Mapping[str, str],
        *,
        api_client: Any = None,
        kubeconfig: str | Path | None = None,
    ) -> RolloutDriver:
        """The driver of ``target``'s argo_rollout config, over ``api_client`` or one from
        ``kubeconfig`` (:func:`~diagnostics.response.rollback.kubernetes.api_client_for`)."""
        if not isinstance(target.rollback, ArgoRollback):
            raise ActionError(f"target {target.name} does not use the argo_rollout method")
        return cls(target.rollback, api_client or api_client_for(kubeconfig, environ))

    def secrets(self) -> tuple[str, ...]:
        return ()

    @property
    def _where(self) -> str:
        return f"rollout {self.config.namespace}/{self.config.rollout}"

    def _args(self) -> tuple[str, str, str, str, str]:
        return GROUP, VERSION, self.config.namespace, PLURAL, self.config.rollout

    def read(self) -> State:
        with api_errors(f"reading {self._where}", self.host):
            rollout = self.api.get_namespaced_custom_object(
                *self._args(), _request_timeout=self.config.timeout_s
            )
        if not isinstance(rollout, dict):
            raise ActionError(f"reading {self._where}: the answer is not a JSON object")
        return State(rollout_summary(rollout), rollout)

    def plan(self, action: Action, state: State, promote_to: float | None) -> Plan:
        if action != "rollback":
            raise ActionError(
                "promotion is not supported by the argo_rollout method here: promote with "
                f"`kubectl argo rollouts promote {self.config.rollout} -n {self.config.namespace}`",
                "refused",
            )
        s = state.summary
        desired = {"abort": True}
        if s["abort"]:
            return Plan(False, f"{self._where} is already aborted (phase {s['phase']})", desired)
        if s["stable_rs"] and s["stable_rs"] == s["current_pod_hash"]:
            raise ActionError(
                f"nothing to abort: {self._where} is fully promoted (stable ReplicaSet "
                f"{s['stable_rs']} is the current one); roll back with "
                f"`kubectl argo rollouts undo {self.config.rollout}`",
                "refused",
            )
        return Plan(
            True,
            f"abort {self._where}: traffic back to stable ReplicaSet {s['stable_rs']} "
            f"(canary {s['current_pod_hash']}, weight {s['canary_weight']})",
            desired,
            body=ABORT_PATCH,
            leaves=s["current_pod_hash"],
            reaches=s["stable_rs"],
        )

    def execute(self, plan: Plan) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        timeout = self.config.timeout_s
        with api_errors(f"aborting {self._where}", self.host):
            try:
                patched = self.api.patch_namespaced_custom_object_status(
                    *self._args(), plan.body, _content_type=MERGE_PATCH, _request_timeout=timeout
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                patched = self.api.patch_namespaced_custom_object(
                    *self._args(), plan.body, _content_type=MERGE_PATCH, _request_timeout=timeout
                )
        after = rollout_summary(patched if isinstance(patched, dict) else {})
        if not after["abort"]:
            raise ActionError(f"the abort of {self._where} did not take: status.abort is not true afterwards")
        return after
