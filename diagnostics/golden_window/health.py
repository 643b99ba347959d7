"""Phase-1 check ``health_snapshot``: the health of every version (stable, canary) and the gateway.

Per endpoint: reachable or not, HTTP status, response time, overall status and per-module status
(llm, embedding, multimodal_router, audio_processor: ready / degraded / error), version.

A failed GET (timeout, refused connection, a body that is not the expected JSON, an HTTP error) is
never a crash, and alone it is not a verdict either: ``service_unreachable`` is critical and rolls a
canary back with no human, so one lost packet must not do that. A failed GET is retried (tenacity)
(``thresholds.yaml`` ``health_confirmation``: ``tries`` GETs, ``backoff_s`` doubling, no retry later
than ``window_s`` after the first; a healthy first GET costs nothing more), and a failure that
survives the retries needs a second signal (:mod:`.health_confirm`: Prometheus ``up``, the gateway's
upstream errors). Per endpoint, ``reachability``:

- ``answered`` / ``recovered``: the first GET / a retry answered (a version that answered once is not
  unreachable); its modules are judged as reported;
- ``confirmed_down``: every try failed and a second signal agrees -> a critical ``service_unreachable``;
- ``unconfirmed``: every try failed and no second signal agrees (Prometheus unreachable, ``up`` = 1,
  nothing recorded) -> no finding, and the check is ``insufficient_evidence``, with the tries, their
  errors and the second signal's reading in the summary and the endpoint's ``confirmation``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_exponential

from diagnostics.golden_window.health_confirm import Confirmation, Witness
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.runbooks.schemas import Endpoint, HealthConfirmation, PriorityMatrix, Severity, Target
from diagnostics.sources.prometheus import Reader
from diagnostics.sources.retry import StopPast

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
    tries: int = Field(default=1, description="GETs made: 1 plus the retries after failed ones")
    elapsed_ms: float | None = Field(default=None, description="all tries together, pauses included")
    try_errors: list[str] = Field(default_factory=list, description="each failed try's error, in order")
    reachability: Literal["answered", "recovered", "confirmed_down", "unconfirmed"] | None = Field(
        default=None, description="after retries and the second signal (module docstring); None: one GET"
    )
    confirmation: Confirmation | None = Field(
        default=None, description="the second signal's reading, for an endpoint that failed every try"
    )

    @property
    def failed(self) -> bool:
        """This GET did not give a usable healthy answer (no answer, bad body, HTTP error)."""
        return not self.reachable or self.error is not None


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


def fetch_with_retries(
    name: str,
    endpoint: Endpoint,
    client: httpx.Client,
    conf: HealthConfirmation,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> EndpointHealth:
    """:func:`fetch_health`, retried while it fails: at most ``conf.tries`` GETs, pausing
    ``backoff_s`` (doubling) between them, none started later than ``conf.window_s`` after the first
    (so the worst case is about ``window_s`` plus one timeout). The last answer is returned with the
    tries, the elapsed time and every failed try's error; ``reachability`` is ``answered``,
    ``recovered`` or (every try failed, before any second signal) ``unconfirmed``. ``sleep`` pauses
    between tries (tests record it)."""
    started = time.monotonic()
    errors: list[str] = []
    tries = 0

    def attempt() -> EndpointHealth:
        nonlocal tries
        tries += 1
        answer = fetch_health(name, endpoint, client)
        if answer.failed:
            errors.append(answer.error or "no usable answer")
        return answer

    retrying = Retrying(
        retry=retry_if_result(lambda answer: answer.failed),
        stop=stop_after_attempt(conf.tries) | StopPast(conf.window_s),
        wait=wait_exponential(multiplier=conf.backoff_s),  # backoff_s, then doubling
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    result: EndpointHealth = retrying(attempt)
    reachability = "unconfirmed" if result.failed else "answered" if tries == 1 else "recovered"
    return result.model_copy(
        update={
            "tries": tries,
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            "try_errors": errors,
            "reachability": reachability,
        }
    )


def snapshot(
    target: Target,
    timeout_s: float = 5.0,
    include_gateway: bool = True,
    conf: HealthConfirmation | None = None,
) -> list[EndpointHealth]:
    """Health of every version of ``target`` and its gateway (stable first), each GET retried while
    it fails (``conf``, default :class:`HealthConfirmation`); the endpoints are read in parallel so
    one dead endpoint's retries do not delay the others."""
    conf = conf or HealthConfirmation()
    endpoints: list[tuple[str, Endpoint]] = sorted(target.versions.items(), key=lambda kv: kv[0] != "stable")
    if target.gateway is not None and include_gateway:
        endpoints.append(("gateway", target.gateway))
    with httpx.Client(timeout=timeout_s) as client, ThreadPoolExecutor(len(endpoints)) as pool:
        return list(pool.map(lambda ne: fetch_with_retries(ne[0], ne[1], client, conf), endpoints))


def _tries_line(ep: EndpointHealth) -> str:
    """'3 tries in 1.5 s: ConnectError: ... (×3)': the failed tries' errors, repeats counted."""
    seconds = (ep.elapsed_ms or 0.0) / 1000
    counted = Counter(e[:160] for e in ep.try_errors)
    errors = "; ".join(e + (f" (×{n})" if n > 1 else "") for e, n in counted.items())
    return f"{ep.tries} {'try' if ep.tries == 1 else 'tries'} in {seconds:.1f} s: {errors}"


def _findings(endpoints: list[EndpointHealth], matrix: PriorityMatrix) -> list[Finding]:
    unreachable, unhealthy = matrix.get("service_unreachable"), matrix.get("module_unhealthy")
    findings: list[Finding] = []
    for ep in endpoints:
        version = None if ep.name == "gateway" else ep.name
        if ep.reachability == "confirmed_down":
            if unreachable is not None:
                what = "does not answer" if not ep.reachable else "answers badly"
                reason = ep.confirmation.reason if ep.confirmation else ""
                findings.append(
                    Finding.from_problem(
                        unreachable,
                        CHECK,
                        f"{ep.name} health at {ep.url} {what} after {_tries_line(ep)}; {reason}",
                        version=version,
                        # a version that does not answer is its processes' or pods' problem
                        component="gateway" if ep.name == "gateway" else "infrastructure",
                    )
                )
            continue
        if ep.failed and not ep.modules:
            continue  # nothing reported to judge; unconfirmed, it makes the check insufficient evidence
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


def _state(ep: EndpointHealth) -> str:
    if ep.reachability == "confirmed_down":
        return f"{ep.name} unreachable (confirmed)"
    if ep.reachability == "unconfirmed":
        return f"{ep.name} failing (unconfirmed)"
    if ep.reachability == "recovered":
        return f"{ep.name} {ep.status} (after {ep.tries} tries)"
    return f"{ep.name} {ep.status if ep.reachable else 'unreachable'}"


def confirm(endpoints: list[EndpointHealth], witness: Witness) -> list[EndpointHealth]:
    """Ask the second signal about every endpoint that failed all its tries (and only those)."""
    out = []
    for ep in endpoints:
        if ep.reachability == "unconfirmed":
            c = witness.confirm(ep.name)
            reachability = "confirmed_down" if c.confirmed else "unconfirmed"
            ep = ep.model_copy(update={"confirmation": c, "reachability": reachability})
        out.append(ep)
    return out


def assess(target: Target, endpoints: list[EndpointHealth], matrix: PriorityMatrix) -> HealthSnapshot:
    """The snapshot's findings and status from confirmed endpoints (pure; the unit tests' entry point).

    Status: any endpoint ``unconfirmed`` -> ``insufficient_evidence`` (the check cannot vouch for it,
    whatever else it found; its findings still stand); else a critical or high finding -> ``failed``;
    another finding -> ``degraded``; else ``ok``.
    """
    findings = _findings(endpoints, matrix)
    line = ", ".join(_state(e) for e in endpoints)
    unconfirmed = [e for e in endpoints if e.reachability == "unconfirmed"]
    if unconfirmed:
        status = Status.INSUFFICIENT_EVIDENCE
        lead = f"no health endpoint of {target.name} answered" if all(e.failed for e in endpoints) else ""
        why = "; ".join(
            f"{e.name}: {_tries_line(e)}; {e.confirmation.reason if e.confirmation else 'not confirmed'}"
            for e in unconfirmed
        )
        summary = f"{lead or target.name}: {line}; unconfirmed, insufficient evidence - {why}"
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
        details={
            "target": target.name,
            "answered": sum(1 for e in endpoints if e.reachable),
            "endpoints": len(endpoints),
            "confirmed_down": [e.name for e in endpoints if e.reachability == "confirmed_down"],
            "unconfirmed": [e.name for e in unconfirmed],
        },
        findings=findings,
        endpoints=endpoints,
    )


def check_health(
    target: Target,
    matrix: PriorityMatrix,
    timeout_s: float = 5.0,
    conf: HealthConfirmation | None = None,
    reader: Reader | None = None,
) -> HealthSnapshot:
    """The ``health_snapshot`` check: ok when every endpoint answers ``ready``. ``reader`` is the
    Prometheus the second signal is read from (None: no second signal, so no failure is confirmed)."""
    conf = conf or HealthConfirmation()
    endpoints = snapshot(target, timeout_s, conf=conf)
    endpoints = confirm(endpoints, Witness(reader, target, conf, datetime.now(UTC)))
    return assess(target, endpoints, matrix)
