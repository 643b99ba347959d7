"""The decision's inputs from the stored results of phase 1 (and phase 2): counts per channel and
version, the gate, the ranked findings. Stored results are read leniently (a field that is absent is
missing evidence, which the rules weigh as such), never trusted for more than they say."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from diagnostics.decision.model import (
    ChannelCounts,
    DecisionInputs,
    FindingBrief,
    Phase1Evidence,
    Phase2Evidence,
    VersionCounts,
)
from diagnostics.golden_window.canary_gate import CanaryGateResult
from diagnostics.incident.model import GateAlert
from diagnostics.incident.results import Status
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.schemas import Channel, Severity, Target

# --- from the stored results ----------------------------------------------------------------------


class _Lenient(BaseModel):
    """Reads the fields the decision needs from a stored result and ignores the rest."""

    model_config = ConfigDict(extra="ignore")


class _IncidentView(_Lenient):
    incident_id: str = Field(min_length=1)
    target: str = Field(min_length=1)
    dry_run: StrictBool = False
    grade: GradeId | None = None
    suspected_version: str | None = None
    analysed_at: datetime | None = None
    gate_alerts: list[GateAlert] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _window_end(cls, data: Any) -> Any:
        # Incident.summary() names the window [start, end] instead of analysed_at
        window = data.get("window") if isinstance(data, dict) else None
        if isinstance(window, list) and len(window) == 2 and "analysed_at" not in data:
            data = {**data, "analysed_at": window[1]}
        return data


class _WindowView(_Lenient):
    requests: float = Field(ge=0)
    errors: float = Field(ge=0)


class _BoundsView(_Lenient):
    at_least: float = Field(ge=0)
    at_most: float = Field(ge=0)


class _ChannelView(_Lenient):
    version: str
    channel: Channel
    current: _WindowView
    reference: _WindowView
    slow_requests: float | None = Field(default=None, ge=0)
    reference_slow_requests: float | None = Field(default=None, ge=0)
    slow_bounds: _BoundsView | None = None
    reference_slow_bounds: _BoundsView | None = None


class _MetricsView(_Lenient):
    status: Status
    summary: str = ""
    gate: CanaryGateResult
    channels: list[_ChannelView] = Field(default_factory=list)


class _FindingView(_Lenient):
    severity: Severity
    problem: str
    component: str
    version: str | None = None
    channel: str | None = None
    evidence: str = ""


class _SummaryView(_Lenient):
    status: Status
    checks: dict[str, Status]
    findings: list[_FindingView] = Field(default_factory=list)


def _read(model: type[_Lenient], data: object, name: str) -> Any:
    """Validate ``data`` as ``model``; a bad or missing field is a ValueError naming it."""
    if not isinstance(data, dict):
        raise ValueError(f"{name}: expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join([name, *(str(p) for p in first["loc"])])
        given = first.get("input")
        shown = "" if first["type"] == "missing" or isinstance(given, dict | list) else f" (got {given!r})"
        raise ValueError(f"{field}: {first['msg']}{shown}") from None


def _version_counts(window: _WindowView, slow: float | None, bounds: _BoundsView | None) -> VersionCounts:
    return VersionCounts(
        requests=window.requests,
        errors=window.errors,
        slow_requests=slow,
        slow_at_least=bounds.at_least if bounds and slow is not None else None,
        slow_at_most=bounds.at_most if bounds and slow is not None else None,
    )


def _channel_counts(views: list[_ChannelView]) -> list[ChannelCounts]:
    by = {(v.version, v.channel): v for v in views}
    out: list[ChannelCounts] = []
    zero = VersionCounts(requests=0.0, errors=0.0)
    for channel in Channel:
        stable, canary = by.get(("stable", channel)), by.get(("canary", channel))
        if stable is None and canary is None:
            continue
        out.append(
            ChannelCounts(
                channel=channel,
                canary=(
                    _version_counts(canary.current, canary.slow_requests, canary.slow_bounds)
                    if canary
                    else zero
                ),
                stable=(
                    _version_counts(stable.current, stable.slow_requests, stable.slow_bounds)
                    if stable
                    else zero
                ),
                stable_reference=(
                    _version_counts(
                        stable.reference, stable.reference_slow_requests, stable.reference_slow_bounds
                    )
                    if stable
                    else zero
                ),
            )
        )
    return out


def inputs_from_results(
    incident: dict[str, Any],
    metrics_sla: dict[str, Any] | None,
    phase_summary: dict[str, Any] | None,
    phase2: dict[str, Any] | None = None,
    *,
    canary_weight_percent: float | None = None,
    target: Target | None = None,
) -> DecisionInputs:
    """The decision's inputs from stored results: ``incident`` (``Incident.summary()`` or
    ``incident.json``), the full ``metrics_sla`` result (``golden_window/metrics_sla.json``), the full
    phase-1 summary (``golden_window/summary.json``: the XCom brief keeps only 5 findings), and the
    phase-2 evidence (``deep_diagnosis/evidence.json``: :class:`Phase2Evidence`) or None.

    A result that is missing (None) is missing evidence, which the decision turns into
    ``insufficient_evidence``; a result that is present but malformed is a bug, and raises a
    ValueError naming the field. ``target`` supplies the rollback method and whether it is sensitive.
    """
    inc: _IncidentView = _read(_IncidentView, incident, "incident")
    metrics: _MetricsView | None = (
        _read(_MetricsView, metrics_sla, "metrics_sla") if metrics_sla is not None else None
    )
    summary: _SummaryView | None = (
        _read(_SummaryView, phase_summary, "phase_summary") if phase_summary is not None else None
    )
    p2: Phase2Evidence | None = None
    if phase2 is not None:
        if not isinstance(phase2, dict):
            raise ValueError(f"phase2: expected a JSON object, got {type(phase2).__name__}")
        try:
            p2 = Phase2Evidence.model_validate(phase2)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"phase2.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    if target is not None and target.name != inc.target:
        raise ValueError(f"target: {target.name!r} is not the incident's target {inc.target!r}")
    rollback = target.rollback if target is not None else None
    return DecisionInputs(
        incident_id=inc.incident_id,
        target=inc.target,
        grade=inc.grade,
        dry_run=inc.dry_run,
        suspected_version=inc.suspected_version,
        analysed_at=inc.analysed_at,
        canary_weight_percent=canary_weight_percent,
        rollback_method=rollback.method if rollback is not None else None,
        rollback_sensitive=bool(getattr(rollback, "sensitive", False)),
        metrics_status=metrics.status if metrics else None,
        metrics_summary=metrics.summary if metrics else "",
        gate=metrics.gate if metrics else None,
        channels=_channel_counts(metrics.channels) if metrics else [],
        phase1=Phase1Evidence(
            status=summary.status,
            checks=summary.checks,
            findings=[FindingBrief(**f.model_dump()) for f in summary.findings],
        )
        if summary
        else None,
        phase2=p2,
        gate_alerts=inc.gate_alerts,
    )
