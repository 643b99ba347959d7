"""Phase-2 check ``drift``: KS + Wasserstein drift per channel, current window vs a stored reference.

Two feature sets per version, tested with :mod:`diagnostics.drift` (vectorised, equal to scipy's
``ks_2samp`` and ``wasserstein_distance``; corrected for multiple testing; levels from
``thresholds.yaml`` ``drift:``):

- **embeddings** (channels ``image`` and ``text``): the version's embeddings of the golden images and
  of the golden texts and captions, against the same inputs' embeddings in the healthy baseline — the
  inputs are fixed, so any movement of the distribution is the encoder's;
- **latency** per channel: the ``latency_ms`` of the version's request log lines in the incident
  window against the window of the same length just before it (the stored reference of the logs).

A channel's level is the worst of its feature sets (0 none, 1 watch: record and widen the window,
2 act: a decision input). Too few values is ``insufficient_evidence`` for that channel, not a verdict.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.checks.registry import CheckSpec, register
from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome
from diagnostics.deep_diagnosis.drift_judge import DriftResult, embedding_drift, latency_drift
from diagnostics.incident.results import Finding, Status

CHECK = "drift"
CHANNELS = ("text", "image", "audio", "router")


class Thresholds(BaseModel):
    """Only what is specific to this check; the statistics' bounds are ``thresholds.yaml`` ``drift:``."""

    model_config = ConfigDict(extra="forbid")

    latency: bool = Field(default=True, description="test latency per channel from the logs")
    embeddings: bool = Field(default=True, description="test golden-input embeddings vs the baseline")
    reference_windows: int = Field(default=1, ge=1, le=24, description="reference = this many windows before")


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embeddings: dict[str, list[list[float]]] = Field(default_factory=dict, description="channel -> rows")
    latency_current_ms: dict[str, list[float]] = Field(default_factory=dict)
    latency_reference_ms: dict[str, list[float]] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def _latencies(ctx: DeepContext, version: str, start: datetime, end: datetime) -> dict[str, list[float]]:
    from diagnostics.golden_window.logs_check import source_for
    from diagnostics.sources.logs.records import LogQuery, SourceUnavailable

    es = ctx.sources.elasticsearch if ctx.sources is not None else None
    source = source_for(ctx.target, es, base_dir=ctx.settings.repo_root)
    out: dict[str, list[float]] = {}
    try:
        for rec in source.read(LogQuery(start=start, end=end, versions=frozenset({version}))):
            value = rec.fields.get("latency_ms")
            if (
                rec.channel in CHANNELS
                and isinstance(value, int | float)
                and rec.fields.get("status") is not None
            ):
                out.setdefault(rec.channel, []).append(float(value))
    except SourceUnavailable as exc:
        raise FileNotFoundError(f"logs unavailable: {exc}") from None
    return out


def measure(ctx: DeepContext, version: str, th: Thresholds) -> Measurement:
    m = Measurement()
    if th.embeddings:
        golden = ctx.golden()
        with ctx.client(version) as client:
            m.embeddings["image"] = np.round(
                client.embed_images([i.file.read_bytes() for i in golden.images]).vectors, 6
            ).tolist()
            texts = [i.caption for i in golden.images] + [t.text for t in golden.texts]
            m.embeddings["text"] = np.round(client.embed_texts(texts).vectors, 6).tolist()
        ctx.progress(f"{version}: golden embeddings", 2, 2)
    if th.latency and ctx.incident is not None:
        end: datetime = ctx.incident.analysed_at
        start: datetime = ctx.incident.window_start
        span = (end - start) * th.reference_windows
        try:
            m.latency_current_ms = _latencies(ctx, version, start, end)
            m.latency_reference_ms = _latencies(ctx, version, start - span, start)
        except FileNotFoundError as exc:
            m.notes.append(str(exc)[:300])
    elif th.latency:
        m.notes.append("no incident window: latency drift not tested")
    return m


def _brief(r: DriftResult) -> dict[str, Any]:
    return {
        "level": r.level,
        "status": r.status.value,
        "summary": r.summary,
        "counts": r.counts.model_dump(),
        "top": [f.model_dump(mode="json") for f in r.top[:5]],
        "insufficient": r.insufficient,
    }


def judge(
    ctx: DeepContext, version: str, m: Measurement, base: Measurement | None, th: Thresholds
) -> VersionOutcome:
    cfg = ctx.books.thresholds.drift
    levels: dict[str, int | None] = {}
    sets: dict[str, Any] = {}
    findings: list[Finding] = []
    notes = list(m.notes)
    for channel, rows in m.embeddings.items():
        ref_rows = base.embeddings.get(channel) if base is not None else None
        if not ref_rows:
            notes.append(f"{channel} embeddings: no baseline to compare with")
            continue
        cur, ref = np.asarray(rows), np.asarray(ref_rows)
        if cur.shape[1:] != ref.shape[1:]:
            notes.append(
                f"{channel} embeddings {cur.shape[1]}-d vs baseline {ref.shape[1]}-d: see embedding_alignment"
            )
            levels[channel] = None
            continue
        r = embedding_drift(ref, cur, cfg, name=f"{channel}_embedding", channel=channel, version=version)
        sets[f"{channel}_embedding"] = _brief(r)
        findings.extend(r.findings)
        levels[channel] = r.level if r.status is not Status.INSUFFICIENT_EVIDENCE else levels.get(channel)
    if m.latency_current_ms or m.latency_reference_ms:
        r = latency_drift(m.latency_reference_ms, m.latency_current_ms, cfg, version=version)
        sets["latency"] = _brief(r)
        findings.extend(r.findings)
        for channel, level in r.feature_levels.items():
            prev = levels.get(channel)
            levels[channel] = level if prev is None else max(prev, level) if level is not None else prev
    figures: dict[str, Any] = {"levels": levels, "feature_sets": sets, "notes": notes}
    tested = [lv for lv in levels.values() if lv is not None]
    if not tested:
        status = Status.INSUFFICIENT_EVIDENCE
        summary = "nothing tested: " + ("; ".join(notes) or "no values")
    else:
        top = max(tested)
        status = Status.FAILED if top >= 2 else Status.DEGRADED if top == 1 else Status.OK
        summary = ", ".join(f"{c} L{lv}" if lv is not None else f"{c} n/a" for c, lv in levels.items())
    return VersionOutcome(version=version, status=status, summary=summary, figures=figures, findings=findings)


def channel_levels(result: dict[str, Any], version: str = "canary") -> dict[str, int | None]:
    """The stored result's drift level per channel of ``version`` (the decision's phase-2 input)."""
    outcome = (result.get("versions") or {}).get(version) or {}
    levels = (outcome.get("figures") or {}).get("levels") or {}
    return {str(k): (int(v) if v is not None else None) for k, v in levels.items()}


SPEC = register(
    CheckSpec(
        name=CHECK,
        modality="embedding+latency",
        inputs=("service", "golden.images", "golden.texts", "logs", "baseline"),
        thresholds=Thresholds,
        measurement=Measurement,
        measure=measure,
        judge=judge,
        doc=__doc__ or "",
    )
)
