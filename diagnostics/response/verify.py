"""Recovery verification after a rollback: poll a probe until the service is recovered N times in a row.

A rollback that was sent is not a rollback that worked: the stable version may be unhealthy too, the
gateway may not have taken the weight, or the errors may come from something both versions share.
:func:`verify_recovery` polls a probe every ``interval_s`` until ``required_consecutive`` samples in
a row say "recovered" (one good sample can be luck; a streak is evidence), or ``timeout_s`` passes:
then the result is ``failed`` with ``escalate=True`` — the incident goes to a human. Not recovered is
an outcome, not an error: :func:`explain_recovery` names each part that stays bad, its value now and
before the rollback (phase 1's ``metrics_sla``), and calls it ``capacity`` where stable was within
the gate before and breaches only since it took the canary's share of the traffic.

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

from diagnostics.golden_window.canary_gate import fmt_gate_value
from diagnostics.golden_window.health import fetch_health
from diagnostics.incident.results import CheckResult, Status
from diagnostics.response.rollback.contracts import ActionError
from diagnostics.runbooks.schemas import Channel, GatewayRollback, Target, Thresholds
from diagnostics.sources.prometheus import PrometheusError, Reader, collect_window

CHECK: Literal["recovery_verification"] = "recovery_verification"
PartState = Literal["ok", "bad", "unknown"]
Verdict = Literal["recovered", "capacity", "not_recovered"]
Cause = Literal["capacity", "already_bad", "new_breach", "unknown"]
GateName = Literal["p99_latency_ms", "error_rate", "rate_5xx"]
# A version "took the canary's share" when its request rate rose by at least this part of the
# canary's rate before the rollback: traffic noise is smaller, a real shift is close to all of it.
SHARE_TAKEN = 0.5


class ProbePart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="e.g. stable_health, canary_weight, stable_error_rate")
    state: PartState
    detail: str = ""
    value: float | None = None
    # What a metric part judged, so a part that stays bad can be set against phase 1's figures.
    version: str | None = None
    channel: Channel | None = Field(default=None, description="None: over every channel")
    gate: GateName | None = None
    limit: float | None = None
    rate_rps: float | None = Field(default=None, description="the version's requests/s in the window")


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


class StillBad(BaseModel):
    """A part of the last sample that is not ok, with its value now and before the rollback."""

    model_config = ConfigDict(extra="forbid")

    part: str
    state: PartState
    version: str | None = None
    channel: Channel | None = None
    gate: GateName | None = None
    limit: float | None = None
    value_now: float | None = None
    value_before: float | None = Field(default=None, description="phase 1's value (metrics_sla)")
    rate_rps_now: float | None = None
    rate_rps_before: float | None = None
    canary_rate_rps_before: float | None = None
    not_ok_samples: int = Field(description="samples in which this part was not ok")
    cause: Cause
    evidence: str


class RecoveryResult(CheckResult):
    check: Literal["recovery_verification"] = CHECK
    recovered: bool
    escalate: bool
    verdict: Verdict | None = Field(
        default=None,
        description="recovered; capacity (every bad part only from the canary's share); not_recovered",
    )
    samples_recovered: int = Field(default=0, description="samples in which every part was ok")
    not_ok_counts: dict[str, int] = Field(default_factory=dict, description="part -> samples not ok")
    still_bad: list[StillBad] = Field(default_factory=list, description="the last sample's parts not ok")
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


def _still_bad(part: ProbePart, not_ok: Mapping[str, int]) -> StillBad:
    return StillBad(
        part=part.name,
        state=part.state,
        version=part.version,
        channel=part.channel,
        gate=part.gate,
        limit=part.limit,
        value_now=part.value,
        rate_rps_now=part.rate_rps,
        not_ok_samples=not_ok.get(part.name, 0),
        cause="unknown",
        evidence=f"{part.name} {part.state}" + (f" ({part.detail})" if part.detail else ""),
    )


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
    streak, streak_start, index, good = 0, 0.0, 0, 0
    not_ok: dict[str, int] = {}
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
        good += last.recovered
        for p in last.parts:
            if p.state != "ok":
                not_ok[p.name] = not_ok.get(p.name, 0) + 1
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
            f"not recovered within {timeout_s:g} s ({index} samples, {good} good, never "
            f"{required_consecutive} good ones in a row); escalate to a human. "
            f"Last sample: {last.line() or 'no parts'}"
        )
    return RecoveryResult(
        status=Status.OK if recovered else Status.FAILED,
        summary=summary,
        recovered=recovered,
        escalate=not recovered,
        verdict="recovered" if recovered else "not_recovered",
        samples_recovered=good,
        not_ok_counts=not_ok,
        still_bad=[] if recovered else [_still_bad(p, not_ok) for p in last.parts if p.state != "ok"],
        time_to_recover_s=round(streak_start, 3) if recovered else None,
        confirmed_after_s=round(t, 3) if recovered else None,
        elapsed_s=round(t, 3),
        required_consecutive=required_consecutive,
        timeout_s=timeout_s,
        interval_s=interval_s,
        samples_total=index,
        samples=samples,
    )


# --- not recovered: what stays bad, against its value before the rollback ---------------------------


class _Window(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str
    channel: Channel
    window_s: float = Field(gt=0)
    requests: float = 0.0
    errors: float = 0.0
    errors_5xx: float = 0.0
    latency_ms: dict[str, float | None] = Field(default_factory=dict)

    @property
    def rate_rps(self) -> float:
        return self.requests / self.window_s


class _ChannelRow(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str
    channel: Channel
    current: _Window


class Phase1Metrics(BaseModel):
    """The figures of phase 1's stored ``metrics_sla`` that recovery compares with (read leniently:
    the stored result carries far more, and its computed fields do not read back into its model)."""

    model_config = ConfigDict(extra="ignore")

    channels: list[_ChannelRow] = Field(default_factory=list)


def _where(bad: StillBad) -> str:
    channel = bad.channel.value if bad.channel is not None else "all channels"
    return f"{bad.version or 'stable'} {channel} {bad.gate}"


def _phase1_figures(before: Phase1Metrics, bad: StillBad) -> tuple[float | None, float | None, float]:
    """(the gate's value, the version's requests/s, the canary's requests/s) in phase 1's window."""
    rows = [c.current for c in before.channels if bad.channel is None or c.channel == bad.channel]
    mine = [w for w in rows if w.version == (bad.version or "stable")]
    canary_rps = sum(w.rate_rps for w in rows if w.version == "canary")
    rps = sum(w.rate_rps for w in mine) if mine else None
    requests = sum(w.requests for w in mine)
    value: float | None = None
    if bad.gate == "p99_latency_ms":
        value = mine[0].latency_ms.get("p99") if len(mine) == 1 and mine[0].requests > 0 else None
    elif requests > 0:
        count = sum(w.errors if bad.gate == "error_rate" else w.errors_5xx for w in mine)
        value = min(1.0, count / requests)
    return value, rps, canary_rps


def _explain(bad: StillBad, before: Phase1Metrics | None, missing: str) -> StillBad:
    """The part's cause, from phase 1's figures: capacity (within the gate before, breaching since
    its traffic took the canary's share), already_bad, new_breach (within it before, no more
    traffic), or unknown (no figure to compare)."""
    if bad.state != "bad" or bad.gate is None or bad.limit is None:
        return bad
    if before is None:
        return bad.model_copy(update={"evidence": f"{bad.evidence}; {missing}"})
    value, rps, canary_rps = _phase1_figures(before, bad)
    limit = fmt_gate_value(bad.gate, bad.limit)
    now = f"{_where(bad)} {fmt_gate_value(bad.gate, bad.value_now)} > gate {limit}"
    update: dict[str, object] = {
        "value_before": value,
        "rate_rps_before": rps,
        "canary_rate_rps_before": canary_rps,
    }
    if value is None:
        cause: Cause = "unknown"
        evidence = f"{now}; phase 1 has no {_where(bad)} value to compare"
    elif value > bad.limit:
        cause = "already_bad"
        evidence = (
            f"{now}; already over it before the rollback ({fmt_gate_value(bad.gate, value)}): "
            "not the canary's fault alone"
        )
    else:
        rose = (
            rps is not None
            and bad.rate_rps_now is not None
            and canary_rps > 0
            and bad.rate_rps_now - rps >= SHARE_TAKEN * canary_rps
        )
        cause = "capacity" if rose else "new_breach"
        was = f"within it before the rollback ({fmt_gate_value(bad.gate, value)} at {rps or 0:.2f} req/s)"
        traffic = f"now {bad.rate_rps_now or 0:.2f} req/s"
        evidence = (
            f"{now}; {was}, {traffic} after taking the canary's {canary_rps:.2f} req/s: a capacity problem"
            if rose
            else f"{now}; {was}, {traffic} without the canary's share ({canary_rps:.2f} req/s): "
            "a new breach since the rollback"
        )
    return bad.model_copy(update={**update, "cause": cause, "evidence": evidence})


def explain_recovery(
    result: RecoveryResult, before: Phase1Metrics | None, missing: str = "no phase-1 metrics to compare"
) -> RecoveryResult:
    """``result`` with each part that stays bad set against phase 1's ``metrics_sla`` (``before``; None:
    ``missing`` says why) and the verdict: ``capacity`` when every part that stays bad is a capacity
    breach, else ``not_recovered``. A recovered result is returned as it is."""
    if result.recovered:
        return result
    explained = [_explain(b, before, missing) for b in result.still_bad]
    capacity = bool(explained) and all(b.cause == "capacity" for b in explained)
    verdict: Verdict = "capacity" if capacity else "not_recovered"
    bad = "; ".join(b.evidence for b in explained) or "no part named"
    # the still-bad parts, with their causes, say what the last sample's line said and more
    summary = result.summary.split(" Last sample: ")[0] + f" Verdict {verdict}: {bad}"
    details = {**result.details, "phase1_metrics": "golden_window/metrics_sla" if before else missing}
    return result.model_copy(
        update={"still_bad": explained, "verdict": verdict, "summary": summary, "details": details}
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
    rps = requests / window_s
    shares: tuple[tuple[str, GateName, float, float], ...] = (
        ("stable_error_rate", "error_rate", sum(s.errors for s in stable), gates.error_rate),
        ("stable_5xx_rate", "rate_5xx", sum(s.errors_5xx for s in stable), gates.rate_5xx),
    )
    for name, gate_name, count, limit in shares:
        rate = min(1.0, count / requests)
        parts.append(
            ProbePart(
                name=name,
                state="ok" if rate <= limit else "bad",
                detail=f"{rate:.2%} of {requests:.0f} requests (limit {limit:.2%})",
                value=rate,
                version="stable",
                gate=gate_name,
                limit=limit,
                rate_rps=rps,
            )
        )
    for s in stable:
        if s.requests <= 0:
            continue
        p99, gate = s.latency(0.99), gates.p99_gate_ms(Channel(s.channel))
        state: PartState = "unknown" if p99 is None else "ok" if p99 <= gate else "bad"
        parts.append(
            ProbePart(
                name=f"stable_p99_{s.channel.value}",
                state=state,
                detail="no latency data"
                if p99 is None
                else f"{p99:.0f} ms (gate {gate:g} ms) at {s.rate_rps:.2f} req/s",
                value=p99,
                version="stable",
                channel=s.channel,
                gate="p99_latency_ms",
                limit=gate,
                rate_rps=s.rate_rps,
            )
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
