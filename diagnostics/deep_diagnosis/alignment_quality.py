"""Phase-2 check ``alignment_quality``: the seed's alignment-quality metrics, each in a target band.

Image→text retrieval over the golden captions read as a classifier and as a captioner:

- **modality-F1**: alignment as classification — each image is assigned the caption of its nearest
  text embedding; macro-F1 of those assignments over the distinct captions;
- **cross-modal BLEU**: corpus BLEU-4 of the retrieved captions against the true ones, computed by
  sacrebleu (:func:`corpus_bleu`: tokenizer ``13a``, or ``zh`` for captions with Han characters;
  lower-cased; ``exp`` smoothing; brevity penalty), on a 0–1 scale (sacrebleu's score / 100) —
  partial credit when a near caption is retrieved ("a small red circle" for "a large red circle");
  the figures carry sacrebleu's signature (``cross_modal_bleu_signature``);
- **visual–textual CER**: character error rate (jiwer) of the retrieved captions against the true ones.

Bands (``[low, high]``) come from ``thresholds.yaml`` ``deep.alignment_quality``; outside a band is
``failed``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from diagnostics.checks.registry import CheckSpec, register
from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome, finding
from diagnostics.deep_diagnosis.probe import golden_embeddings
from diagnostics.incident.results import Finding, Status

CHECK = "alignment_quality"

Band = tuple[float, float]


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality_f1: Band = Field(default=(0.8, 1.0))
    cross_modal_bleu: Band = Field(default=(0.6, 1.0))
    visual_textual_cer: Band = Field(default=(0.0, 0.15))

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        for name in ("modality_f1", "cross_modal_bleu", "visual_textual_cer"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: band [{low}, {high}] is empty (low > high)")
        return self


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_dim: int
    text_dim: int
    modality_f1: float | None = None
    cross_modal_bleu: float | None = None
    visual_textual_cer: float | None = None
    bleu_signature: str | None = Field(default=None, description="sacrebleu's signature of the BLEU")
    retrieved: list[str] = Field(default_factory=list)


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Macro-averaged F1 over the classes that occur in ``truth``."""
    scores = []
    for label in sorted(set(truth)):
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == label and p == label)
        fp = sum(1 for t, p in zip(truth, predicted, strict=True) if t != label and p == label)
        fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores)) if scores else 0.0


#: sacrebleu's settings: its default smoothing (``exp``: a zero n-gram count k-th in a row counts as
#: 1 / 2^k matches, Chen & Cherry 2014 method 3, as mteval-v13a), captions compared lower-cased.
BLEU_SMOOTHING = "exp"
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def bleu_tokenizer(texts: Sequence[str]) -> str:
    """sacrebleu's ``zh`` tokenizer (a token per Han character) when a text has Han characters,
    else ``13a`` (mteval-v13a's, sacrebleu's default)."""
    return "zh" if any(_HAN.search(t) for t in texts) else "13a"


def corpus_bleu_score(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, str]:
    """Corpus BLEU-4 (sacrebleu) of ``hypotheses`` against one reference each, on a 0–1 scale, and
    sacrebleu's signature of how it was computed (tokenizer, case, smoothing, version)."""
    from sacrebleu.metrics.bleu import BLEU

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    bleu = BLEU(tokenize=bleu_tokenizer(references), smooth_method=BLEU_SMOOTHING, lowercase=True)
    score = bleu.corpus_score(list(hypotheses), [list(references)]).score
    # sacrebleu's 100 can come out as 100.00000000000004: keep the metric inside [0, 1]
    return min(max(score / 100, 0.0), 1.0), str(bleu.get_signature())


def corpus_bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU-4 on a 0–1 scale (:func:`corpus_bleu_score` without the signature)."""
    return corpus_bleu_score(references, hypotheses)[0]


def quality(images: np.ndarray, texts: np.ndarray, captions: list[str]) -> dict[str, object]:
    import jiwer

    retrieved = [captions[j] for j in np.argmax(images @ texts.T, axis=1)]
    bleu, signature = corpus_bleu_score(captions, retrieved)
    return {
        "modality_f1": round(macro_f1(captions, retrieved), 4),
        "cross_modal_bleu": round(bleu, 4),
        "bleu_signature": signature,
        "visual_textual_cer": round(float(jiwer.cer(captions, retrieved)), 4),
        "retrieved": retrieved,
    }


def measure(ctx: DeepContext, version: str, th: Thresholds) -> Measurement:
    got = golden_embeddings(ctx, version)
    m = Measurement(image_dim=got.images.dim, text_dim=got.texts.dim)
    if got.images.dim != got.texts.dim:
        return m
    return m.model_copy(update=quality(got.images.vectors, got.texts.vectors, got.captions))


def judge(
    ctx: DeepContext, version: str, m: Measurement, base: Measurement | None, th: Thresholds
) -> VersionOutcome:
    if m.modality_f1 is None:
        evidence = f"image {m.image_dim}-d vs text {m.text_dim}-d embeddings: no retrieval possible"
        return VersionOutcome(
            version=version,
            status=Status.FAILED,
            summary=evidence,
            findings=[
                finding(
                    ctx, CHECK, "embedding_dim_mismatch", evidence, version=version, title="", channel="image"
                )
            ],
        )
    out: list[str] = []
    figures: dict[str, object] = {}
    for name in ("modality_f1", "cross_modal_bleu", "visual_textual_cer"):
        value = getattr(m, name)
        low, high = getattr(th, name)
        figures[name] = value
        figures[f"{name}_band"] = [low, high]
        if base is not None and getattr(base, name) is not None:
            figures[f"{name}_baseline"] = getattr(base, name)
        if not low <= value <= high:
            out.append(f"{name} {value:.3f} outside [{low:g}, {high:g}]")
    if m.bleu_signature:
        figures["cross_modal_bleu_signature"] = m.bleu_signature
    findings: list[Finding] = []
    if out:
        findings.append(
            finding(
                ctx,
                CHECK,
                "alignment_quality_out_of_band",
                "; ".join(out),
                version=version,
                title="cross-modal alignment quality left its target band",
                severity="high",
                action="see clip_consistency for the broken samples; roll back the canary if only it "
                "left the band",
                channel="image",
            )
        )
    summary = (
        f"modality-F1 {m.modality_f1:.3f}, BLEU {m.cross_modal_bleu:.3f}, CER {m.visual_textual_cer:.3f}"
        + ("; " + "; ".join(out) if out else "")
    )
    return VersionOutcome(
        version=version,
        status=Status.FAILED if out else Status.OK,
        summary=summary,
        figures=figures,
        findings=findings,
    )


SPEC = register(
    CheckSpec(
        name=CHECK,
        modality="image-text",
        inputs=("service", "golden.images"),
        thresholds=Thresholds,
        measurement=Measurement,
        measure=measure,
        judge=judge,
        doc=__doc__ or "",
    )
)
