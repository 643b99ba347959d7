"""Phase-2 check ``clip_consistency``: do the service's image and text embeddings still mean the same?

On the golden pairs (each golden image and its caption) from each version:

- **alignment margin** = mean cosine of matched pairs − mean cosine of mismatched pairs (pairs whose
  captions differ; the golden set repeats some captions, and an equal caption is a match);
- **zero-shot retrieval Recall@1/@5** both ways (image→text, text→image);
- **per-sample cosine with the reference encoder** (the reference CLIP of targets.yaml): how far each
  service embedding is from what the model should produce for that input.

Judged against absolute bounds and the stored healthy baseline (``runbooks/baselines/<target>/``):
a sample whose matched cosine fell by more than ``sample_cosine_drop``, or whose service embedding
is further than ``min_reference_cosine`` from the reference's, is named as broken.

Which side moved tells the cause apart: an image-side misalignment leaves the text embeddings where
the reference puts them; when the text embeddings moved away as well (more than ``max_broken_share``
of either side), the whole embedding space shifted — a drift, which the ``drift`` check measures — and
the collapsed pairs are its consequence, reported at ``medium`` so that drift's finding leads.

An ``ok`` needs enough golden pairs behind it: no broken sample is ``ok`` only when the exact upper
bound of the broken share (at ``confidence``) is under ``max_broken_share`` (0 of 64 pairs: 4.6 %
< 10 %); fewer pairs than that is ``insufficient_evidence`` (:mod:`diagnostics.stats.bounds`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.checks.registry import CheckSpec, register
from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome, finding
from diagnostics.deep_diagnosis.encoders import ReferenceModelError
from diagnostics.deep_diagnosis.probe import FloatArray, golden_embeddings, reference_embeddings, same_caption
from diagnostics.incident.results import Finding, Status
from diagnostics.stats.bounds import ShareVerdict, judge_share

CHECK = "clip_consistency"
HIST_EDGES = [round(-1.0 + 0.1 * i, 1) for i in range(21)]  # cosine bins of the similarity histograms


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_margin: float = Field(default=0.3, description="matched − mismatched mean cosine below this: failed")
    max_margin_drop: float = Field(default=0.2, ge=0, description="margin fall vs the baseline: failed")
    min_recall_at_1: float = Field(default=0.8, ge=0, le=1)
    min_recall_at_5: float = Field(default=0.9, ge=0, le=1)
    max_recall_drop: float = Field(default=0.15, ge=0, le=1, description="Recall@1 fall vs the baseline")
    sample_cosine_drop: float = Field(default=0.2, ge=0, description="a pair's cosine fall: broken sample")
    min_reference_cosine: float = Field(default=0.98, ge=-1, le=1, description="service vs reference encoder")
    max_broken_share: float = Field(default=0.1, ge=0, le=1, description="more broken samples: failed")
    confidence: float = Field(default=0.95, ge=0.5, lt=1, description="of the broken share's bound")


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str]
    image_dim: int
    text_dim: int
    matched_cosine: list[float] = Field(default_factory=list)
    mismatched_mean: float | None = None
    mismatched_hist: list[int] = Field(
        default_factory=list, description="counts of mismatched-pair cosines in HIST_EDGES bins (for plots)"
    )
    margin: float | None = None
    recall: dict[str, float] = Field(default_factory=dict)  # i2t@1, i2t@5, t2i@1, t2i@5
    reference_image_cosine: list[float] | None = None
    reference_text_cosine: list[float] | None = None
    reference_error: str | None = None


def recall_at(sim: FloatArray, relevant: npt.NDArray[np.bool_], k: int) -> float:
    """Share of rows whose top-k columns contain a relevant one."""
    k = min(k, sim.shape[1])
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    hits = np.asarray(np.take_along_axis(relevant, top, axis=1).any(axis=1), dtype=bool)
    return float(hits.mean()) if hits.size else 0.0


def consistency_figures(images: FloatArray, texts: FloatArray, captions: list[str]) -> dict[str, object]:
    """Margin, matched cosines and Recall@1/@5 both ways for L2-normalised pairs (row i ↔ row i)."""
    sim = images @ texts.T
    relevant = same_caption(captions)
    matched = np.diag(sim)
    mism = sim[~relevant]
    return {
        "matched_cosine": [round(float(x), 6) for x in matched],
        "mismatched_mean": float(mism.mean()) if mism.size else None,
        "mismatched_hist": [int(c) for c in np.histogram(np.clip(mism, -1, 1), bins=HIST_EDGES)[0]],
        "margin": float(matched.mean() - mism.mean()) if mism.size else None,
        "recall": {
            "i2t@1": recall_at(sim, relevant, 1),
            "i2t@5": recall_at(sim, relevant, 5),
            "t2i@1": recall_at(sim.T, relevant.T, 1),
            "t2i@5": recall_at(sim.T, relevant.T, 5),
        },
    }


def measure(ctx: DeepContext, version: str, th: Thresholds) -> Measurement:
    got = golden_embeddings(ctx, version)
    m = Measurement(ids=got.ids, image_dim=got.images.dim, text_dim=got.texts.dim)
    if got.images.dim != got.texts.dim:
        return m  # nothing comparable; judge reports the mismatch
    m = m.model_copy(update=consistency_figures(got.images.vectors, got.texts.vectors, got.captions))
    try:
        ref_img, ref_txt = reference_embeddings(ctx)
    except ReferenceModelError as exc:
        return m.model_copy(update={"reference_error": str(exc)})
    if ref_img.shape[1] == got.images.dim:
        m.reference_image_cosine = [round(float(x), 6) for x in np.sum(ref_img * got.images.vectors, axis=1)]
    if ref_txt.shape[1] == got.texts.dim:
        m.reference_text_cosine = [round(float(x), 6) for x in np.sum(ref_txt * got.texts.vectors, axis=1)]
    return m


def _dim_mismatch(ctx: DeepContext, version: str, m: Measurement) -> VersionOutcome:
    """Image and text embeddings of different sizes: nothing to compare, the version failed."""
    evidence = f"image embeddings are {m.image_dim}-d, text embeddings {m.text_dim}-d: no cosine between them"
    return VersionOutcome(
        version=version,
        status=Status.FAILED,
        summary=evidence,
        figures={"image_dim": m.image_dim, "text_dim": m.text_dim},
        findings=[
            finding(
                ctx, CHECK, "embedding_dim_mismatch", evidence, version=version, title="", channel="image"
            )
        ],
    )


def _below_bounds(margin: float, recall: dict[str, float], th: Thresholds) -> list[str]:
    """The absolute bounds the margin and the recalls fall below."""
    fail: list[str] = []
    if margin < th.min_margin:
        fail.append(f"margin {margin:.3f} < {th.min_margin:g}")
    if recall["i2t@1"] < th.min_recall_at_1 or recall["t2i@1"] < th.min_recall_at_1:
        fail.append(
            f"Recall@1 i2t {recall['i2t@1']:.2f} / t2i {recall['t2i@1']:.2f} < {th.min_recall_at_1:g}"
        )
    if recall["i2t@5"] < th.min_recall_at_5 or recall["t2i@5"] < th.min_recall_at_5:
        fail.append(
            f"Recall@5 i2t {recall['i2t@5']:.2f} / t2i {recall['t2i@5']:.2f} < {th.min_recall_at_5:g}"
        )
    return fail


def _fell_from_baseline(
    m: Measurement,
    margin: float,
    base: Measurement,
    base_margin: float,
    th: Thresholds,
    broken: dict[str, list[str]],
) -> list[str]:
    """What fell too far from the baseline; each pair whose cosine fell is added to ``broken``."""
    fail: list[str] = []
    if base_margin - margin > th.max_margin_drop:
        fail.append(f"margin fell {base_margin:.3f} -> {margin:.3f} (> {th.max_margin_drop:g})")
    drop = base.recall.get("i2t@1", 0) - m.recall["i2t@1"]
    if drop > th.max_recall_drop:
        fail.append(f"Recall@1 i2t fell {base.recall['i2t@1']:.2f} -> {m.recall['i2t@1']:.2f}")
    for sid, now, then in zip(m.ids, m.matched_cosine, base.matched_cosine, strict=True):
        if then - now > th.sample_cosine_drop:
            broken.setdefault(sid, []).append(f"pair cosine {then:.3f} -> {now:.3f}")
    return fail


def _moved_from_reference(
    m: Measurement, th: Thresholds, figures: dict[str, object], broken: dict[str, list[str]]
) -> dict[str, int]:
    """Per side, how many service embeddings are too far from the reference encoder's (each is added to
    ``broken``); each side's minimum cosine goes into ``figures``."""
    moved: dict[str, int] = {}
    for kind, cos in (("image", m.reference_image_cosine), ("text", m.reference_text_cosine)):
        if cos is None:
            continue
        figures[f"reference_{kind}_cosine_min"] = round(min(cos), 4)
        moved[kind] = 0
        for sid, c in zip(m.ids, cos, strict=True):
            if c < th.min_reference_cosine:
                broken.setdefault(sid, []).append(f"{kind} vs reference {c:.3f}")
                moved[kind] += 1
    return moved


def _misalignment_finding(
    ctx: DeepContext,
    version: str,
    evidence: str,
    failed: bool,
    space_shift: bool,
    moved: dict[str, int],
    samples: int,
    th: Thresholds,
) -> Finding:
    """The finding of a misaligned version; a shifted space is drift's consequence, so only medium."""
    if space_shift:
        evidence = (
            f"image and text embeddings both moved from the reference encoder's ({moved['image']} and "
            f"{moved['text']} of {samples} below {th.min_reference_cosine:g}): the embedding space "
            "shifted (see drift), not the images away from the texts; " + evidence
        )
    return finding(
        ctx,
        CHECK,
        "image_text_misalignment",
        evidence,
        version=version,
        title="CLIP image and text embeddings no longer agree on the golden pairs",
        severity="high" if failed and not space_shift else "medium",
        component="embedding",
        action=(
            "both encoders moved: follow the drift finding; compare the canary's CLIP weights and "
            "inputs with stable's, roll back the canary if its image-text margin collapsed"
            if space_shift
            else "compare the canary's image encoder weights and preprocessing with stable's; "
            "roll back the canary if its image-text margin collapsed"
        ),
        channel="image",
    )


def judge(
    ctx: DeepContext, version: str, m: Measurement, base: Measurement | None, th: Thresholds
) -> VersionOutcome:
    if m.image_dim != m.text_dim:
        return _dim_mismatch(ctx, version, m)
    assert m.margin is not None
    figures: dict[str, object] = {
        "margin": round(m.margin, 4),
        "recall": m.recall,
        "samples": len(m.ids),
        # for the report's similarity histograms: matched pairs (per sample) vs mismatched pairs (binned)
        "matched_cosine": dict(zip(m.ids, m.matched_cosine, strict=True)),
        "mismatched_hist": m.mismatched_hist,
        "hist_edges": HIST_EDGES,
    }
    fail = _below_bounds(m.margin, m.recall, th)
    broken: dict[str, list[str]] = {}
    if base is not None and base.margin is not None and base.ids == m.ids:
        figures["baseline_margin"] = round(base.margin, 4)
        fail += _fell_from_baseline(m, m.margin, base, base.margin, th, broken)
    moved = _moved_from_reference(m, th, figures, broken)
    figures["moved_from_reference"] = moved
    # both sides moved: the space shifted (drift), not the images away from the texts
    space_shift = bool(m.ids) and all(
        moved.get(k, 0) / len(m.ids) > th.max_broken_share for k in ("image", "text")
    )
    if m.reference_error:
        figures["reference"] = m.reference_error
    share = len(broken) / len(m.ids) if m.ids else 0.0
    figures["broken_samples"] = sorted(broken)
    figures["broken_share"] = round(share, 4)
    if share > th.max_broken_share:
        fail.append(f"{len(broken)}/{len(m.ids)} samples broken")
    bound = judge_share(len(broken), len(m.ids), th.max_broken_share, th.confidence)
    fail_free = ""
    figures["broken_share_bound"] = bound.model_dump(mode="json")
    if fail:
        status = Status.FAILED
    elif broken:
        status = Status.DEGRADED
    elif bound.verdict is not ShareVerdict.UNDER:
        # no broken pair, but too few pairs to bound the broken share under its tolerance
        status = Status.INSUFFICIENT_EVIDENCE
        fail.append(f"too few golden pairs for an ok: 0 of {len(m.ids)} broken ({bound.reading()})")
    else:
        status = Status.OK
        fail_free = f"0 of {len(m.ids)} pairs broken ({bound.reading()})"
    named = ", ".join(f"{sid} ({'; '.join(why)})" for sid, why in sorted(broken.items())[:8])
    head = f"margin {m.margin:.3f}, R@1 i2t {m.recall['i2t@1']:.2f} t2i {m.recall['t2i@1']:.2f}"
    findings: list[Finding] = []
    if status in (Status.FAILED, Status.DEGRADED):
        evidence = head + ("; " + "; ".join(fail) if fail else "") + (f"; broken: {named}" if named else "")
        failed = status is Status.FAILED
        findings.append(
            _misalignment_finding(ctx, version, evidence, failed, space_shift, moved, len(m.ids), th)
        )
    summary = (
        head
        + (f"; {len(broken)} broken samples" if broken else "")
        + ("; " + "; ".join(fail) if fail else "")
        + (f"; {fail_free}" if fail_free else "")
    )
    return VersionOutcome(version=version, status=status, summary=summary, figures=figures, findings=findings)


SPEC = register(
    CheckSpec(
        name=CHECK,
        modality="image-text",
        inputs=("service", "golden.images", "reference.clip", "baseline"),
        thresholds=Thresholds,
        measurement=Measurement,
        measure=measure,
        judge=judge,
        gpu=True,
        doc=__doc__ or "",
    )
)
