"""Phase-1 check ``metrics_sla``: Prometheus metrics per channel and version against the SLA, the
dynamic thresholds and the canary gates.

For every channel (text, image, audio, router) and version (stable, canary), over the alert window
and a reference window of the same length just before it: requests, requests/s, error and 5xx
rates, p50/p99/p99.9/p99.99 latency, a gamma fit of the latency histogram, and GPU memory where
exported. Breaches become findings with the numbers behind them.

Dynamic thresholds (``dynamic`` in thresholds.yaml) take their latency baseline from the stable
version's reference window (known good; the version's own when stable had no traffic there) and
their load from the version itself; see :func:`dynamic_threshold`.

Canary gate rule (``gates_for(target)``; ``S = sustained_s``), per channel the canary serves:

1. ``n`` = canary requests over the trailing ``S`` seconds before the window end. ``n == 0``: the
   channel is not served and is left out; ``0 < n < min_requests``: ``insufficient_evidence``.
2. For each gate (p99 latency vs ``p99_gate_ms(channel)``, 5xx share vs ``rate_5xx``, error share vs
   ``error_rate``) the value over the trailing ``S`` window and over its most recent half (``S/2``)
   are compared with the limit (strictly greater is a breach):
   - both above: ``breach`` (sustained);
   - trailing ``S`` above, recent half at or below: ``pass`` (not sustained: it recovered);
   - trailing ``S`` above, recent half without data: ``insufficient_evidence``;
   - trailing ``S`` at or below: ``pass``; no value over ``S`` (no latency data): ``insufficient_evidence``.
3. A channel is ``breach`` if any gate breaches, else ``insufficient_evidence`` if any gate is, else
   ``pass``. The canary is ``breach`` if any channel breaches; else ``insufficient_evidence`` if it
   served nothing over ``S`` or any served channel is insufficient; else ``pass``. Missing data is
   never a pass and never a breach.

Status: Prometheus unreachable/erroring or no requests at all for the target in the window ->
``insufficient_evidence``; a gate breach or a critical finding -> ``failed``; other findings ->
``degraded``; else ``ok``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.golden_window.thresholds import (
    GammaFit,
    api_dynamic_threshold_ms,
    asr_dynamic_threshold_ms,
    fit_gamma,
    histogram_to_samples,
    load_ratio,
    requests_slower_than,
)
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.runbooks.schemas import (
    CanaryGates,
    Channel,
    ChannelSla,
    Component,
    DynamicThresholds,
    PriorityMatrix,
    Severity,
    Target,
    Thresholds,
)
from diagnostics.sources.prometheus import (
    PrometheusError,
    Reader,
    WindowStats,
    collect_gpu_memory,
    collect_window,
    quantile_label,
    window_before,
)

CHECK = "metrics_sla"
REPORTED_QUANTILES = (0.5, 0.99, 0.999, 0.9999)
COMPONENT_OF: dict[Channel, Component] = {
    Channel.TEXT: Component.LLM,
    Channel.IMAGE: Component.EMBEDDING,
    Channel.AUDIO: Component.AUDIO_PROCESSOR,
    Channel.ROUTER: Component.MULTIMODAL_ROUTER,
}
GATE_NAMES = ("p99_latency_ms", "rate_5xx", "error_rate")
# The matrix problem whose action and runbook apply to a gate breach.
_GATE_PROBLEM = {
    "p99_latency_ms": "latency_sla_breach",
    "rate_5xx": "http_5xx_burst",
    "error_rate": "http_5xx_burst",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- canary gates ---------------------------------------------------------------------------------


class GateVerdict(StrEnum):
    BREACH = "breach"
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"


class GateCheck(_Model):
    """One gate on one channel: the canary's value over the trailing window and its recent half."""

    gate: str = Field(description="p99_latency_ms, rate_5xx or error_rate")
    channel: Channel
    verdict: GateVerdict
    value: float | None = Field(description="over the trailing sustained_s window")
    recent_value: float | None = Field(description="over the most recent sustained_s / 2")
    limit: float
    requests: float
    recent_requests: float
    stable_value: float | None = None
    ratio_vs_stable: float | None = None
    reason: str


class ChannelGate(_Model):
    channel: Channel
    verdict: GateVerdict
    requests: float = Field(description="canary requests over the trailing sustained_s window")
    stable_requests: float = 0.0
    gates: list[GateCheck] = Field(default_factory=list)
    reason: str = ""


class GateSummary(_Model):
    """Small enough for XCom: the verdict and the breaching gates."""

    verdict: GateVerdict
    breaches: list[str] = Field(default_factory=list, description="e.g. 'image p99_latency_ms 1830 > 1200'")
    reason: str = ""


class CanaryGateResult(_Model):
    verdict: GateVerdict
    sustained_s: float
    min_requests: int
    channels: list[ChannelGate] = Field(default_factory=list)
    reason: str = ""

    def breaches(self) -> list[GateCheck]:
        return [g for c in self.channels for g in c.gates if g.verdict is GateVerdict.BREACH]

    def summary(self) -> GateSummary:
        return GateSummary(
            verdict=self.verdict,
            breaches=[
                f"{g.channel.value} {g.gate} {_fmt(g.gate, g.value)} > {_fmt(g.gate, g.limit)}"
                for g in self.breaches()
            ],
            reason=self.reason,
        )


def _fmt(gate: str, value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:.0f} ms" if gate.endswith("_ms") else f"{value:.2%}"


def _gate_value(stats: WindowStats, gate: str) -> float | None:
    if gate == "p99_latency_ms":
        return stats.latency(0.99)
    if gate == "rate_5xx":
        return stats.rate_5xx
    return stats.error_rate


def evaluate_channel_gate(
    gates: CanaryGates,
    channel: Channel,
    trailing: WindowStats,
    recent: WindowStats,
    stable: WindowStats | None = None,
) -> ChannelGate:
    """The canary's gates on one channel (rule in the module docstring). ``trailing`` covers the
    last ``sustained_s`` seconds, ``recent`` its most recent half, ``stable`` the stable version over
    the trailing window (for the ratio in the evidence)."""
    n = trailing.requests
    stable_n = stable.requests if stable else 0.0
    if n <= 0:
        return ChannelGate(
            channel=channel,
            verdict=GateVerdict.INSUFFICIENT_EVIDENCE,
            requests=0.0,
            stable_requests=stable_n,
            reason="no canary requests",
        )
    if n < gates.min_requests:
        return ChannelGate(
            channel=channel,
            verdict=GateVerdict.INSUFFICIENT_EVIDENCE,
            requests=n,
            stable_requests=stable_n,
            reason=f"{n:.0f} canary requests < min_requests {gates.min_requests} in {gates.sustained_s:g} s",
        )
    checks: list[GateCheck] = []
    for gate in GATE_NAMES:
        limit = gates.p99_gate_ms(channel) if gate == "p99_latency_ms" else float(getattr(gates, gate))
        value, recent_value = _gate_value(trailing, gate), _gate_value(recent, gate)
        stable_value = _gate_value(stable, gate) if stable and stable.requests > 0 else None
        if value is None:
            verdict, reason = GateVerdict.INSUFFICIENT_EVIDENCE, "no value over the trailing window"
        elif value <= limit:
            verdict, reason = GateVerdict.PASS, "within the gate"
        elif recent_value is None:
            verdict, reason = (
                GateVerdict.INSUFFICIENT_EVIDENCE,
                "above the gate, but no data in the recent half",
            )
        elif recent_value > limit:
            verdict, reason = GateVerdict.BREACH, "above the gate over the window and its recent half"
        else:
            verdict, reason = (
                GateVerdict.PASS,
                "above the gate but recovered in the recent half: not sustained",
            )
        ratio = value / stable_value if value is not None and stable_value else None
        checks.append(
            GateCheck(
                gate=gate,
                channel=channel,
                verdict=verdict,
                value=value,
                recent_value=recent_value,
                limit=limit,
                requests=n,
                recent_requests=recent.requests,
                stable_value=stable_value,
                ratio_vs_stable=ratio,
                reason=reason,
            )
        )
    verdicts = {c.verdict for c in checks}
    verdict = (
        GateVerdict.BREACH
        if GateVerdict.BREACH in verdicts
        else GateVerdict.INSUFFICIENT_EVIDENCE
        if GateVerdict.INSUFFICIENT_EVIDENCE in verdicts
        else GateVerdict.PASS
    )
    return ChannelGate(channel=channel, verdict=verdict, requests=n, stable_requests=stable_n, gates=checks)


def combine_gates(gates: CanaryGates, channels: list[ChannelGate]) -> CanaryGateResult:
    """The canary's verdict over all channels (rule in the module docstring)."""
    served = [c for c in channels if c.requests > 0]
    breached = [c for c in channels if c.verdict is GateVerdict.BREACH]
    short = [c for c in served if c.verdict is GateVerdict.INSUFFICIENT_EVIDENCE]
    if breached:
        verdict = GateVerdict.BREACH
        reason = "breach on " + ", ".join(c.channel.value for c in breached)
    elif not served:
        verdict = GateVerdict.INSUFFICIENT_EVIDENCE
        reason = f"the canary served no requests in the last {gates.sustained_s:g} s"
    elif short:
        verdict = GateVerdict.INSUFFICIENT_EVIDENCE
        reason = "; ".join(f"{c.channel.value}: {c.reason or 'no value'}" for c in short)
    else:
        verdict = GateVerdict.PASS
        reason = "every served channel within the gates: " + ", ".join(c.channel.value for c in served)
    return CanaryGateResult(
        verdict=verdict,
        sustained_s=gates.sustained_s,
        min_requests=gates.min_requests,
        channels=channels,
        reason=reason,
    )


# --- SLA and dynamic thresholds -------------------------------------------------------------------


class DynamicThreshold(_Model):
    kind: str = Field(description="asr (audio) or api (text, image, router)")
    threshold_ms: float
    formula: str = Field(description="the formula with the numbers filled in")


class ChannelMetrics(_Model):
    """One version and channel: both windows, the fit, the limits and what was breached."""

    version: str
    channel: Channel
    component: Component
    current: WindowStats
    reference: WindowStats
    gamma: GammaFit | None = Field(description="fit of the current window's latency histogram")
    reference_gamma: GammaFit | None = None
    sla_quantile: float
    sla_latency_ms: float
    sla_error_rate: float
    observed_ms: float | None = Field(description="the SLA quantile's latency in the current window")
    slow_requests: float | None = Field(
        default=None,
        description="current-window requests slower than sla_latency_ms, from the histogram buckets "
        "(None: no buckets); the decision's latency-violation count",
    )
    reference_slow_requests: float | None = Field(
        default=None, description="the same over the reference window"
    )
    dynamic: DynamicThreshold | None = None
    dynamic_note: str = ""
    baseline_version: str = Field(description="whose reference window is the dynamic threshold's baseline")
    breaches: list[str] = Field(default_factory=list, description="latency_sla, latency_dynamic, error_rate")


def dynamic_threshold(
    channel: Channel,
    current: WindowStats,
    reference: WindowStats,
    baseline: WindowStats,
    baseline_gamma: GammaFit | None,
    params: DynamicThresholds,
) -> tuple[DynamicThreshold | None, str]:
    """The channel's dynamic threshold, or why there is none.

    Latency baseline (``baseline``: the stable version's reference window, see ``evaluate_channel``)
    and load from the version itself:

    - audio, ASR formula: μ, σ = mean and standard deviation of the baseline's gamma fit;
      load_ratio = this version's current over its reference-window requests/s;
    - text, image, router, API formula: P99.99_base = the baseline's P99.99; qps = this version's
      current requests/s.
    """
    if channel is Channel.AUDIO:
        ratio = load_ratio(current.rate_rps, reference.rate_rps)
        if baseline_gamma is None:
            return None, "no reference-window audio latency to derive μ and σ from"
        if ratio is None:
            return None, "no reference-window audio requests to derive the load ratio from"
        a = params.asr
        value = asr_dynamic_threshold_ms(baseline_gamma.mean_ms, baseline_gamma.std_ms, ratio, a)
        formula = (
            f"{baseline_gamma.mean_ms:.1f} + {a.sigma_multiplier:g}·{baseline_gamma.std_ms:.1f}"
            f"·(1 + {a.load_coefficient:g}·{ratio:.2f}) ms"
        )
        return DynamicThreshold(kind="asr", threshold_ms=value, formula=formula), ""
    base = baseline.latency(0.9999)
    if base is None:
        return None, "no reference-window P99.99 to use as the base"
    p = params.api
    value = api_dynamic_threshold_ms(base, current.rate_rps, p)
    formula = f"max({p.floor_ms:g}, {base:.1f}·e^({p.qps_coefficient:g}·{current.rate_rps:.2f})) ms"
    return DynamicThreshold(kind="api", threshold_ms=value, formula=formula), ""


def _fit(stats: WindowStats, quantile: float) -> GammaFit | None:
    return fit_gamma(histogram_to_samples(stats.buckets), quantile) if stats.buckets else None


def _lookup_finding(
    matrix: PriorityMatrix | None, problem_id: str, evidence: str, version: str, channel: Channel
) -> Finding:
    problem = matrix.get(problem_id) if matrix else None
    component = COMPONENT_OF[channel].value
    if problem is not None:
        return Finding.from_problem(
            problem, CHECK, evidence, version=version, channel=channel.value, component=component
        )
    # Not in the matrix (e.g. error_rate_breach): a medium finding without an action of its own.
    return Finding(
        check=CHECK,
        problem=problem_id,
        severity=Severity.MEDIUM,
        component=component,
        title=problem_id.replace("_", " ").capitalize(),
        evidence=evidence,
        version=version,
        channel=channel.value,
    )


def evaluate_channel(
    current: WindowStats,
    reference: WindowStats,
    sla: ChannelSla,
    dynamic: DynamicThresholds,
    matrix: PriorityMatrix | None = None,
    stable: WindowStats | None = None,
    baseline: WindowStats | None = None,
) -> tuple[ChannelMetrics, list[Finding]]:
    """One version/channel against its SLA and dynamic threshold.

    ``stable`` (the stable version's current window, for a canary) adds the canary/stable ratio to
    the evidence. ``baseline`` is the latency baseline of the dynamic threshold: the check passes the
    stable version's reference window, so a canary that was slow from its first request cannot excuse
    itself; without one (or when it had no requests) the version's own ``reference`` is used.
    """
    channel, version = current.channel, current.version
    q = sla.latency.quantile
    gamma, ref_gamma = _fit(current, q), _fit(reference, q)
    if baseline is None or baseline.requests <= 0:
        baseline = reference
    base_gamma = ref_gamma if baseline is reference else _fit(baseline, q)
    dyn, note = dynamic_threshold(channel, current, reference, baseline, base_gamma, dynamic)
    observed = current.latency(q)
    metrics = ChannelMetrics(
        version=version,
        channel=channel,
        component=COMPONENT_OF[channel],
        current=current,
        reference=reference,
        gamma=gamma,
        reference_gamma=ref_gamma,
        sla_quantile=q,
        sla_latency_ms=sla.latency.latency_ms,
        sla_error_rate=sla.error_rate,
        observed_ms=observed,
        slow_requests=requests_slower_than(current.buckets, sla.latency.latency_ms),
        reference_slow_requests=requests_slower_than(reference.buckets, sla.latency.latency_ms),
        dynamic=dyn,
        dynamic_note=note,
        baseline_version=baseline.version,
    )
    if current.requests <= 0:
        return metrics, []
    label, n, w = quantile_label(q), current.requests, current.window_s
    where = f"{version} {channel.value}"
    findings: list[Finding] = []
    if observed is not None:
        crossed: list[str] = []
        if observed > sla.latency.latency_ms:
            metrics.breaches.append("latency_sla")
            crossed.append(f"SLA {sla.latency.latency_ms:.0f} ms")
        if dyn is not None and observed > dyn.threshold_ms:
            metrics.breaches.append("latency_dynamic")
            crossed.append(f"dynamic {dyn.threshold_ms:.0f} ms = {dyn.formula}")
        if crossed:
            limits = " and > ".join(crossed)
            evidence = f"{where} {label} {observed:.0f} ms > {limits} over {w:g} s, {n:.0f} requests"
            if gamma is not None:
                evidence += (
                    f"; gamma fit k={gamma.shape:.2f} θ={gamma.scale_ms:.1f} ms,"
                    f" {label} ≈ {gamma.quantile_ms:.0f} ms"
                )
            stable_q = stable.latency(q) if stable is not None and stable.requests > 0 else None
            if stable_q:
                evidence += f"; stable {stable_q:.0f} ms (×{observed / stable_q:.1f})"
            findings.append(_lookup_finding(matrix, "latency_sla_breach", evidence, version, channel))
    err = current.error_rate or 0.0
    if err > sla.error_rate:
        metrics.breaches.append("error_rate")
        share_5xx = current.rate_5xx or 0.0
        evidence = (
            f"{where} error rate {err:.2%} > SLA {sla.error_rate:.2%} over {w:g} s "
            f"({current.errors:.0f} of {n:.0f} requests, 5xx {share_5xx:.2%})"
        )
        if stable is not None and stable.requests > 0:
            evidence += f"; stable {stable.error_rate or 0.0:.2%}"
        problem = "http_5xx_burst" if share_5xx > sla.error_rate else "error_rate_breach"
        findings.append(_lookup_finding(matrix, problem, evidence, version, channel))
    return metrics, findings


# --- the check ------------------------------------------------------------------------------------


class MetricsSlaResult(CheckResult):
    """The ``metrics_sla`` result: per version/channel figures, the canary gate and GPU memory."""

    target: str
    window_end: datetime
    window_s: float
    reference_s: float
    channels: list[ChannelMetrics] = Field(default_factory=list)
    gpu_memory: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="peak bytes per version and device/kind; empty without GPUs"
    )
    gate: CanaryGateResult

    def gate_summary(self) -> GateSummary:
        """The canary gate in a few fields, for XCom and the decision."""
        return self.gate.summary()

    def channel(self, version: str, channel: Channel) -> ChannelMetrics | None:
        return next((c for c in self.channels if c.version == version and c.channel == channel), None)


def _gate_finding(check: GateCheck, matrix: PriorityMatrix | None) -> Finding:
    related = matrix.get(_GATE_PROBLEM[check.gate]) if matrix else None
    evidence = (
        f"canary {check.channel.value} {check.gate} {_fmt(check.gate, check.value)} > gate "
        f"{_fmt(check.gate, check.limit)} over the trailing window "
        f"(recent half {_fmt(check.gate, check.recent_value)}), {check.requests:.0f} requests"
    )
    if check.stable_value is not None:
        evidence += f"; stable {_fmt(check.gate, check.stable_value)}"
        if check.ratio_vs_stable is not None:
            evidence += f" (×{check.ratio_vs_stable:.1f})"
    return Finding(
        check=CHECK,
        problem="canary_gate_breach",
        severity=Severity.CRITICAL,
        component=COMPONENT_OF[check.channel].value,
        title=f"Canary gate breach: {check.gate}",
        evidence=evidence,
        action=related.action if related else "",
        runbook=related.runbook if related else None,
        version="canary",
        channel=check.channel.value,
    )


def evaluate_gates(
    reader: Reader, target: Target, gates: CanaryGates, window_end: datetime
) -> CanaryGateResult:
    """Query the trailing ``sustained_s`` window and its recent half, and apply the gate rule."""
    if "canary" not in target.versions:
        return CanaryGateResult(
            verdict=GateVerdict.INSUFFICIENT_EVIDENCE,
            sustained_s=gates.sustained_s,
            min_requests=gates.min_requests,
            reason=f"target {target.name} has no canary version",
        )
    trailing = collect_window(reader, target, window_end, gates.sustained_s, (0.99,), with_buckets=False)
    recent = collect_window(reader, target, window_end, gates.sustained_s / 2, (0.99,), with_buckets=False)
    channels = [
        evaluate_channel_gate(
            gates, c, trailing[("canary", c)], recent[("canary", c)], trailing.get(("stable", c))
        )
        for c in Channel
    ]
    return combine_gates(gates, channels)


def decide_status(findings: list[Finding], gate: CanaryGateResult) -> Status:
    """failed on a gate breach or a critical finding, degraded on any other finding, else ok."""
    if gate.verdict is GateVerdict.BREACH or any(f.severity is Severity.CRITICAL for f in findings):
        return Status.FAILED
    return Status.DEGRADED if findings else Status.OK


def check_metrics_sla(
    reader: Reader,
    target: Target,
    thresholds: Thresholds,
    matrix: PriorityMatrix | None,
    window_end: datetime,
    window_s: float,
    reference_s: float | None = None,
) -> MetricsSlaResult:
    """The ``metrics_sla`` check over ``[window_end - window_s, window_end]``.

    The reference window is the ``reference_s`` (default ``window_s``) seconds just before it; the
    canary gates look at the trailing ``sustained_s`` of ``thresholds.gates_for(target)``. ``matrix``
    supplies severity, action and runbook of ``latency_sla_breach`` / ``http_5xx_burst`` findings.
    Never raises for Prometheus trouble: that is ``insufficient_evidence`` with the reason in the
    summary.
    """
    if window_end.tzinfo is None:
        window_end = window_end.replace(tzinfo=UTC)
    reference_s = reference_s or window_s
    gates = thresholds.gates_for(target.name)
    base = {"check": CHECK, "target": target.name, "window_end": window_end, "window_s": window_s}
    base["reference_s"] = reference_s
    quantiles = set(REPORTED_QUANTILES) | {
        thresholds.sla_for(target.name, c).latency.quantile for c in Channel
    }
    try:
        current = collect_window(reader, target, window_end, window_s, quantiles)
        reference = collect_window(
            reader, target, window_before(window_end, window_s), reference_s, quantiles
        )
        gpu = collect_gpu_memory(reader, target, window_end, window_s)
        gate = evaluate_gates(reader, target, gates, window_end)
    except PrometheusError as exc:
        gate = CanaryGateResult(
            verdict=GateVerdict.INSUFFICIENT_EVIDENCE,
            sustained_s=gates.sustained_s,
            min_requests=gates.min_requests,
            reason=exc.reason,
        )
        return MetricsSlaResult(
            **base,
            status=Status.INSUFFICIENT_EVIDENCE,
            summary=f"{target.name}: no metrics: {exc.reason}",
            details={"error": exc.reason},
            gate=gate,
        )

    channels: list[ChannelMetrics] = []
    findings: list[Finding] = []
    for (version, channel), stats in current.items():
        stable = current.get(("stable", channel)) if version != "stable" else None
        sla = thresholds.sla_for(target.name, channel)
        metrics, found = evaluate_channel(
            stats,
            reference[(version, channel)],
            sla,
            thresholds.dynamic,
            matrix,
            stable,
            baseline=reference.get(("stable", channel)),
        )
        channels.append(metrics)
        findings.extend(found)
    findings.extend(_gate_finding(g, matrix) for g in gate.breaches())
    findings.sort(key=Finding.rank_key)

    total = sum(s.requests for s in current.values())
    details: dict[str, object] = {
        "requests": round(total, 1),
        "requests_by_version": {
            v: round(sum(s.requests for (sv, _), s in current.items() if sv == v), 1) for v in target.versions
        },
        "gate": gate.verdict.value,
    }
    if total <= 0:
        return MetricsSlaResult(
            **base,
            status=Status.INSUFFICIENT_EVIDENCE,
            details=details,
            channels=channels,
            gpu_memory=gpu,
            gate=gate,
            summary=f"{target.name}: no requests in the {window_s:g} s window ending "
            f"{window_end.isoformat(timespec='seconds')} (selector {target.prometheus_selector})",
        )
    status = decide_status(findings, gate)
    gate_line = f"canary gate {gate.verdict.value}"
    if gate.verdict is GateVerdict.BREACH:
        gate_line += " (" + ", ".join(gate.summary().breaches) + ")"
    others = [f for f in findings if f.problem != "canary_gate_breach"]
    sla_line = f"{len(others)} SLA/threshold breach(es)" if others else "within SLA"
    summary = f"{target.name}: {gate_line}; {sla_line}; {total:.0f} requests in {window_s:g} s"
    return MetricsSlaResult(
        **base,
        status=status,
        summary=summary,
        details=details,
        findings=findings,
        channels=channels,
        gpu_memory=gpu,
        gate=gate,
    )
