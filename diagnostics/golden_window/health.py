"""Phase-1 check ``health_snapshot``: the health of every version (stable, canary) and the gateway.

Per endpoint: reachable or not, HTTP status, response time, overall status and per-module status
(llm, embedding, multimodal_router, audio_processor: ready / degraded / error), version. A timeout,
a refused connection or a body that is not the expected JSON is a finding about that endpoint, not a
crash. Only when no endpoint answers at all is the snapshot ``insufficient_evidence``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.runbooks.schemas import Endpoint, PriorityMatrix, Severity, Target

CHECK = "health_snapshot"
MODULES = ("llm", "embedding", "multimodal_router", "audio_processor")
MODULE_STATES = ("ready", "degraded", "error")


class EndpointHealth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="stable, canary or gateway")
    url: str
    reachable: bool
    http_status: int | None = None
    latency_ms: float | None = None
    status: str = Field(default="unknown", description="ready / degraded / error / unknown")
    version: str | None = None
    modules: dict[str, str] = Field(default_factory=dict)
    module_details: dict[str, Any] = Field(default_factory=dict)
    models: list[dict[str, Any]] = Field(default_factory=list, description="as the endpoint reports them")
    error: str | None = None


class HealthSnapshot(CheckResult):
    endpoints: list[EndpointHealth] = Field(default_factory=list)

    def endpoint(self, name: str) -> EndpointHealth | None:
        return next((e for e in self.endpoints if e.name == name), None)


def _url(endpoint: Endpoint) -> str:
    return str(endpoint.base_url).rstrip("/") + endpoint.health_path


def fetch_health(name: str, endpoint: Endpoint, client: httpx.Client) -> EndpointHealth:
    """GET one health endpoint; every failure is described in ``error``, never raised."""
    url = _url(endpoint)
    started = time.perf_counter()
    try:
        resp = client.get(url)
    except httpx.HTTPError as exc:
        return EndpointHealth(name=name, url=url, reachable=False, error=f"{type(exc).__name__}: {exc}"[:300])
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    base: dict[str, Any] = {"name": name, "url": url, "reachable": True, "http_status": resp.status_code}
    base["latency_ms"] = latency_ms
    try:
        body = resp.json()
    except ValueError:
        return EndpointHealth(**base, status="error", error=f"HTTP {resp.status_code}, body is not JSON")
    if not isinstance(body, dict):
        return EndpointHealth(**base, status="error", error="health body is not a JSON object")
    status = body.get("status")
    if status not in MODULE_STATES:
        return EndpointHealth(
            **base, status="error", error=f"health 'status' is {status!r}, not ready/degraded/error"
        )
    raw_modules = body.get("modules") or {}
    modules = {str(k): str(v) for k, v in raw_modules.items()} if isinstance(raw_modules, dict) else {}
    details = body.get("module_details") if isinstance(body.get("module_details"), dict) else {}
    models = [m for m in body.get("models") or [] if isinstance(m, dict)]
    error = None if resp.status_code == 200 else f"HTTP {resp.status_code}"
    return EndpointHealth(
        **base,
        status=str(status),
        version=str(body["version"]) if body.get("version") is not None else None,
        modules=modules,
        module_details=details or {},
        models=models,
        error=error,
    )


def snapshot(target: Target, timeout_s: float = 5.0, include_gateway: bool = True) -> list[EndpointHealth]:
    """Health of every version of ``target`` and its gateway (stable first)."""
    endpoints: list[tuple[str, Endpoint]] = sorted(target.versions.items(), key=lambda kv: kv[0] != "stable")
    if target.gateway is not None and include_gateway:
        endpoints.append(("gateway", target.gateway))
    with httpx.Client(timeout=timeout_s) as client:
        return [fetch_health(name, ep, client) for name, ep in endpoints]


def _findings(endpoints: list[EndpointHealth], matrix: PriorityMatrix) -> list[Finding]:
    unreachable, unhealthy = matrix.get("service_unreachable"), matrix.get("module_unhealthy")
    findings: list[Finding] = []
    for ep in endpoints:
        version = None if ep.name == "gateway" else ep.name
        if (not ep.reachable or ep.error) and unreachable is not None:
            what = "does not answer" if not ep.reachable else "answers badly"
            findings.append(
                Finding.from_problem(
                    unreachable,
                    CHECK,
                    f"{ep.name} health at {ep.url} {what}: {ep.error}",
                    version=version,
                    # a version that does not answer is its processes' or pods' problem
                    component="gateway" if ep.name == "gateway" else "infrastructure",
                )
            )
            continue
        for module in MODULES:
            state = ep.modules.get(module)
            if state in ("degraded", "error") and unhealthy is not None:
                detail = ep.module_details.get(module)
                finding = Finding.from_problem(
                    unhealthy,
                    CHECK,
                    f"{ep.name} reports {module} {state}" + (f": {str(detail)[:200]}" if detail else ""),
                    version=version,
                    component=module,
                )
                if state == "degraded":  # an error is as severe as the matrix says; degraded is less
                    finding = finding.model_copy(update={"severity": Severity.MEDIUM})
                findings.append(finding)
            elif ep.name != "gateway" and state is None:
                findings.append(
                    Finding(
                        check=CHECK,
                        problem="module_missing",
                        severity="medium",
                        component=module,
                        title="A module is missing from the health report",
                        evidence=f"{ep.name} health names no status for {module}",
                        version=version,
                    )
                )
    return findings


def check_health(target: Target, matrix: PriorityMatrix, timeout_s: float = 5.0) -> HealthSnapshot:
    """The ``health_snapshot`` check: ok when every endpoint answers ``ready``."""
    endpoints = snapshot(target, timeout_s)
    findings = _findings(endpoints, matrix)
    answered = [e for e in endpoints if e.reachable]
    line = ", ".join(f"{e.name} {e.status if e.reachable else 'unreachable'}" for e in endpoints)
    if not answered:
        status = Status.INSUFFICIENT_EVIDENCE
        summary = f"no health endpoint of {target.name} answered: {line}"
    elif any(f.severity in ("critical", "high") for f in findings):
        status, summary = Status.FAILED, f"{target.name}: {line}"
    elif findings:
        status, summary = Status.DEGRADED, f"{target.name}: {line}"
    else:
        status, summary = Status.OK, f"{target.name}: {line}"
    return HealthSnapshot(
        check=CHECK,
        status=status,
        summary=summary,
        details={"target": target.name, "answered": len(answered), "endpoints": len(endpoints)},
        findings=findings,
        endpoints=endpoints,
    )
