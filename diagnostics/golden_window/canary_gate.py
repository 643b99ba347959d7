"""Canary gates of the ``metrics_sla`` check: per-channel gate verdicts and the canary's overall verdict.

Rule (``gates_for(target)``; ``S = sustained_s``), per channel the canary serves:

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
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.runbooks.schemas import CanaryGates, Channel, Target
from diagnostics.sources.prometheus import Reader, WindowStats, collect_window

GATE_NAMES = ("p99_latency_ms", "rate_5xx", "error_rate")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
                f"{g.channel.value} {g.gate} {fmt_gate_value(g.gate, g.value)} > "
                f"{fmt_gate_value(g.gate, g.limit)}"
                for g in self.breaches()
            ],
            reason=self.reason,
        )


def fmt_gate_value(gate: str, value: float | None) -> str:
    """A gate's value for evidence: milliseconds for latency, a percentage for shares."""
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


def insufficient_gate(gates: CanaryGates, reason: str) -> CanaryGateResult:
    """The gate result when there is nothing to judge (no canary, Prometheus unreachable)."""
    return CanaryGateResult(
        verdict=GateVerdict.INSUFFICIENT_EVIDENCE,
        sustained_s=gates.sustained_s,
        min_requests=gates.min_requests,
        reason=reason,
    )


def evaluate_gates(
    reader: Reader, target: Target, gates: CanaryGates, window_end: datetime
) -> CanaryGateResult:
    """Query the trailing ``sustained_s`` window and its recent half, and apply the gate rule."""
    if "canary" not in target.versions:
        return insufficient_gate(gates, f"target {target.name} has no canary version")
    trailing = collect_window(reader, target, window_end, gates.sustained_s, (0.99,), with_buckets=False)
    recent = collect_window(reader, target, window_end, gates.sustained_s / 2, (0.99,), with_buckets=False)
    channels = [
        evaluate_channel_gate(
            gates, c, trailing[("canary", c)], recent[("canary", c)], trailing.get(("stable", c))
        )
        for c in Channel
    ]
    return combine_gates(gates, channels)
