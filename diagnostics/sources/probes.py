"""Reachability of the pipeline's evidence sources (Prometheus, Alertmanager, target services).

An unreachable source is evidence, not a crash: it yields ``insufficient_evidence`` with the reason.
"""

from __future__ import annotations

import time

import httpx

from diagnostics.incident.results import CheckResult, Status


class ProbeResult(CheckResult):
    url: str
    http_status: int | None = None
    latency_ms: float | None = None


def probe_http(name: str, url: str, timeout_s: float = 3.0) -> ProbeResult:
    """GET ``url``: 2xx is ok, another status is degraded, no answer is insufficient evidence."""
    started = time.perf_counter()
    try:
        resp = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return ProbeResult(
            check=f"probe:{name}",
            status=Status.INSUFFICIENT_EVIDENCE,
            summary=f"{name} unreachable at {url}: {type(exc).__name__}",
            url=url,
        )
    latency_ms = (time.perf_counter() - started) * 1000
    ok = 200 <= resp.status_code < 300
    return ProbeResult(
        check=f"probe:{name}",
        status=Status.OK if ok else Status.DEGRADED,
        summary=f"{name} answered HTTP {resp.status_code} in {latency_ms:.0f} ms",
        url=url,
        http_status=resp.status_code,
        latency_ms=round(latency_ms, 1),
    )
