"""Phase-2 check ``asr_check``: does the service still hear what the golden clips say?

Each golden clip goes through the version's transcription API (its language given, as a client
would). Per clip: the clip language's error rate against the expected text — WER for
space-delimited languages, CER for those written without spaces (Chinese folded Traditional ->
Simplified by OpenCC first), normalised as :func:`diagnostics.golden_set.error_rate` does, computed
by jiwer — the reference Whisper's transcript of the same clip as a second opinion (so a hard clip
is not blamed on the service), and the latency. A
timeout or an error answer is a finding (the runbook's audio timeout), not a missing value.
Judged on absolute bounds and against the baseline's mean error rate. An ``ok`` needs enough clips
behind it: no failing clip is ``ok`` only when the exact upper bound of the failing share (at
``confidence``) is under ``max_failing_share`` (0 of 11 clips: 23.8 % < 25 %); fewer clips than
that is ``insufficient_evidence`` (:mod:`diagnostics.stats.bounds`).
"""

from __future__ import annotations

import statistics

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.checks.registry import CheckSpec, register
from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome, finding
from diagnostics.deep_diagnosis.encoders import ReferenceModelError, Transcript
from diagnostics.deep_diagnosis.service import ServiceError
from diagnostics.golden_set import GoldenAudio, error_rate
from diagnostics.incident.results import Finding, Status
from diagnostics.stats.bounds import ShareVerdict, judge_share

CHECK = "asr_check"


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_error_rate: float = Field(default=0.25, ge=0, le=1, description="per clip: above it the clip fails")
    max_mean_error_rate: float = Field(default=0.15, ge=0, le=1, description="over the clips: failed")
    max_mean_increase: float = Field(
        default=0.1, ge=0, le=1, description="mean error rate rise vs the baseline"
    )
    max_failing_share: float = Field(default=0.25, ge=0, le=1, description="share of failing clips: failed")
    confidence: float = Field(default=0.95, ge=0.5, lt=1, description="of the failing share's bound")
    clip_timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_clips: int = Field(default=64, ge=1, description="golden clips sent per version (the first N)")
    reference: bool = Field(default=True, description="also transcribe with the reference Whisper")


class Clip(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    language: str
    metric: str
    expected: str
    transcript: str | None = None
    error_rate: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    timed_out: bool = False
    reference_transcript: str | None = None
    reference_error_rate: float | None = None


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clips: list[Clip]
    reference_error: str | None = None

    def mean_error_rate(self) -> float | None:
        rates = [c.error_rate for c in self.clips if c.error_rate is not None]
        return statistics.fmean(rates) if rates else None


def _reference(ctx: DeepContext, clips: list[GoldenAudio]) -> dict[str, Transcript] | str:
    enc = ctx.encoders()

    def compute() -> dict[str, Transcript] | str:
        out: dict[str, Transcript] = {}
        try:
            for i, clip in enumerate(clips, 1):
                out[clip.id] = enc.transcribe(clip.file, clip.language)
                ctx.progress("reference whisper", i, len(clips))
        except ReferenceModelError as exc:
            return str(exc)
        return out

    result: dict[str, Transcript] | str = ctx.memo("reference_whisper_golden", compute)
    return result


def measure(ctx: DeepContext, version: str, th: Thresholds) -> Measurement:
    clips = ctx.golden().audio[: th.max_clips]
    out: list[Clip] = []
    with ctx.client(version) as client:
        for i, clip in enumerate(clips, 1):
            row = Clip(id=clip.id, language=clip.language, metric=clip.metric, expected=clip.text)
            try:
                call = client.transcribe(clip.file, clip.language, timeout_s=th.clip_timeout_s)
                row.transcript = str(call.body["text"]).strip()
                row.latency_ms = round(call.latency_ms, 1)
                row.error_rate = round(error_rate(clip.text, row.transcript, clip.language), 4)
            except ServiceError as exc:
                if exc.kind == "unreachable" and i == 1:
                    raise  # the version is down: insufficient evidence, not an ASR verdict
                row.error = str(exc)[:300]
                row.timed_out = exc.kind == "timeout" or exc.status == 504
            out.append(row)
            ctx.progress(f"{version}: transcriptions", i, len(clips))
    m = Measurement(clips=out)
    if th.reference:
        ref = _reference(ctx, clips)
        if isinstance(ref, str):
            m.reference_error = ref
        else:
            for row in out:
                t = ref.get(row.id)
                if t is not None:
                    row.reference_transcript = t.text
                    row.reference_error_rate = round(error_rate(row.expected, t.text, row.language), 4)
    return m


def _unanswered_findings(
    ctx: DeepContext, version: str, timeouts: list[Clip], errors: list[Clip]
) -> list[Finding]:
    """A finding for the clips that timed out, and one for those answered with an error."""
    out: list[Finding] = []
    if timeouts:
        ids = ", ".join(c.id for c in timeouts)
        out.append(
            finding(
                ctx, CHECK, "audio_timeout", f"{len(timeouts)} clips timed out: {ids}",
                version=version, title="", channel="audio",
            )
        )  # fmt: skip
    if errors:
        out.append(
            finding(
                ctx,
                CHECK,
                "asr_errors",
                "; ".join(f"{c.id}: {c.error}" for c in errors[:3]),
                version=version,
                title="the transcription API answered errors on golden clips",
                component="audio_processor",
                channel="audio",
            )
        )
    return out


def judge(
    ctx: DeepContext, version: str, m: Measurement, base: Measurement | None, th: Thresholds
) -> VersionOutcome:
    findings: list[Finding] = []
    answered = [c for c in m.clips if c.error_rate is not None]
    timeouts = [c for c in m.clips if c.timed_out]
    errors = [c for c in m.clips if c.error and not c.timed_out]
    failing = [c for c in answered if c.error_rate is not None and c.error_rate > th.max_error_rate]
    # a clip the reference Whisper also gets wrong is hard audio, not a service fault
    blamed = [
        c for c in failing if c.reference_error_rate is None or c.reference_error_rate <= th.max_error_rate
    ]
    mean = m.mean_error_rate()
    latencies = [c.latency_ms for c in answered if c.latency_ms is not None]
    figures: dict[str, object] = {
        "clips": len(m.clips),
        "mean_error_rate": round(mean, 4) if mean is not None else None,
        "per_clip": {c.id: c.error_rate for c in m.clips},
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "latency_ms_max": round(max(latencies), 1) if latencies else None,
        "failing_clips": [c.id for c in blamed],
        "timeouts": [c.id for c in timeouts],
    }
    if m.reference_error:
        figures["reference"] = m.reference_error
    reasons: list[str] = []
    if mean is not None and mean > th.max_mean_error_rate:
        reasons.append(f"mean WER/CER {mean:.3f} > {th.max_mean_error_rate:g}")
    if m.clips and len(blamed) / len(m.clips) > th.max_failing_share:
        reasons.append(f"{len(blamed)}/{len(m.clips)} clips over {th.max_error_rate:g}")
    # the baseline's mean over the same clips (a run may send fewer clips than the baseline holds)
    answered_ids = {c.id for c in answered}
    base_clips = base.clips if base else []
    base_rates = [c.error_rate for c in base_clips if c.id in answered_ids and c.error_rate is not None]
    base_mean = statistics.fmean(base_rates) if base_rates else None
    if base_mean is not None and mean is not None:
        figures["baseline_mean_error_rate"] = round(base_mean, 4)
        if mean - base_mean > th.max_mean_increase:
            reasons.append(f"mean WER/CER rose {base_mean:.3f} -> {mean:.3f}")
    if reasons or blamed:
        worst = sorted(blamed, key=lambda c: -(c.error_rate or 0))[:5]
        detail = "; ".join(f"{c.id}: {c.error_rate:.2f} ({c.transcript!r} vs {c.expected!r})" for c in worst)
        findings.append(
            finding(
                ctx,
                CHECK,
                "asr_degraded",
                "; ".join(reasons + ([detail] if detail else [])),
                version=version,
                title="speech recognition got worse on the golden clips",
                severity="high" if reasons else "medium",
                component="audio_processor",
                action="check the audio pipeline before the model (decode, resampling, noise gate), "
                "then the ASR model version; roll back the canary if only it degraded",
                channel="audio",
            )
        )
    findings += _unanswered_findings(ctx, version, timeouts, errors)
    if not answered:
        status = Status.FAILED if timeouts or errors else Status.INSUFFICIENT_EVIDENCE
    elif reasons or len(timeouts) + len(errors) > th.max_failing_share * len(m.clips):
        status = Status.FAILED
    elif blamed or timeouts or errors:
        status = Status.DEGRADED
    else:
        bound = judge_share(0, len(m.clips), th.max_failing_share, th.confidence)
        figures["failing_share_bound"] = bound.model_dump(mode="json")
        # no failing clip is an ok only when the clips bound the failing share under its tolerance
        status = Status.OK if bound.verdict is ShareVerdict.UNDER else Status.INSUFFICIENT_EVIDENCE
        reasons.append(
            f"0 of {len(m.clips)} clips failing ({bound.reading()})"
            if status is Status.OK
            else f"too few clips for an ok: 0 of {len(m.clips)} failing ({bound.reading()})"
        )
    head = f"mean WER/CER {mean:.3f} over {len(answered)} clips" if mean is not None else "no transcript"
    extra = [f"{len(timeouts)} timeouts"] if timeouts else []
    extra += [f"{len(blamed)} failing clips"] if blamed else []
    summary = "; ".join([head, *extra, *reasons])
    return VersionOutcome(version=version, status=status, summary=summary, figures=figures, findings=findings)


SPEC = register(
    CheckSpec(
        name=CHECK,
        modality="audio",
        inputs=("service", "golden.audio", "reference.whisper", "baseline"),
        thresholds=Thresholds,
        measurement=Measurement,
        measure=measure,
        judge=judge,
        gpu=True,
        doc=__doc__ or "",
    )
)
