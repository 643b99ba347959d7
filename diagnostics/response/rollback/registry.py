"""Which driver carries out which rollback method of runbooks/targets.yaml.

:data:`DRIVERS` is the table, method name (``rollback.method``) to driver class; each class builds
itself from a target with ``from_target``. Adding a method is a driver module and one line here.
:func:`driver_for` is what :func:`diagnostics.response.rollback.base.apply` (and anything that only
reads a service's state) calls. This module imports the drivers and the contracts, never ``base``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from diagnostics.response.rollback.argo import RolloutDriver
from diagnostics.response.rollback.contracts import ActionError, Driver
from diagnostics.response.rollback.gateway import GatewayDriver
from diagnostics.response.rollback.kubernetes import DeploymentDriver
from diagnostics.runbooks.schemas import Target


class DriverClass(Protocol):
    """A driver class as the registry uses it: built from a target and the worker's environment."""

    def from_target(
        self,
        target: Target,
        environ: Mapping[str, str],
        *,
        api_client: Any = None,
        kubeconfig: str | Path | None = None,
    ) -> Driver: ...


DRIVERS: Mapping[str, DriverClass] = {
    "gateway_weight": GatewayDriver,
    "kubernetes_deployment": DeploymentDriver,
    "argo_rollout": RolloutDriver,
}


def driver_for(
    target: Target,
    environ: Mapping[str, str],
    *,
    api_client: Any = None,
    kubeconfig: str | Path | None = None,
) -> Driver:
    """The driver of the target's rollback method; raises :class:`ActionError` on missing config.

    ``api_client`` (a ``kubernetes.client.ApiClient``) or ``kubeconfig`` configure the Kubernetes
    methods; the gateway method ignores them.
    """
    method = target.rollback.method
    driver_class = DRIVERS.get(method)
    if driver_class is None:  # pragma: no cover - the targets.yaml schema allows only known methods
        raise ActionError(f"unknown rollback method {method!r}")
    return driver_class.from_target(target, environ, api_client=api_client, kubeconfig=kubeconfig)
