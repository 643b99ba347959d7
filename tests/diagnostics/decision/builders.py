"""Builders of decision inputs: a healthy canary at 2 %, which each test then breaks in one way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from diagnostics.decision import (
    ChannelCounts,
    DecisionInputs,
    FindingBrief,
    Phase1Evidence,
    VersionCounts,
)
from diagnostics.golden_window.canary_gate import CanaryGateResult, combine_gates, evaluate_channel_gate
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import CanaryGates, Channel
from diagnostics.sources.prometheus import WindowStats

END = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BOOKS = load_runbooks()
POLICY = BOOKS.decision
GATES = CanaryGates(p99_latency_ms=1200, rate_5xx=0.005, error_rate=0.05, sustained_s=300, min_requests=50)
CHANNELS = (Channel.TEXT, Channel.IMAGE)


def window(
    requests: float,
    errors: float = 0.0,
    p99: float | None = 120.0,
    version: str = "canary",
    ch: Channel = Channel.TEXT,
) -> WindowStats:
    return WindowStats(
        version=version,
        channel=ch,
        end=END,
        window_s=300,
        requests=requests,
        errors=errors,
        latency_ms={"p99": p99},
    )


def gate_result(
    p99: float = 120.0, requests: float = 400.0, channels: tuple[Channel, ...] = CHANNELS
) -> CanaryGateResult:
    """The canary gate over ``channels`` with the same trailing and recent p99 on each."""
    return combine_gates(
        GATES,
        [
            evaluate_channel_gate(
                GATES,
                ch,
                window(requests, p99=p99, ch=ch),
                window(requests / 2, p99=p99, ch=ch),
                window(requests * 20, p99=110.0, version="stable", ch=ch),
            )
            for ch in channels
        ],
    )


def counts(
    channel: Channel = Channel.TEXT,
    canary: tuple[float, float, float | None] = (3000, 30, 15),
    stable: tuple[float, float, float | None] = (60000, 600, 300),
    reference: tuple[float, float, float | None] = (60000, 600, 300),
) -> ChannelCounts:
    """(requests, errors, slow_requests) per version; the default canary is exactly as good as stable."""

    def vc(t: tuple[float, float, float | None]) -> VersionCounts:
        return VersionCounts(requests=t[0], errors=t[1], slow_requests=t[2])

    return ChannelCounts(
        channel=channel, canary=vc(canary), stable=vc(stable), stable_reference=vc(reference)
    )


def phase1(*findings: FindingBrief, missing: str | None = None, **statuses: Status) -> Phase1Evidence:
    checks = {
        "health_snapshot": Status.OK,
        "model_integrity": Status.OK,
        "metrics_sla": Status.OK,
        "log_classification": Status.OK,
    }
    checks.update(statuses)
    if missing:
        del checks[missing]
    return Phase1Evidence(status=Status.OK, checks=checks, findings=list(findings))


def healthy(**overrides: Any) -> DecisionInputs:
    """A healthy canary at 2 % on text and image: enough requests, the gate passes, no findings."""
    base: dict[str, Any] = {
        "incident_id": "manual__2026-01-01T12:00:00",
        "target": "testbed",
        "grade": "L3",
        "dry_run": False,
        "canary_weight_percent": 2.0,
        "rollback_method": "gateway_weight",
        "metrics_status": Status.OK,
        "metrics_summary": "testbed: canary gate pass; within SLA",
        "gate": gate_result(),
        "channels": [counts(ch) for ch in CHANNELS],
        "phase1": phase1(),
    }
    base.update(overrides)
    return DecisionInputs(**base)
