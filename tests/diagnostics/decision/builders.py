"""Builders of decision inputs: a healthy canary at 2 %, measured by phase 1 and phase 2, which each
test then breaks in one way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from diagnostics.decision import (
    ChannelCounts,
    DecisionInputs,
    FindingBrief,
    Phase1Evidence,
    Phase2Evidence,
    VersionCounts,
)
from diagnostics.decision.model import CheckEvidence
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
PHASE2_CHECKS = next(p.checks for p in BOOKS.sop.phases if p.id == "deep_diagnosis")


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


def phase2(**checks: CheckEvidence | None) -> Phase2Evidence:
    """Phase 2 an hour after phase 1: every check of sop.yaml ok on both versions, drift level 0 on
    text and image on both; ``name=CheckEvidence(...)`` replaces a check, ``name=None`` removes it."""
    every: dict[str, CheckEvidence | None] = {
        name: CheckEvidence(canary=Status.OK, stable=Status.OK, canary_worse=False) for name in PHASE2_CHECKS
    }
    every.update(checks)
    kept = {name: ev for name, ev in every.items() if ev is not None}
    levels: dict[Channel, int | None] = dict.fromkeys(CHANNELS, 0)
    return Phase2Evidence(
        drift=levels if "drift" in kept else {},
        stable_drift=levels if "drift" in kept else {},
        consistency={n: ev.canary for n, ev in kept.items() if n != "drift" and ev.canary is not None},
        checks=kept,
        measured_at=END + timedelta(hours=1),
    )


def failing(stable: Status | None, canary_worse: bool | None = None, measure: str = "") -> CheckEvidence:
    """A check failed on the canary; ``stable``'s status and the check's own comparison."""
    return CheckEvidence(canary=Status.FAILED, stable=stable, canary_worse=canary_worse, measure=measure)


def healthy(**overrides: Any) -> DecisionInputs:
    """A healthy canary at 2 % on text and image: enough requests, the gate passes, no findings,
    phase 2 ok on both versions."""
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
        "phase2": phase2(),
        "analysed_at": END,
    }
    base.update(overrides)
    return DecisionInputs(**base)
