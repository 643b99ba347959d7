"""The ``gateway_weight`` method: the gray-release gateway's canary weight (weight 0 is the rollback).

The gateway's admin API (testbed/gateway.py; bearer token):

- ``GET /admin/routing`` -> ``{"canary_weight": 0..100, "strategy": ..., "strategies": [...],
  "updated_at": ..., "sticky_sessions": {...}}``;
- ``PUT /admin/routing`` with ``{"canary_weight": W}`` -> the new state (400 on a bad value).

Only the weight is sent; the strategy is left as it is (weight 0 sends everything to stable whatever
the strategy, header or session). The token is read from the environment variable the target's
rollback config names and lives only in the ``Authorization`` header of the requests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from diagnostics.response.rollback.contracts import Action, ActionError, Plan, State
from diagnostics.runbooks.schemas import GatewayRollback, Target

ROUTING_PATH = "/admin/routing"


def _weight(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class GatewayDriver:
    """Reads and sets the canary weight of ``target.gateway`` through its admin API."""

    method = "gateway_weight"

    def __init__(
        self,
        target: Target,
        config: GatewayRollback,
        environ: Mapping[str, str],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if target.gateway is None:
            raise ActionError(
                f"target {target.name} has no gateway in runbooks/targets.yaml: the gateway_weight "
                "method needs gateway.base_url"
            )
        token = environ.get(config.admin_token_env, "")
        if not token.strip():
            raise ActionError(
                f"the gateway admin token is not set: the environment variable {config.admin_token_env} "
                f"(rollback.admin_token_env of target {target.name}) is empty or missing; set it, e.g. "
                f"`export {config.admin_token_env}=<token>` (the local stack keeps it in "
                ".triage24/secrets.env), or as the Airflow worker's environment"
            )
        self._token = token.strip()
        self._env_name = config.admin_token_env
        self.base_url = str(target.gateway.base_url).rstrip("/")
        self.timeout_s = config.timeout_s
        self._transport = transport

    @classmethod
    def from_target(
        cls,
        target: Target,
        environ: Mapping[str, str],
        *,
        api_client: Any = None,
        kubeconfig: str | Path | None = None,
    ) -> GatewayDriver:
        """The driver of ``target``'s gateway_weight config (the Kubernetes arguments are not used)."""
        if not isinstance(target.rollback, GatewayRollback):
            raise ActionError(f"target {target.name} does not use the gateway_weight method")
        return cls(target, target.rollback, environ)

    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def _request(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.base_url + ROUTING_PATH
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            with httpx.Client(timeout=self.timeout_s, transport=self._transport) as client:
                resp = client.request(method, url, headers=headers, json=body)
        except httpx.TimeoutException:
            raise ActionError(f"the gateway at {url} did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ActionError(f"cannot reach the gateway at {url}: {type(exc).__name__}: {exc}") from None
        if resp.status_code in (401, 403):
            raise ActionError(
                f"the gateway refused the admin token from {self._env_name} (HTTP {resp.status_code} on "
                f"{method} {url}): check that it is the gateway's admin token"
            )
        if resp.status_code == 503:
            raise ActionError(f"the gateway's admin API is not configured (HTTP 503 on {method} {url})")
        if resp.status_code != 200:
            raise ActionError(f"HTTP {resp.status_code} on {method} {url}: {resp.text[:200]}")
        try:
            data = resp.json()
        except ValueError:
            raise ActionError(f"{method} {url} answered a body that is not JSON") from None
        if not isinstance(data, dict) or _weight(data.get("canary_weight")) is None:
            raise ActionError(f"{method} {url} answered without a numeric canary_weight: {str(data)[:200]}")
        return {
            "gateway": self.base_url,
            "canary_weight": _weight(data["canary_weight"]),
            "strategy": data.get("strategy"),
        }

    def read(self) -> State:
        return State(self._request("GET"))

    def plan(self, action: Action, state: State, promote_to: float | None) -> Plan:
        current = state.summary["canary_weight"]
        if action == "rollback":
            desired = 0.0
        else:
            weight = _weight(promote_to)
            if weight is None or not 0 < weight <= 100:
                raise ActionError(
                    f"a gateway promotion needs promote_to, a canary weight in (0, 100]; got {promote_to!r}",
                    "refused",
                )
            desired = weight
        if current == desired:
            return Plan(False, f"the canary weight already is {desired:g}", {"canary_weight": desired})
        return Plan(
            True,
            f"set the canary weight {current:g} -> {desired:g}",
            {"canary_weight": desired},
            body={"canary_weight": desired},
        )

    def execute(self, plan: Plan) -> dict[str, Any]:
        after = self._request("PUT", plan.body)
        if after["canary_weight"] != plan.desired["canary_weight"]:
            raise ActionError(
                f"the gateway answered canary weight {after['canary_weight']:g} after setting "
                f"{plan.desired['canary_weight']:g}"
            )
        return after
