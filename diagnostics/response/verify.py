"""Recovery verification after a rollback: poll a probe until the service is recovered N times in a row.

A rollback that was sent is not a rollback that worked: the stable version may be unhealthy too, the
gateway may not have taken the weight, or the errors may come from something both versions share.
:func:`verify_recovery` polls a probe every ``interval_s`` until ``required_consecutive`` samples in
a row say "recovered" (one good sample can be luck; a streak is evidence), or ``timeout_s`` passes:
then the result is ``failed`` with ``escalate=True`` — the incident goes to a human.

A probe is a list of parts, each ``ok``, ``bad`` or ``unknown``; a sample is recovered only when every
part is ``ok``. ``unknown`` (Prometheus unreachable, no traffic to judge, a probe that crashed) is
never counted as recovered — missing data cannot close an incident — but it is not a crash either.

:func:`gateway_probe` builds the probe for a target behind the gray-release gateway from its parts:
the stable version's health (diagnostics/golden_window/health.py), the canary weight at the gateway (0 after a
rollback), and optionally the stable version's recent error rate, 5xx rate and p99 latency from
Prometheus (diagnostics/metrics) against the target's canary gates in runbooks/thresholds.yaml — the
same limits whose breach triggers the fast-path rollback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, computed_field

from diagnostics.golden_window.health import fetch_health
from diagnostics.incident.results import CheckResult, Status
from diagnostics.response.rollback.contracts import ActionError
from diagnostics.runbooks.schemas import Channel, GatewayRollback, Target, Thresholds
from diagnostics.sources.prometheus import PrometheusError, Reader, collect_window

CHECK: Literal["recovery_verification"] = "recovery_verification"
PartState = Literal["ok", "bad", "unknown"]


class ProbePart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="e.g. stable_health, canary_weight, stable_error_rate")
    state: PartState
    detail: str = ""
    value: float | None = None


class RecoveryProbe(BaseModel):
    """One reading of the service: recovered only when every part is ok (and there is one)."""

    model_config = ConfigDict(extra="forbid")

    parts: list[ProbePart] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def recovered(self) -> bool:
        return bool(self.parts) and all(p.state == "ok" for p in self.parts)

    def line(self) -> str:
        return ", ".join(f"{p.name} {p.state}" + (f" ({p.detail})" if p.detail else "") for p in self.parts)


class ProbeSample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    t_s: float = Field(description="seconds since the verification started")
    recovered: bool
    parts: list[ProbePart]


class RecoveryResult(CheckResult):
    check: Literal["recovery_verification"] = CHECK
    recovered: bool
    escalate: bool
    time_to_recover_s: float | None = Field(
        default=None, description="from the start to the first sample of the recovered streak"
    )
    confirmed_after_s: float | None = Field(default=None, description="from the start to the last sample")
    elapsed_s: float
    required_consecutive: int
    timeout_s: float
    interval_s: float
    samples_total: int
    samples: list[ProbeSample] = Field(
        default_factory=list, description="the first and the latest samples, at most max_samples"
    )


def _keep(samples: list[ProbeSample], sample: ProbeSample, max_samples: int) -> None:
    """Keep the first half and the latest half of at most ``max_samples``: the start and the end."""
    samples.append(sample)
    if len(samples) > max_samples:
        del samples[max_samples // 2]


def verify_recovery(
    probe: Callable[[], RecoveryProbe],
    *,
    timeout_s: float,
    interval_s: float,
    required_consecutive: int = 3,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    max_samples: int = 120,
) -> RecoveryResult:
    """Poll ``probe`` until ``required_consecutive`` recovered samples in a row, or ``timeout_s``.

    ``clock`` and ``sleep`` are injectable (tests pass a fake clock whose sleep advances it). A probe
    that raises counts as an ``unknown`` sample.
    """
    if timeout_s <= 0 or interval_s <= 0 or required_consecutive < 1 or max_samples < 2:
        raise ValueError("timeout_s and interval_s must be > 0, required_consecutive >= 1, max_samples >= 2")
    start = clock()
    samples: list[ProbeSample] = []
    streak, streak_start, index = 0, 0.0, 0
    while True:
        try:
            last = probe()
        except Exception as exc:  # a probe bug or an unexpected answer is missing data, not a crash
            last = RecoveryProbe(
                parts=[ProbePart(name="probe", state="unknown", detail=f"{type(exc).__name__}: {exc}"[:300])]
            )
        t = clock() - start
        sample = ProbeSample(index=index, t_s=round(t, 3), recovered=last.recovered, parts=last.parts)
        _keep(samples, sample, max_samples)
        index += 1
        streak_start = streak_start if streak and last.recovered else t
        streak = streak + 1 if last.recovered else 0
        recovered = streak >= required_consecutive
        if recovered or timeout_s - (clock() - start) <= 0:
            break
        sleep(min(interval_s, timeout_s - (clock() - start)))
    if recovered:
        summary = (
            f"recovered after {streak_start:.1f} s ({required_consecutive} good samples in a row, "
            f"confirmed at {t:.1f} s): {last.line()}"
        )
    else:
        summary = (
            f"not recovered within {timeout_s:g} s ({index} samples, never {required_consecutive} good ones "
            f"in a row); escalate to a human. Last sample: {last.line() or 'no parts'}"
        )
    return RecoveryResult(
        status=Status.OK if recovered else Status.FAILED,
        summary=summary,
        recovered=recovered,
        escalate=not recovered,
        time_to_recover_s=round(streak_start, 3) if recovered else None,
        confirmed_after_s=round(t, 3) if recovered else None,
        elapsed_s=round(t, 3),
        required_consecutive=required_consecutive,
        timeout_s=timeout_s,
        interval_s=interval_s,
        samples_total=index,
        samples=samples,
    )


# --- the probe of a target behind the gray-release gateway ----------------------------------------


def stable_health_part(target: Target, timeout_s: float) -> ProbePart:
    """The stable version's health endpoint answers ``ready``."""
    with httpx.Client(timeout=timeout_s) as client:
        health = fetch_health("stable", target.versions["stable"], client)
    if not health.reachable:
        return ProbePart(name="stable_health", state="bad", detail=f"unreachable: {health.error}")
    if health.status != "ready" or health.error:
        bad = ", ".join(f"{m} {s}" for m, s in health.modules.items() if s != "ready")
        detail = (
            f"{health.status}" + (f": {bad}" if bad else "") + (f" ({health.error})" if health.error else "")
        )
        return ProbePart(name="stable_health", state="bad", detail=detail)
    return ProbePart(name="stable_health", state="ok", detail="ready")


def canary_weight_part(target: Target, environ: Mapping[str, str]) -> ProbePart | None:
    """The gateway sends nothing to the canary (weight 0); None where the target has no gateway method."""
    if not isinstance(target.rollback, GatewayRollback):
        return None
    from diagnostics.response.rollback.gateway import GatewayDriver

    try:
        weight = GatewayDriver(target, target.rollback, environ).read().summary["canary_weight"]
    except ActionError as exc:
        return ProbePart(name="canary_weight", state="unknown", detail=exc.reason)
    state: PartState = "ok" if weight == 0 else "bad"
    return ProbePart(name="canary_weight", state=state, detail=f"{weight:g}", value=weight)


def stable_metrics_parts(
    target: Target,
    thresholds: Thresholds,
    reader: Reader,
    end: datetime,
    window_s: float,
    min_requests: int,
) -> list[ProbePart]:
    """Error rate, 5xx rate and per-channel p99 of the stable version over the last ``window_s``."""
    gates = thresholds.gates_for(target.name)
    try:
        grid = collect_window(reader, target, end, window_s, quantiles=(0.99,), with_buckets=False)
    except PrometheusError as exc:
        return [ProbePart(name="stable_metrics", state="unknown", detail=exc.reason)]
    stable = [stats for (version, _), stats in grid.items() if version == "stable"]
    requests = sum(s.requests for s in stable)
    if requests < min_requests:
        return [
            ProbePart(
                name="stable_metrics",
                state="unknown",
                detail=f"{requests:.0f} requests in {window_s:g} s, under {min_requests}: nothing to judge",
                value=requests,
            )
        ]
    parts: list[ProbePart] = []
    for name, count, limit in (
        ("stable_error_rate", sum(s.errors for s in stable), gates.error_rate),
        ("stable_5xx_rate", sum(s.errors_5xx for s in stable), gates.rate_5xx),
    ):
        rate = min(1.0, count / requests)
        parts.append(
            ProbePart(
                name=name,
                state="ok" if rate <= limit else "bad",
                detail=f"{rate:.2%} of {requests:.0f} requests (limit {limit:.2%})",
                value=rate,
            )
        )
    for s in stable:
        if s.requests <= 0:
            continue
        p99, gate = s.latency(0.99), gates.p99_gate_ms(Channel(s.channel))
        name = f"stable_p99_{s.channel.value}"
        if p99 is None:
            parts.append(ProbePart(name=name, state="unknown", detail="no latency data"))
        else:
            state: PartState = "ok" if p99 <= gate else "bad"
            parts.append(
                ProbePart(name=name, state=state, detail=f"{p99:.0f} ms (gate {gate:g} ms)", value=p99)
            )
    return parts


def gateway_probe(
    target: Target,
    thresholds: Thresholds,
    reader: Reader | None,
    timeout_s: float = 5.0,
    *,
    environ: Mapping[str, str] = os.environ,
    window_s: float = 60.0,
    min_requests: int = 10,
    now: Callable[[], datetime] | None = None,
) -> Callable[[], RecoveryProbe]:
    """The probe of ``target``: stable healthy, canary weight 0 at the gateway (where the rollback
    method is the gateway's) and, with a ``reader``, the stable version's traffic of the last
    ``window_s`` under the target's canary gates. ``now`` is the wall clock of the metrics window."""
    clock = now or (lambda: datetime.now(UTC))

    def probe() -> RecoveryProbe:
        parts = [stable_health_part(target, timeout_s)]
        weight = canary_weight_part(target, environ)
        if weight is not None:
            parts.append(weight)
        if reader is not None:
            parts.extend(stable_metrics_parts(target, thresholds, reader, clock(), window_s, min_requests))
        return RecoveryProbe(parts=parts)

    return probe
