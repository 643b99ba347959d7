"""testbed.golden: manifest integrity, deterministic regeneration, transcript scoring, whisper accuracy."""

from __future__ import annotations

import hashlib
import shutil
import wave
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from testbed.clip import shapes
from testbed.golden import INTENTS, GoldenAudio, GoldenImage, build, error_rate, load_golden, normalise
from tests.testbed import converted_whisper


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_file_exists_and_matches_its_hash() -> None:
    gs = load_golden()
    assert len(gs.images) == 64
    entries: list[GoldenImage | GoldenAudio] = [*gs.images, *gs.audio]
    for entry in entries:
        assert entry.file.is_file(), entry.path
        assert not Path(entry.path).is_absolute()
        assert entry.file.resolve().is_relative_to(gs.root)
        assert _sha(entry.file) == entry.sha256, entry.path


def test_intents_and_languages() -> None:
    gs = load_golden()
    assert set(gs.intents) <= set(INTENTS)
    assert {a.intent for a in gs.audio} | {t.intent for t in gs.texts} <= set(INTENTS)
    en = [a for a in gs.audio if a.language == "en"]
    zh = [a for a in gs.audio if a.language == "zh"]
    assert len(en) >= 8 and 3 <= len(zh) <= 4
    assert all(a.metric == "wer" and a.max_error_rate == 0.0 for a in en)
    assert all(a.metric == "cer" and 0.0 <= a.max_error_rate <= 0.5 for a in zh)
    assert "is this product in stock?" in {a.text for a in en}
    assert len(gs.texts) >= 12
    core = {"stock_inquiry", "return_request", "order_status", "cancellation"}
    assert core <= {a.intent for a in en} and core <= {t.intent for t in gs.texts}


def test_audio_is_16k_mono_pcm() -> None:
    for clip in load_golden().audio:
        with wave.open(str(clip.file), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
            dur = w.getnframes() / w.getframerate()
        assert dur == pytest.approx(clip.duration_s, abs=1e-3)
        assert 0.8 < dur < 6.0


def test_images_balanced_and_captions_match_attributes() -> None:
    gs = load_golden()
    counts = Counter(i.label for i in gs.images)
    assert len(counts) == 24 and set(counts.values()) <= {2, 3}
    for img in gs.images:
        a = img.attributes
        spec = shapes.ShapeSpec(a.colour, a.shape, a.size, a.position)
        assert img.caption == spec.caption(0)
        assert img.label == spec.label
        with Image.open(img.file) as im:
            rgb = im.convert("RGB")
        assert rgb.size == (64, 64) == (img.width, img.height)
        assert hashlib.sha256(rgb.tobytes()).hexdigest() == img.pixels_sha256


def test_image_part_regenerates_identically() -> None:
    gs = load_golden()
    regenerated = build.image_entries()
    assert [e["caption"] for e, _ in regenerated] == [i.caption for i in gs.images]
    assert [e["attributes"] for e, _ in regenerated] == [i.attributes.model_dump() for i in gs.images]
    assert [e["pixels_sha256"] for e, _ in regenerated] == [i.pixels_sha256 for i in gs.images]
    # and twice in a row in one process
    again = build.image_entries()
    assert [e["pixels_sha256"] for e, _ in again] == [e["pixels_sha256"] for e, _ in regenerated]


@pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("ffmpeg")), reason="needs espeak-ng + ffmpeg"
)
def test_audio_regenerates_identically(tmp_path: Path) -> None:
    gs = load_golden()
    for clip_id in ("en-stock", "zh-stock"):
        clip = gs.audio_by_id(clip_id)
        out = tmp_path / f"{clip_id}.wav"
        build.synthesize(clip.text, clip.espeak_args, out)
        assert _sha(out) == clip.sha256


def test_normalise_and_error_rate() -> None:
    assert normalise(" Is this product in stock?", "en") == "is this product in stock"
    assert error_rate("is this product in stock?", " Is this product in stock?", "en") == 0.0
    assert error_rate("where is my order?", "where is my border", "en") == pytest.approx(0.25)
    assert normalise("這個產品有貨嗎？", "zh") == "这个产品有货吗"
    assert error_rate("我的订单在哪里？", "我的訂單在哪裡", "zh") == 0.0
    assert error_rate("我想退货。", "我想退火", "zh") == pytest.approx(0.25)


def test_queries_cover_spoken_and_typed() -> None:
    gs = load_golden()
    q = gs.queries()
    assert len(q) == len(gs.audio) + len(gs.texts)
    assert all(lang in {"en", "zh"} and intent in INTENTS for _, lang, intent in q)


@pytest.mark.models
def test_whisper_base_transcribes_golden_clips(tmp_path_factory: pytest.TempPathFactory) -> None:
    import jiwer
    import torch

    from testbed.models import load_whisper

    torch.set_num_threads(2)
    model = load_whisper(checkpoint=converted_whisper(tmp_path_factory))
    report = []
    for clip in load_golden().audio:
        result = model.transcribe(str(clip.file), language=clip.language, fp16=False, temperature=0.0)
        rate = error_rate(clip.text, result["text"], clip.language)
        report.append((clip.id, clip.metric, round(rate, 3), result["text"].strip()))
        if clip.language == "en":
            ref, hyp = normalise(clip.text, "en"), normalise(result["text"], "en")
            assert jiwer.wer(ref, hyp) == 0.0, (clip.id, hyp)
        assert rate <= clip.max_error_rate + 1e-9, (clip.id, result["text"])
    for row in report:
        print(*row)
