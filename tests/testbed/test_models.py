"""testbed.models / whisper_convert / clip: conversion, loading, accuracy on fresh data."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from testbed import models
from tests.testbed import converted_whisper

BASE_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 512,
    "n_audio_head": 8,
    "n_audio_layer": 6,
    "n_vocab": 51865,
    "n_text_ctx": 448,
    "n_text_state": 512,
    "n_text_head": 8,
    "n_text_layer": 6,
}
# Fresh held-out data for the CLIP check: a stream and seed used by neither training ("train"),
# the training script's validation ("val") nor the golden set ("golden").
HELDOUT_STREAM, HELDOUT_SEED, HELDOUT_N = "heldout", 7919, 480


# ------------------------------------------------------------------------------- no weights needed


def test_load_whisper_missing_file_names_file_and_command(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "whisper-base.pt"
    with pytest.raises(FileNotFoundError) as err:
        models.load_whisper(checkpoint=missing)
    assert str(missing) in str(err.value)
    assert "run `triage24 models prepare`" in str(err.value)


def test_whisper_checkpoint_path_default_and_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert models.whisper_checkpoint_path(tmp_path) == tmp_path / "whisper-base.pt"
    monkeypatch.setenv("TRIAGE24_MODEL_DIR", str(tmp_path / "md"))
    assert models.whisper_checkpoint_path() == tmp_path / "md" / "whisper-base.pt"


def test_clip_checkpoint_is_kept_fp16_and_pinned() -> None:
    import torch

    path = models.clip_checkpoint_path()
    assert path.is_file() and path.parent.name == "clip"
    assert 10e6 < path.stat().st_size < 20e6
    assert models.sha256_file(path) == models.CLIP_SHAPES_SHA256
    state = torch.load(path, map_location="cpu", weights_only=True)
    floats = [v for v in state.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert sum(v.numel() for v in state.values()) == pytest.approx(8.3e6, rel=0.05)


def test_clip_config_and_offline_tokenizer() -> None:
    import open_clip

    from testbed.clip import train

    train.register_config()
    assert "clip-shapes" in open_clip.list_models()
    cfg = json.loads(models.clip_config_path().read_text())
    assert cfg["vision_cfg"]["layers"] == [1, 1, 1, 1] and cfg["embed_dim"] == 128
    tok = open_clip.get_tokenizer("clip-shapes")
    ids = tok(["a large red circle on the left", "a photo of a blue star"])
    assert tuple(ids.shape) == (2, 24)
    assert int(ids[0, 0]) == 49406 and 49407 in ids[0].tolist()  # <start_of_text> ... <end_of_text>


def test_model_manifest_reports_missing_whisper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE24_MODEL_DIR", str(tmp_path))
    monkeypatch.delenv("TRIAGE24_WHISPER_CHECKPOINT", raising=False)
    monkeypatch.delenv("TRIAGE24_CLIP_MODEL", raising=False)
    monkeypatch.delenv("TRIAGE24_CLIP_PRETRAINED", raising=False)
    entries = {e["name"]: e for e in models.model_manifest()}
    assert set(entries) == {"clip-shapes", "all-MiniLM-L6-v2", "whisper-base"}
    assert entries["clip-shapes"]["module"] == "embedding"
    assert entries["clip-shapes"]["sha256"] == models.CLIP_SHAPES_SHA256
    assert entries["all-MiniLM-L6-v2"]["module"] == "embedding"
    assert entries["all-MiniLM-L6-v2"]["sha256"] == models.MINILM_SHA256
    w = entries["whisper-base"]
    assert w["module"] == "audio_processor"
    assert w["path"] == str(tmp_path / "whisper-base.pt")
    assert w["present"] is False and w["sha256"] == ""
    assert w["expected_sha256"] == models.WHISPER_BASE_SHA256


def test_clip_model_configurable_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE24_CLIP_MODEL", "ViT-B-32")
    monkeypatch.delenv("TRIAGE24_CLIP_PRETRAINED", raising=False)
    with pytest.raises(ValueError, match="TRIAGE24_CLIP_PRETRAINED"):
        models.load_clip()
    monkeypatch.setenv("TRIAGE24_CLIP_PRETRAINED", "/no/such/open_clip_model.bin")
    with pytest.raises(FileNotFoundError, match=r"/no/such/open_clip_model\.bin"):
        models.load_clip()
    entry = next(e for e in models.model_manifest() if e["module"] == "embedding")
    assert entry["name"] == "ViT-B-32" and entry["present"] is False and entry["expected_sha256"] is None


# ------------------------------------------------------------------------------------ Whisper


@pytest.mark.models
def test_converted_whisper_matches_base_dims_and_pins(tmp_path_factory: pytest.TempPathFactory) -> None:
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    from testbed.whisper_convert import state_dict_sha256

    path = converted_whisper(tmp_path_factory)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    assert ck["dims"] == BASE_DIMS
    reference = Whisper(ModelDimensions(**BASE_DIMS)).state_dict()
    sd = ck["model_state_dict"]
    assert list(sd) == list(reference)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    assert all(v.dtype == torch.float16 for v in sd.values())
    assert sum(v.numel() for v in sd.values()) == 72_593_920  # base: 74 M incl. sinusoid buffer
    assert ck["alignment_heads"] == whisper._ALIGNMENT_HEADS["base"].decode()
    assert state_dict_sha256(sd) == models.WHISPER_BASE_CONTENT_SHA256
    # byte-reproducible conversion (pinned file hash, independent of the file name)
    assert models.sha256_file(path) == models.WHISPER_BASE_SHA256


@pytest.mark.models
def test_conversion_is_byte_identical_under_another_name(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from testbed.whisper_convert import convert

    first = converted_whisper(tmp_path_factory)
    other = tmp_path / "another-name.pt"
    info = convert(other)
    assert info["content_sha256"] == models.WHISPER_BASE_CONTENT_SHA256
    assert models.sha256_file(other) == models.sha256_file(first)


@pytest.mark.models
def test_prepare_is_idempotent(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = converted_whisper(tmp_path_factory)
    mtime = path.stat().st_mtime_ns
    messages: list[str] = []
    paths = models.prepare(path.parent, progress=messages.append)
    assert path.stat().st_mtime_ns == mtime  # not rewritten
    assert any("up to date" in m for m in messages)
    assert paths["whisper-base"] == path
    assert paths["clip-shapes"] == models.clip_checkpoint_path()
    assert (paths["all-MiniLM-L6-v2"] / "model.safetensors").is_file()


@pytest.mark.models
def test_whisper_transcribes_golden_stock_clip(tmp_path_factory: pytest.TempPathFactory) -> None:
    import numpy as np
    import torch

    from testbed.golden import load_golden, normalise

    torch.set_num_threads(2)
    path = converted_whisper(tmp_path_factory)
    t0 = time.perf_counter()
    model = models.load_whisper(checkpoint=path)
    load_s = time.perf_counter() - t0
    assert models.load_whisper(checkpoint=path) is model  # cached
    assert not model.training
    # the packaged/openai alignment heads for base, not whisper's default "last half" guess
    heads = sorted(map(tuple, model.alignment_heads.indices().T.tolist()))
    assert heads == [(3, 1), (4, 2), (4, 3), (4, 7), (5, 1), (5, 2), (5, 4), (5, 6)]

    clip = load_golden().audio_by_id("en-stock")
    t0 = time.perf_counter()
    result = model.transcribe(
        str(clip.file), language="en", fp16=False, temperature=0.0, word_timestamps=True
    )
    transcribe_s = time.perf_counter() - t0
    assert (
        normalise(result["text"], "en")
        == normalise("is this product in stock?", "en")
        == "is this product in stock"
    )
    words = [w for s in result["segments"] for w in s["words"]]
    assert [w["word"].strip(" ?").lower() for w in words] == ["is", "this", "product", "in", "stock"]
    starts = np.array([w["start"] for w in words])
    assert np.all(np.diff(starts) > 0) and words[-1]["end"] <= clip.duration_s + 0.1
    print(f"whisper load {load_s:.2f}s, transcribe {transcribe_s:.2f}s for {clip.duration_s:.2f}s audio")
    assert load_s < 30 and transcribe_s < 60  # generous bounds for a loaded 2-core CI machine


# --------------------------------------------------------------------------------------- CLIP


@pytest.mark.models
def test_clip_zero_shot_on_fresh_heldout_images() -> None:
    import torch

    from testbed.clip.train import evaluate

    torch.set_num_threads(2)
    model, preprocess, tokenizer = models.load_clip()
    assert models.load_clip() == (model, preprocess, tokenizer)  # cached
    assert not model.training
    m = evaluate(model, tokenizer, seed=HELDOUT_SEED, n=HELDOUT_N, stream=HELDOUT_STREAM)
    print(json.dumps(m))
    assert m["top1"] >= 0.90  # 24-way colour x shape; chance ~4 %
    assert m["matched_cosine"] > m["mismatched_cosine"] + 0.2
    assert m["matched_cosine"] > 0.5


@pytest.mark.models
def test_clip_preprocess_equals_training_tensors() -> None:
    import torch

    from testbed.clip import shapes

    _, preprocess, _ = models.load_clip()
    images = [s.image for s in shapes.samples(HELDOUT_SEED, 0, 4, stream=HELDOUT_STREAM)]
    via_preprocess = torch.stack([preprocess(im) for im in images])
    assert torch.allclose(via_preprocess, shapes.to_tensor_batch(images), atol=1e-5)


@pytest.mark.models
def test_clip_loads_through_open_clip_with_path() -> None:
    import open_clip
    import torch

    from testbed.clip import shapes, train

    train.register_config()
    t0 = time.perf_counter()
    model, _, _ = open_clip.create_model_and_transforms(
        "clip-shapes", pretrained=str(models.clip_checkpoint_path())
    )
    load_s = time.perf_counter() - t0
    model.eval()
    tok = open_clip.get_tokenizer("clip-shapes")
    sample = shapes.make_sample(
        HELDOUT_SEED, 999, stream=HELDOUT_STREAM, spec=shapes.ShapeSpec("blue", "star", "large", "left")
    )
    with torch.no_grad():
        img = model.encode_image(shapes.to_tensor_batch([sample.image]))
        txt = model.encode_text(tok(shapes.class_prompts()))
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
    assert shapes.classes()[int((img @ txt.T).argmax())] == ("blue", "star")
    assert load_s < 30


# --------------------------------------------------------------------------------------- MiniLM


@pytest.mark.models
def test_minilm_loads_offline_and_ranks_paraphrases() -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    model = models.load_minilm()
    assert models.load_minilm() is model
    emb = model.encode(
        ["where is my order?", "my package has not arrived yet", "I want to cancel my subscription"],
        normalize_embeddings=True,
    )
    assert emb.shape == (3, 384)
    sim_para = float(emb[0] @ emb[1])
    sim_other = float(emb[0] @ emb[2])
    assert sim_para > sim_other + 0.1
