"""Phase-2 check ``embedding_alignment``: are the embedding spaces still the same shape?

From each version's golden image and caption embeddings:

- **dimension**: image vs text (the runbook's "embedding dimension mismatch"), each vs the reference
  encoder's and the baseline's — a mismatch is ``failed`` with both dimensions and the runbook fix;
- **norm**: the mean L2 norm of the raw vectors vs the baseline (a service that stops normalising, or
  a quantisation change, moves it);
- **anisotropy**: the mean pairwise cosine within a modality (how much the vectors crowd into one
  direction; a collapsing or shifted encoder raises it) vs the baseline.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.checks.registry import CheckSpec, register
from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome, finding
from diagnostics.deep_diagnosis.encoders import ReferenceModelError
from diagnostics.deep_diagnosis.probe import FloatArray, golden_embeddings, unit
from diagnostics.incident.results import Finding, Status

CHECK = "embedding_alignment"


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_norm_shift: float = Field(default=0.05, ge=0, description="relative change of the mean norm")
    max_anisotropy_shift: float = Field(default=0.1, ge=0, description="absolute change of the mean cosine")


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_dim: int
    text_dim: int
    reference_dim: int | None = None
    image_norm: float
    text_norm: float
    image_anisotropy: float
    text_anisotropy: float


def anisotropy(x: FloatArray) -> float:
    """Mean cosine over distinct pairs of rows."""
    n = len(x)
    if n < 2:
        return 0.0
    u = unit(x)
    s = u @ u.T
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))


def measure(ctx: DeepContext, version: str, th: Thresholds) -> Measurement:
    got = golden_embeddings(ctx, version)
    ref_dim: int | None = None
    if ctx.encoders().has_clip:
        try:
            ref_dim = int(ctx.memo("reference_clip_dim", ctx.encoders().clip_dim))
        except ReferenceModelError:
            ref_dim = None
    img, txt = got.images.vectors, got.texts.vectors
    return Measurement(
        image_dim=got.images.dim,
        text_dim=got.texts.dim,
        reference_dim=ref_dim,
        image_norm=float(np.linalg.norm(img, axis=1).mean()),
        text_norm=float(np.linalg.norm(txt, axis=1).mean()),
        image_anisotropy=anisotropy(img),
        text_anisotropy=anisotropy(txt),
    )


def judge(
    ctx: DeepContext, version: str, m: Measurement, base: Measurement | None, th: Thresholds
) -> VersionOutcome:
    failed: list[str] = []
    shifted: list[str] = []
    if m.image_dim != m.text_dim:
        failed.append(
            f"embedding dimension mismatch: image encoder returns {m.image_dim}-d vectors, "
            f"text encoder {m.text_dim}-d"
        )
    if m.reference_dim is not None:
        wrong = [
            f"{k} {d}-d" for k, d in (("image", m.image_dim), ("text", m.text_dim)) if d != m.reference_dim
        ]
        if wrong:
            failed.append(f"{', '.join(wrong)} vs the reference encoder's {m.reference_dim}-d")
    if base is not None:
        for kind, now, then in (("image", m.image_dim, base.image_dim), ("text", m.text_dim, base.text_dim)):
            if now != then and not any(kind in f for f in failed):
                failed.append(f"{kind} embeddings {now}-d, baseline {then}-d")
        for kind, norm, norm0 in (
            ("image", m.image_norm, base.image_norm),
            ("text", m.text_norm, base.text_norm),
        ):
            if norm0 > 0 and abs(norm - norm0) / norm0 > th.max_norm_shift:
                shifted.append(f"{kind} mean norm {norm0:.4f} -> {norm:.4f}")
        for kind, a, a0 in (
            ("image", m.image_anisotropy, base.image_anisotropy),
            ("text", m.text_anisotropy, base.text_anisotropy),
        ):
            if abs(a - a0) > th.max_anisotropy_shift:
                shifted.append(f"{kind} anisotropy {a0:.3f} -> {a:.3f}")
    figures = m.model_dump()
    findings: list[Finding] = []
    if failed:
        findings.append(
            finding(
                ctx,
                CHECK,
                "embedding_dim_mismatch",
                "; ".join(failed),
                version=version,
                title="",
                channel="image",
            )
        )
    if shifted:
        findings.append(
            finding(
                ctx,
                CHECK,
                "embedding_space_shift",
                "; ".join(shifted),
                version=version,
                title="the embedding space changed shape (norm or anisotropy) against the baseline",
                severity="medium",
                action="compare the encoder version and its normalisation with stable's; "
                "watch the drift check",
            )
        )
    status = Status.FAILED if failed else Status.DEGRADED if shifted else Status.OK
    dims = f"image {m.image_dim}-d, text {m.text_dim}-d" + (
        f", reference {m.reference_dim}-d" if m.reference_dim else ""
    )
    summary = dims + (
        "; " + "; ".join(failed + shifted)
        if failed or shifted
        else "; norm and anisotropy as baseline"
        if base
        else ""
    )
    return VersionOutcome(version=version, status=status, summary=summary, figures=figures, findings=findings)


SPEC = register(
    CheckSpec(
        name=CHECK,
        modality="embedding",
        inputs=("service", "golden.images", "reference.clip", "baseline"),
        thresholds=Thresholds,
        measurement=Measurement,
        measure=measure,
        judge=judge,
        gpu=True,  # loads a reference model: runs where the model cache is (the GPU pod)
        doc=__doc__ or "",
    )
)
