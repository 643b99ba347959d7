"""Phase-2 check ``temporal_alignment``: do the streams' clocks and timestamps still line up?

Three comparisons per version, each a distribution of deltas against a tolerance in
``thresholds.yaml`` (``deep.temporal_alignment``):

- **clock**: the service's own time (``X-Server-Time`` / body ``timestamp``) against the middle of
  the client's send/receive interval, over ``probes`` cheap text-embedding calls — a skewed service
  clock misorders every stream it stamps;
- **words**: the word timestamps the service reports for golden clips against the reference
  Whisper's for the same words (the audio stream's time vs the text stream's);
- **router stages**: each stage's start/end the router reports must lie inside the client's
  request interval (± the clock tolerance).
"""

from __future__ import annotations

import statistics

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.checks.registry import CheckSpec, register
from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome, finding
from diagnostics.deep_diagnosis.encoders import ReferenceModelError
from diagnostics.deep_diagnosis.service import ServiceError
from diagnostics.golden_set import normalise
from diagnostics.incident.results import Finding, Status

CHECK = "temporal_alignment"


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_clock_offset_ms: float = Field(
        default=500.0, gt=0, description="|median| service clock − client clock"
    )
    max_word_offset_ms: float = Field(default=300.0, gt=0, description="|median| word start vs the reference")
    probes: int = Field(default=8, ge=1, le=100, description="text calls for the clock comparison")
    audio_clips: int = Field(default=2, ge=0, le=64, description="golden clips for the word comparison")
    min_words: int = Field(default=3, ge=1, description="fewer matched words: no word verdict")


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clock_offsets_ms: list[float] = Field(default_factory=list)
    word_offsets_ms: list[float] = Field(default_factory=list)
    words_out_of_clip: int = 0
    stage_offsets_ms: list[float] = Field(
        default_factory=list, description="distance outside the request interval"
    )
    notes: list[str] = Field(default_factory=list)


def _word_pairs(
    service: list[dict[str, object]], reference: list[tuple[str, float, float]], language: str
) -> list[float]:
    """Start-time deltas (ms) of the words both transcripts share, matched in order."""
    ref = [(normalise(w, language), s) for w, s, _ in reference]
    out: list[float] = []
    j = 0
    for w in service:
        word = normalise(str(w.get("word", "")), language)
        if not word:
            continue
        for k in range(j, min(j + 3, len(ref))):  # allow a skipped word on either side
            if ref[k][0] == word:
                out.append((float(w.get("start", 0.0)) - ref[k][1]) * 1000)  # type: ignore[arg-type]
                j = k + 1
                break
    return out


def measure(ctx: DeepContext, version: str, th: Thresholds) -> Measurement:
    m = Measurement()
    golden = ctx.golden()
    texts = [t.text for t in golden.texts] or [i.caption for i in golden.images]
    with ctx.client(version) as client:
        for i in range(th.probes):
            probe = client.embed_texts([texts[i % len(texts)]])
            c = probe.calls[0] if probe.calls else None
            if c is not None and c.server_time is not None:
                m.clock_offsets_ms.append(round((c.server_time - c.client_midpoint) * 1000, 2))
        ctx.progress(f"{version}: clock probes", th.probes, th.probes)
        if not m.clock_offsets_ms:
            m.notes.append("the service reports no server time (X-Server-Time or body timestamp)")
        if golden.images:
            import base64

            img = golden.images[0]
            try:
                call = client.router(
                    {"text": img.caption, "image_b64": base64.b64encode(img.file.read_bytes()).decode()}
                )
                for st in call.body.get("stages") or []:
                    for key in ("started_at", "ended_at"):
                        t = float(st[key])
                        outside = max(call.sent_at - t, t - call.received_at, 0.0)
                        m.stage_offsets_ms.append(round(outside * 1000 * (1 if t >= call.sent_at else -1), 2))
            except (ServiceError, KeyError, TypeError, ValueError) as exc:
                m.notes.append(f"router stages not compared: {str(exc)[:160]}")
        for i, clip in enumerate(golden.audio[: th.audio_clips], 1):
            try:
                call = client.transcribe(clip.file, clip.language)
            except ServiceError as exc:
                m.notes.append(f"{clip.id}: {str(exc)[:160]}")
                continue
            words = [w for seg in call.body.get("segments") or [] for w in seg.get("words") or []]
            duration = float(call.body.get("duration_s") or clip.duration_s)
            m.words_out_of_clip += sum(
                1
                for w in words
                if not (-0.05 <= float(w.get("start", 0)) <= float(w.get("end", 0)) <= duration + 0.05)
            )
            try:
                ref = ctx.encoders().transcribe(clip.file, clip.language)
            except ReferenceModelError as exc:
                m.notes.append(f"word timestamps not compared: {exc}")
                break
            m.word_offsets_ms.extend(round(d, 1) for d in _word_pairs(words, ref.words, clip.language))
            ctx.progress(f"{version}: word timestamps", i, th.audio_clips)
    return m


def _dist(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.abs(np.asarray(values))
    return {
        "n": len(values),
        "median": round(float(statistics.median(values)), 2),
        "p95_abs": round(float(np.percentile(a, 95)), 2),
        "max_abs": round(float(a.max()), 2),
    }


def judge(
    ctx: DeepContext, version: str, m: Measurement, base: Measurement | None, th: Thresholds
) -> VersionOutcome:
    figures: dict[str, object] = {
        "clock_offset_ms": _dist(m.clock_offsets_ms),
        "word_offset_ms": _dist(m.word_offsets_ms),
        "router_stage_outside_ms": _dist(m.stage_offsets_ms),
        "words_out_of_clip": m.words_out_of_clip,
        "notes": m.notes,
    }
    problems: list[str] = []
    measured = 0
    if m.clock_offsets_ms:
        measured += 1
        med = statistics.median(m.clock_offsets_ms)
        if abs(med) > th.max_clock_offset_ms:
            problems.append(
                f"service clock {med:+.0f} ms off the client's (median of {len(m.clock_offsets_ms)})"
            )
    if len(m.word_offsets_ms) >= th.min_words:
        measured += 1
        med = statistics.median(m.word_offsets_ms)
        if abs(med) > th.max_word_offset_ms:
            problems.append(
                f"word timestamps {med:+.0f} ms off the reference's "
                f"(median of {len(m.word_offsets_ms)} words)"
            )
    if m.stage_offsets_ms:
        measured += 1
        far = [d for d in m.stage_offsets_ms if abs(d) > th.max_clock_offset_ms]
        if far:
            problems.append(
                f"{len(far)} router stage times outside the request by up to {max(map(abs, far)):.0f} ms"
            )
    if m.words_out_of_clip:
        problems.append(f"{m.words_out_of_clip} word timestamps outside the clip")
    findings: list[Finding] = []
    if problems:
        findings.append(
            finding(
                ctx,
                CHECK,
                "clock_skew",
                "; ".join(problems),
                version=version,
                title="timestamps across streams disagree (clock skew or misaligned audio/text timing)",
                severity="high",
                component="infrastructure",
                action="check NTP/chrony on the version's nodes and the timestamp source of the audio "
                "pipeline; "
                "cross-modal joins by time are unreliable until fixed",
            )
        )
    status = Status.FAILED if problems else Status.OK if measured else Status.INSUFFICIENT_EVIDENCE
    clock = figures["clock_offset_ms"]
    head = f"clock offset median {clock['median']:+.0f} ms" if isinstance(clock, dict) else "no clock reading"
    words = figures["word_offset_ms"]
    if isinstance(words, dict):
        head += f", word offset median {words['median']:+.0f} ms over {words['n']} words"
    summary = head + ("; " + "; ".join(problems) if problems else "")
    return VersionOutcome(version=version, status=status, summary=summary, figures=figures, findings=findings)


SPEC = register(
    CheckSpec(
        name=CHECK,
        modality="timing",
        inputs=("service", "golden.audio", "golden.texts", "reference.whisper"),
        thresholds=Thresholds,
        measurement=Measurement,
        measure=measure,
        judge=judge,
        gpu=True,  # loads a reference model: runs where the model cache is (the GPU pod)
        doc=__doc__ or "",
    )
)
