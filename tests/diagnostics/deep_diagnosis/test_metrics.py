"""The phase-2 statistics and judges on hand-made numbers: each verdict follows from the figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from diagnostics.deep_diagnosis import (
    alignment_quality,
    asr_check,
    clip_consistency,
    embedding_alignment,
    temporal_alignment,
)
from diagnostics.deep_diagnosis.base import DeepContext, worst
from diagnostics.deep_diagnosis.phase import phase2_evidence
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks


@pytest.fixture(scope="module")
def ctx() -> DeepContext:
    books = load_runbooks()
    return DeepContext(books=books, target=books.targets.get("testbed"))


def _pairs(n: int = 8, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    texts = base / np.linalg.norm(base, axis=1, keepdims=True)
    noisy = base + 0.05 * rng.normal(size=(n, dim))
    images = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    return images, texts, [f"caption {i}" for i in range(n)]


def test_recall_counts_an_equal_caption_as_a_hit() -> None:
    sim = np.array([[0.1, 0.9, 0.2], [0.8, 0.3, 0.1], [0.1, 0.2, 0.7]])
    relevant = np.eye(3, dtype=bool)
    assert clip_consistency.recall_at(sim, relevant, 1) == pytest.approx(1 / 3)
    assert clip_consistency.recall_at(sim, relevant, 2) == pytest.approx(2 / 3)  # row 0 ranks itself last
    assert clip_consistency.recall_at(sim, relevant, 3) == pytest.approx(1.0)
    relevant[0, 1] = relevant[1, 0] = True  # captions 0 and 1 read the same
    assert clip_consistency.recall_at(sim, relevant, 1) == pytest.approx(1.0)


def test_aligned_pairs_have_a_wide_margin_and_perfect_recall() -> None:
    images, texts, captions = _pairs()
    f = clip_consistency.consistency_figures(images, texts, captions)
    assert f["margin"] > 0.8  # type: ignore[operator]
    assert f["recall"] == {"i2t@1": 1.0, "i2t@5": 1.0, "t2i@1": 1.0, "t2i@5": 1.0}
    rotated = images[np.roll(np.arange(8), 1)]
    g = clip_consistency.consistency_figures(rotated, texts, captions)
    assert g["recall"]["i2t@1"] == 0.0 and g["margin"] < 0  # type: ignore[index,operator]


def _clip_baseline() -> clip_consistency.Measurement:
    """A healthy CLIP baseline of 10 golden pairs (img-0 .. img-9): matched cosine 0.9, perfect recall."""
    return clip_consistency.Measurement(
        ids=[f"img-{i}" for i in range(10)], image_dim=16, text_dim=16, matched_cosine=[0.9] * 10,
        mismatched_mean=0.0, margin=0.9, recall={"i2t@1": 1.0, "i2t@5": 1.0, "t2i@1": 1.0, "t2i@5": 1.0},
    )  # fmt: skip


def test_clip_judge_names_the_broken_samples_against_the_baseline(ctx: DeepContext) -> None:
    th = clip_consistency.Thresholds()
    base = _clip_baseline()
    now = base.model_copy(update={"matched_cosine": [0.9] * 9 + [0.3], "margin": 0.84})
    out = clip_consistency.judge(ctx, "canary", now, base, th)
    assert out.status is Status.DEGRADED  # 1 of 10 broken: under max_broken_share... 0.1 is not above
    assert out.figures["broken_samples"] == ["img-9"]
    assert "img-9 (pair cosine 0.900 -> 0.300)" in out.findings[0].evidence
    collapsed = now.model_copy(update={"margin": 0.01, "recall": {**base.recall, "i2t@1": 0.1}})
    out = clip_consistency.judge(ctx, "canary", collapsed, base, th)
    assert out.status is Status.FAILED and "margin 0.010 < 0.3" in out.summary
    assert out.findings[0].version == "canary" and out.findings[0].channel == "image"


def test_clip_judge_tells_images_moved_from_texts_apart_from_the_whole_space_moving(ctx: DeepContext) -> None:
    th = clip_consistency.Thresholds()
    base = _clip_baseline()
    collapsed = base.model_copy(
        update={"matched_cosine": [0.5] * 10, "margin": 0.1, "reference_image_cosine": [0.6] * 10}
    )
    # images rotated away, texts where the reference puts them: an image-side misalignment (high)
    images_only = collapsed.model_copy(update={"reference_text_cosine": [0.999] * 10})
    out = clip_consistency.judge(ctx, "canary", images_only, base, th)
    (f,) = out.findings
    assert out.status is Status.FAILED and f.severity.value == "high"
    assert out.figures["moved_from_reference"] == {"image": 10, "text": 0}
    assert "image encoder" in (f.action or "") and "shifted" not in f.evidence
    # texts moved too: the space drifted; the check still fails, its finding is medium so drift leads
    both = collapsed.model_copy(update={"reference_text_cosine": [0.8] * 8 + [0.999] * 2})
    out = clip_consistency.judge(ctx, "canary", both, base, th)
    (f,) = out.findings
    assert out.status is Status.FAILED and f.severity.value == "medium"
    assert out.figures["moved_from_reference"] == {"image": 10, "text": 8}
    assert f.evidence.startswith(
        "image and text embeddings both moved from the reference encoder's (10 and 8"
    )
    assert "drift" in (f.action or "")
    # one stray text sample (not above max_broken_share) does not make it a shift of the space
    one = collapsed.model_copy(update={"reference_text_cosine": [0.8] + [0.999] * 9})
    assert clip_consistency.judge(ctx, "canary", one, base, th).findings[0].severity.value == "high"


def test_a_dimension_mismatch_fails_with_both_dimensions_and_the_runbook_fix(ctx: DeepContext) -> None:
    m = embedding_alignment.Measurement(
        image_dim=512,
        text_dim=128,
        reference_dim=128,
        image_norm=1,
        text_norm=1,
        image_anisotropy=0,
        text_anisotropy=0,
    )
    out = embedding_alignment.judge(ctx, "canary", m, None, embedding_alignment.Thresholds())
    assert out.status is Status.FAILED
    f = out.findings[0]
    assert f.problem == "embedding_dim_mismatch" and "512-d" in f.evidence and "128-d" in f.evidence
    assert f.action and f.runbook == "embedding_dim_mismatch.md"


def test_norm_and_anisotropy_shifts_degrade(ctx: DeepContext) -> None:
    base = embedding_alignment.Measurement(
        image_dim=8, text_dim=8, image_norm=1.0, text_norm=1.0, image_anisotropy=0.05, text_anisotropy=0.05
    )
    now = base.model_copy(update={"image_norm": 1.2, "text_anisotropy": 0.4})
    out = embedding_alignment.judge(ctx, "canary", now, base, embedding_alignment.Thresholds())
    assert out.status is Status.DEGRADED
    assert (
        "image mean norm 1.0000 -> 1.2000" in out.summary and "text anisotropy 0.050 -> 0.400" in out.summary
    )


def test_anisotropy_of_identical_rows_is_one_and_of_orthogonal_rows_zero() -> None:
    assert embedding_alignment.anisotropy(np.ones((4, 3))) == pytest.approx(1.0)
    assert embedding_alignment.anisotropy(np.eye(4)) == pytest.approx(0.0)


def _clip(cid: str, er: float | None, ref: float | None = 0.0, **kw: object) -> asr_check.Clip:
    return asr_check.Clip(
        id=cid,
        language="en",
        metric="wer",
        expected="x",
        transcript="y",
        error_rate=er,
        reference_error_rate=ref,
        **kw,
    )  # type: ignore[arg-type]


def test_asr_judge_blames_the_service_only_where_the_reference_heard_right(ctx: DeepContext) -> None:
    th = asr_check.Thresholds()
    clips = [_clip("b", 0.6, ref=0.6)] + [_clip(f"c{i}", 0.1) for i in range(11)]
    m = asr_check.Measurement(clips=clips)
    out = asr_check.judge(ctx, "canary", m, None, th)
    # b is hard audio: the reference got it wrong too; 0 of 12 failing bounds the share at 22.1 % < 25 %
    assert out.status is Status.OK and out.figures["failing_clips"] == []
    assert out.summary == (
        "mean WER/CER 0.142 over 12 clips; 0 of 12 clips failing (upper bound 22.09% < 25% at 95%)"
    )
    bad = asr_check.Measurement(clips=[_clip(c.id, 0.8) for c in clips])
    out = asr_check.judge(ctx, "canary", bad, m, th)
    assert out.status is Status.FAILED
    assert len(out.figures["failing_clips"]) == 12 and out.figures["baseline_mean_error_rate"] == 0.1417
    assert "mean WER/CER 0.800 > 0.15" in out.findings[0].evidence


def test_too_few_clean_clips_are_no_asr_ok(ctx: DeepContext) -> None:
    # 0 failing clips in 4 still allow 52.7 % failing (95 %): no verdict on the failing share
    m = asr_check.Measurement(clips=[_clip(c, 0.0) for c in "abcd"])
    out = asr_check.judge(ctx, "canary", m, None, asr_check.Thresholds())
    assert out.status is Status.INSUFFICIENT_EVIDENCE and not out.findings
    assert out.figures["failing_share_bound"]["upper"] == pytest.approx(1 - 0.05 ** (1 / 4))
    assert "too few clips for an ok: 0 of 4 failing" in out.summary


def test_too_few_golden_pairs_are_no_clip_ok(ctx: DeepContext) -> None:
    th = clip_consistency.Thresholds()
    base = _clip_baseline()  # 10 pairs: 0 broken still allow 25.9 % broken, over the 10 % tolerance
    out = clip_consistency.judge(ctx, "canary", base, base, th)
    assert out.status is Status.INSUFFICIENT_EVIDENCE and not out.findings
    assert "too few golden pairs for an ok: 0 of 10 broken (bounds 0.00% - 25.89% at 95%" in out.summary
    ids = [f"img-{i}" for i in range(64)]
    many = base.model_copy(update={"ids": ids, "matched_cosine": [0.9] * 64})
    ok = clip_consistency.judge(ctx, "canary", many, None, th)
    assert ok.status is Status.OK and ok.summary.endswith(
        "0 of 64 pairs broken (upper bound 4.57% < 10% at 95%)"
    )


def test_asr_timeouts_are_findings_not_missing_values(ctx: DeepContext) -> None:
    m = asr_check.Measurement(
        clips=[_clip("a", None, timed_out=True, error="timeout")] * 3 + [_clip("d", 0.0)]
    )
    out = asr_check.judge(ctx, "canary", m, None, asr_check.Thresholds())
    assert out.status is Status.FAILED
    assert [f.problem for f in out.findings] == ["audio_timeout"] and "3 clips timed out" in out.findings[
        0
    ].evidence


def test_word_pairs_match_words_in_order_and_measure_start_deltas() -> None:
    service = [
        {"word": " Is", "start": 2.0},
        {"word": " this", "start": 2.3},
        {"word": " stock?", "start": 2.9},
    ]
    reference = [("is", 0.0, 0.2), ("this", 0.3, 0.5), ("in", 0.6, 0.7), ("stock", 0.9, 1.2)]
    deltas = temporal_alignment._word_pairs(service, reference, "en")
    assert deltas == pytest.approx([2000.0, 2000.0, 2000.0])


def test_temporal_judge_flags_a_skewed_clock(ctx: DeepContext) -> None:
    th = temporal_alignment.Thresholds()
    ok = temporal_alignment.Measurement(clock_offsets_ms=[1.0, -2.0, 3.0], word_offsets_ms=[10.0, -5.0, 0.0])
    assert temporal_alignment.judge(ctx, "stable", ok, None, th).status is Status.OK
    skew = ok.model_copy(update={"clock_offsets_ms": [2001.0, 1999.0, 2002.0]})
    out = temporal_alignment.judge(ctx, "canary", skew, None, th)
    assert (
        out.status is Status.FAILED and "+2001 ms" in out.summary and out.figures["clock_offset_ms"]["n"] == 3
    )  # type: ignore[index]
    empty = temporal_alignment.Measurement()
    assert temporal_alignment.judge(ctx, "canary", empty, None, th).status is Status.INSUFFICIENT_EVIDENCE


def test_bleu_macro_f1_and_their_bands() -> None:
    refs = ["a large red circle on the left", "a small blue square"]
    assert alignment_quality.corpus_bleu(refs, refs) == 1.0  # sacrebleu's 100.00000000000004, clamped
    assert alignment_quality.corpus_bleu(refs, ["green", "yellow"]) == 0.0
    partial, signature = alignment_quality.corpus_bleu_score(
        refs, ["a small red circle on the left", "a small blue square"]
    )
    # hand count: unigrams 10/11, bigrams 7/9, trigrams 5/7, 4-grams 3/5, BP 1; no count is zero, so
    # this is Papineni's unsmoothed BLEU (the former add-one smoothing gave 0.7765)
    expected = math.exp((math.log(10 / 11) + math.log(7 / 9) + math.log(5 / 7) + math.log(3 / 5)) / 4)
    assert partial == pytest.approx(expected) and round(partial, 4) == 0.7419
    assert signature.startswith("nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:")
    assert alignment_quality.macro_f1(["x", "x", "y"], ["x", "x", "y"]) == 1.0
    assert alignment_quality.macro_f1(["x", "x", "y"], ["x", "y", "y"]) == pytest.approx((2 / 3 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="band"):
        alignment_quality.Thresholds(modality_f1=(0.9, 0.1))


def test_bleu_settings_reproduce_sacrebleus_documented_example() -> None:
    from sacrebleu.metrics import BLEU

    # sacrebleu's README: "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17
    # ref_len = 18)" with the default 13a tokenizer and exp smoothing, which the check uses
    refs = [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    bleu = BLEU(
        tokenize=alignment_quality.bleu_tokenizer(refs[0]), smooth_method=alignment_quality.BLEU_SMOOTHING
    )
    score = bleu.corpus_score(hyps, refs)
    assert round(score.score, 2) == 48.53
    assert [round(p, 1) for p in score.precisions] == [82.4, 50.0, 45.5, 37.5]
    assert round(score.bp, 3) == 0.943 and (score.sys_len, score.ref_len) == (17, 18)


def test_chinese_captions_are_tokenised_per_character() -> None:
    value, signature = alignment_quality.corpus_bleu_score(["一个大的红色圆形"], ["一个小的红色圆形"])
    assert "tok:zh" in signature
    # 8 characters, one substituted: 7/8, 5/7, 3/6, 2/5 (no smoothing needed), BP 1
    assert value == pytest.approx((7 / 8 * 5 / 7 * 3 / 6 * 2 / 5) ** 0.25)


def test_the_bleu_signature_reaches_the_figures(ctx: DeepContext) -> None:
    m = alignment_quality.Measurement(
        image_dim=8, text_dim=8, modality_f1=1.0, cross_modal_bleu=0.55, visual_textual_cer=0.0,
        bleu_signature="nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:2.6.0",
    )  # fmt: skip
    out = alignment_quality.judge(ctx, "canary", m, None, alignment_quality.Thresholds())
    assert out.status is Status.FAILED and "cross_modal_bleu 0.550 outside [0.6, 1]" in out.summary
    assert out.figures["cross_modal_bleu_signature"] == m.bleu_signature


def test_phase2_evidence_keeps_both_versions_and_each_checks_comparison() -> None:
    stored: dict[str, dict[str, Any] | None] = {
        "drift": {
            "versions": {
                "canary": {"status": "failed", "figures": {"levels": {"text": 2, "image": None}}},
                "stable": {"status": "failed", "figures": {"levels": {"text": 2, "image": 0}}},
            }
        },
        "asr_check": {
            "status": "failed",
            "versions": {
                "canary": {
                    "status": "ok",
                    "figures": {"mean_error_rate": 0.1, "clips": 11, "failing_clips": []},
                },
                "stable": {
                    "status": "failed",
                    "figures": {"mean_error_rate": 0.5, "clips": 11, "failing_clips": list("abcdef")},
                },
            },
            "thresholds": {"max_mean_increase": 0.1},
        },
        "router_dispatch": {
            "status": "failed",
            "versions": {
                "canary": {"status": "failed", "figures": {"misrouted": 12, "answered": 40}},
                "stable": {"status": "failed", "figures": {"misrouted": 4, "answered": 40}},
            },
            "thresholds": {"confidence": 0.95},
        },
        "clip_consistency": None,
    }
    ev = phase2_evidence(stored)
    assert ev["drift"] == {"text": 2, "image": None} and ev["stable_drift"] == {"text": 2, "image": 0}
    assert ev["consistency"] == {"asr_check": "ok", "router_dispatch": "failed"}
    assert ev["checks"]["drift"] == {
        "canary": "failed",
        "stable": "failed",
        "crashed": False,
        "canary_worse": False,  # text 2 on both: shared
        "measure": "drift level canary vs stable: text 2 vs 2",
    }
    asr = ev["checks"]["asr_check"]
    assert (asr["canary"], asr["stable"], asr["canary_worse"]) == ("ok", "failed", False)
    router = ev["checks"]["router_dispatch"]
    # 12 of 40 against 4 of 40: Fisher's one-sided p = 0.0241 < 0.05, the canary misroutes more
    assert router["canary_worse"] is True
    assert router["measure"] == "misrouted: canary 12/40, stable 4/40; Fisher one-sided p = 0.0241 (< 0.05)"
    assert "clip_consistency" not in ev["checks"] and ev["measured_at"] is None


def test_worst_orders_failed_over_degraded_over_missing_over_ok() -> None:
    assert worst([Status.OK, Status.INSUFFICIENT_EVIDENCE]) is Status.INSUFFICIENT_EVIDENCE
    assert worst([Status.DEGRADED, Status.FAILED, Status.OK]) is Status.FAILED
    assert worst([]) is Status.INSUFFICIENT_EVIDENCE


def test_missing_reference_weights_name_the_file_and_the_fix(tmp_path: Path) -> None:
    from diagnostics.deep_diagnosis.encoders import ReferenceModelError, load_open_clip, load_whisper_model

    with pytest.raises(ReferenceModelError, match=r"missing\.pt not found; set reference\.clip\.pretrained"):
        load_open_clip("clip-shapes", str(tmp_path / "missing.pt"))
    with pytest.raises(ReferenceModelError, match=r"triage24 models prepare"):
        load_whisper_model(tmp_path / "whisper-base.pt")
