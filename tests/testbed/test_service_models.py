"""The service with the real models (in-process; models loaded once per session): golden transcripts,
intents, CLIP image-text consistency, and the model-visible faults measured on real outputs."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from tests.testbed.conftest import AUTH, InProcess

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def svc(real_backends: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fastapi.testclient import TestClient

    from testbed.service import ServiceSettings, create_app

    log_file = tmp_path_factory.mktemp("models") / "testbed-stable.jsonl"
    settings = ServiceSettings(
        version="stable", log_file=log_file, log_stdout=False, admin_token="test-admin-token-7f3c"
    )
    app = create_app(settings, real_backends)
    with TestClient(app) as client:
        yield InProcess(client, app, log_file, real_backends)


@pytest.fixture(autouse=True)
def _no_faults(svc: InProcess) -> Any:
    yield
    svc.client.delete("/admin/faults", headers=AUTH)


def b64file(path: Any) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def transcribe_all(svc: InProcess, clips: list[Any]) -> list[dict[str, Any]]:
    out = []
    for clip in clips:
        r = svc.client.post(
            "/v1/audio/transcriptions", json={"audio_b64": b64file(clip.file), "language": clip.language}
        )
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def test_health_with_real_models(svc: InProcess) -> None:
    h = svc.client.get("/v1/health").json()
    assert h["status"] == "ready", h
    by_name = {m["name"]: m for m in h["models"]}
    assert set(by_name) == {"clip-shapes", "all-MiniLM-L6-v2", "whisper-base"}
    for m in by_name.values():
        assert m["loaded"] and len(m["sha256"]) == 64
        assert m["checksum_ok"] in (True, None)  # None: no pinned checksum (MiniLM)


def test_golden_audio_transcripts_match(svc: InProcess, golden: Any) -> None:
    from testbed.golden import error_rate

    results = transcribe_all(svc, golden.audio)
    report = []
    for clip, res in zip(golden.audio, results, strict=True):
        err = error_rate(clip.text, res["text"], clip.language)
        report.append((clip.id, clip.text, res["text"], err, res["intent"]["label"], clip.intent))
        assert err <= clip.max_error_rate, report[-1]
        assert res["language"] == clip.language
        words = [w for s in res["segments"] for w in s["words"]]
        assert words, res
        starts = [w["start"] for w in words]
        assert starts == sorted(starts)
        assert all(0 <= w["start"] <= w["end"] <= res["duration_s"] + 0.5 for w in words)
        assert 0 < res["intent"]["confidence"] <= 1
    en = [r for r in report if r[0].startswith("en-")]
    correct = sum(r[4] == r[5] for r in en)
    assert correct >= len(en) - 1, report  # intent of the English transcripts


def test_clip_consistency_and_misalignment(svc: InProcess, golden: Any) -> None:
    images = golden.images[:24]
    img_b64 = [b64file(im.file) for im in images]
    captions = [im.caption for im in images]

    def top1() -> tuple[float, float]:
        ie = np.asarray(
            svc.client.post("/v1/embeddings/image", json={"images": img_b64}).json()["embeddings"]
        )
        te = np.asarray(svc.client.post("/v1/embeddings/text", json={"texts": captions}).json()["embeddings"])
        sims = ie @ te.T
        return float(np.mean(np.argmax(sims, axis=1) == np.arange(len(images)))), float(
            np.mean(np.diag(sims))
        )

    acc, diag = top1()
    assert acc >= 0.6 and diag > 0.2, (acc, diag)
    r = svc.client.post("/admin/faults", json={"fault": "image_text_misalignment"}, headers=AUTH)
    assert r.status_code == 200
    bad_acc, bad_diag = top1()
    assert bad_acc <= 0.25 and bad_diag < diag - 0.15, (bad_acc, bad_diag)
    svc.client.delete("/admin/faults", headers=AUTH)
    assert top1() == pytest.approx((acc, diag), abs=1e-4)


def test_asr_degraded_raises_wer(svc: InProcess, golden: Any) -> None:
    from testbed.golden import error_rate

    clips = [a for a in golden.audio if a.language == "en"][:3]
    clean = [
        error_rate(c.text, r["text"], "en") for c, r in zip(clips, transcribe_all(svc, clips), strict=True)
    ]
    svc.client.post("/admin/faults", json={"fault": "asr_degraded"}, headers=AUTH)
    noisy_res = transcribe_all(svc, clips)
    noisy = [error_rate(c.text, r["text"], "en") for c, r in zip(clips, noisy_res, strict=True)]
    assert np.mean(noisy) >= np.mean(clean) + 0.2, (clean, noisy, [r["text"] for r in noisy_res])


def test_dim_mismatch_and_drift_on_real_embeddings(svc: InProcess, golden: Any) -> None:
    img = [b64file(im.file) for im in golden.images[:8]]
    base = np.asarray(svc.client.post("/v1/embeddings/image", json={"images": img}).json()["embeddings"])
    svc.client.post("/admin/faults", json={"fault": "embedding_dim_mismatch", "magnitude": 512}, headers=AUTH)
    assert svc.client.post("/v1/embeddings/image", json={"images": img}).json()["dim"] == 512
    r = svc.client.post("/v1/router", json={"image_b64": img[0], "text": golden.images[0].caption})
    assert r.status_code == 500
    svc.client.delete("/admin/faults", headers=AUTH)
    svc.client.post("/admin/faults", json={"fault": "embedding_drift", "magnitude": 0.5}, headers=AUTH)
    drifted = np.asarray(svc.client.post("/v1/embeddings/image", json={"images": img}).json()["embeddings"])
    mean_shift = float(np.linalg.norm(drifted.mean(0) - base.mean(0)))
    assert mean_shift > 0.3
    svc.client.delete("/admin/faults", headers=AUTH)
    again = np.asarray(svc.client.post("/v1/embeddings/image", json={"images": img}).json()["embeddings"])
    assert np.allclose(again, base, atol=1e-5)


def test_chat_and_router_with_real_models(svc: InProcess, golden: Any) -> None:
    answered = 0
    for t in [t for t in golden.texts if t.language == "en"]:
        r = svc.client.post("/v1/chat", json={"message": t.text})
        assert r.status_code == 200
        answered += not r.json()["fallback"]
    assert answered >= 5
    clip = next(a for a in golden.audio if a.id == "en-stock")
    r = svc.client.post(
        "/v1/router", json={"audio_b64": b64file(clip.file), "image_b64": b64file(golden.images[0].file)}
    )
    assert r.status_code == 200 and r.json()["route"] == ["audio_processor", "embedding"]
    assert "similarity" in r.json()["results"] and r.json()["results"]["query_text"]
