"""Phase-1 check ``metrics_sla``: Prometheus metrics per channel and version against the SLA, the
dynamic thresholds and the canary gates.

For every channel (text, image, audio, router) and version (stable, canary), over the alert window
and a reference window of the same length just before it: requests, requests/s, error and 5xx
rates, p50/p99/p99.9/p99.99 latency, a gamma fit of the latency histogram, and GPU memory where
exported. Breaches become findings with the numbers behind them.

Dynamic thresholds (``dynamic`` in thresholds.yaml) take their latency baseline from the stable
version's reference window (known good; the version's own when stable had no traffic there) and
their load from the version itself; see :func:`dynamic_threshold`.

The canary gates (the rule, the verdicts) are in :mod:`diagnostics.golden_window.canary_gate`;
this check queries them and turns a breach into a critical finding.

Status: Prometheus unreachable/erroring or no requests at all for the target in the window ->
``insufficient_evidence``; a gate breach or a critical finding -> ``failed``; other findings ->
``degraded``; else ``ok``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.golden_window.canary_gate import (
    CanaryGateResult,
    GateCheck,
    GateSummary,
    GateVerdict,
    evaluate_gates,
    fmt_gate_value,
    insufficient_gate,
)
from diagnostics.golden_window.thresholds import (
    GammaFit,
    SlowBounds,
    api_dynamic_threshold_ms,
    asr_dynamic_threshold_ms,
    fit_gamma,
    histogram_to_samples,
    load_ratio,
    requests_slower_than,
    slow_request_bounds,
)
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.runbooks.schemas import (
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
# The matrix problem whose action and runbook apply to a gate breach.
_GATE_PROBLEM = {
    "p99_latency_ms": "latency_sla_breach",
    "rate_5xx": "http_5xx_burst",
    "error_rate": "http_5xx_burst",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
        "(None: no buckets, or no bound at or below the latency); exact when slow_bounds.exact, else "
        "slow_bounds.at_most",
    )
    reference_slow_requests: float | None = Field(
        default=None, description="the same over the reference window"
    )
    slow_bounds: SlowBounds | None = Field(
        default=None,
        description="the SLA-slow count as the buckets bound it: at_least (argue rollback), at_most "
        "(argue promotion), exact, le_below/le_above and a note for the decision's text",
    )
    reference_slow_bounds: SlowBounds | None = Field(default=None, description="the same, reference window")
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
        slow_bounds=slow_request_bounds(current.buckets, sla.latency.latency_ms),
        reference_slow_bounds=slow_request_bounds(reference.buckets, sla.latency.latency_ms),
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
            if metrics.slow_bounds is not None:
                evidence += f"; SLA-slow requests {metrics.slow_bounds.note}"
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
        f"canary {check.channel.value} {check.gate} {fmt_gate_value(check.gate, check.value)} > gate "
        f"{fmt_gate_value(check.gate, check.limit)} over the trailing window "
        f"(recent half {fmt_gate_value(check.gate, check.recent_value)}), {check.requests:.0f} requests"
    )
    if check.stable_value is not None:
        evidence += f"; stable {fmt_gate_value(check.gate, check.stable_value)}"
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


def decide_status(findings: list[Finding], gate: CanaryGateResult) -> Status:
    """failed on a gate breach or a critical finding, degraded on any other finding, else ok."""
    if gate.verdict is GateVerdict.BREACH or any(f.severity is Severity.CRITICAL for f in findings):
        return Status.FAILED
    return Status.DEGRADED if findings else Status.OK


def _evaluate_channels(
    current: dict[tuple[str, Channel], WindowStats],
    reference: dict[tuple[str, Channel], WindowStats],
    target: Target,
    thresholds: Thresholds,
    matrix: PriorityMatrix | None,
) -> tuple[list[ChannelMetrics], list[Finding]]:
    """Every version/channel of the current window against its SLA and dynamic threshold."""
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
    return channels, findings


def _summary(
    target: Target, gate: CanaryGateResult, findings: list[Finding], total: float, window_s: float
) -> str:
    """One line: the gate verdict (with its breaches), the SLA breaches, the traffic."""
    gate_line = f"canary gate {gate.verdict.value}"
    if gate.verdict is GateVerdict.BREACH:
        gate_line += " (" + ", ".join(gate.summary().breaches) + ")"
    others = [f for f in findings if f.problem != "canary_gate_breach"]
    sla_line = f"{len(others)} SLA/threshold breach(es)" if others else "within SLA"
    return f"{target.name}: {gate_line}; {sla_line}; {total:.0f} requests in {window_s:g} s"


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
        return MetricsSlaResult(
            **base,
            status=Status.INSUFFICIENT_EVIDENCE,
            summary=f"{target.name}: no metrics: {exc.reason}",
            details={"error": exc.reason},
            gate=insufficient_gate(gates, exc.reason),
        )

    channels, findings = _evaluate_channels(current, reference, target, thresholds, matrix)
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
    return MetricsSlaResult(
        **base,
        status=decide_status(findings, gate),
        summary=_summary(target, gate, findings, total, window_s),
        details=details,
        findings=findings,
        channels=channels,
        gpu_memory=gpu,
        gate=gate,
    )
