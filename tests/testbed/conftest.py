"""Fixtures of the testbed service/gateway/fault tests.

- ``FakeBackends``: deterministic stand-ins for CLIP/MiniLM/Whisper, used by the in-process tests
  of plumbing (auth, validation, faults, metrics, logs, traces). Audio decoding stays real (ffmpeg).
- ``real_backends``: the real models, loaded once per test session (``@pytest.mark.models``).
- ``testbed_stack``: real processes (stable, canary, gateway) on free ports, started once per session
  and always stopped (``@pytest.mark.integration``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import re
import struct
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.testbed_procs import (  # noqa: F401 - re-exported for the tests here
    ADMIN_TOKEN,
    AUTH,
    CLIP_FILE,
    GOLDEN_MANIFEST,
    WHISPER_FILE,
    Proc,
    Stack,
    models_available,
    require_models,
    wait_ready,
)

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # whisper's DTW; before numba is imported
# --------------------------------------------------------------------------- fake models


def _hash_vec(key: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def _norm(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
    return out


class FakeBackends:
    """Deterministic fakes: CLIP text = hashed words, CLIP image = hashed mean colour, MiniLM = bag of
    hashed words (shared words -> similar vectors), Whisper = a fixed transcript with word times."""

    clip_dim = 128

    def __init__(self, transcript: str = "is this product in stock") -> None:
        from testbed.service import MODEL_KEYS, ModelState

        self._states = {
            k: ModelState(
                k,
                name,
                mods,
                status="loaded",
                path=f"/fake/{name}",
                sha256="a" * 64,
                expected_sha256="a" * 64,
            )
            for k, (name, mods) in MODEL_KEYS.items()
        }
        self.transcript = transcript
        self.calls: list[str] = []

    def states(self) -> dict[str, Any]:
        return self._states

    def encode_clip_text(self, texts: list[str]) -> np.ndarray:
        self.calls.append("clip_text")
        return _norm(np.stack([_hash_vec("t:" + t, 128) for t in texts]))

    def encode_clip_images(self, images: list[Any]) -> np.ndarray:
        self.calls.append("clip_image")
        keys = [str(np.asarray(im).mean(axis=(0, 1)).round(1).tolist()) for im in images]
        return _norm(np.stack([_hash_vec("i:" + k, 128) for k in keys]))

    def encode_minilm(self, texts: list[str]) -> np.ndarray:
        self.calls.append("minilm")
        out = []
        for t in texts:
            words = re.findall(r"\w+", t.lower()) or ["_"]
            out.append(sum(_hash_vec("w:" + w, 384) for w in words))
        return _norm(np.stack(out))

    def transcribe(self, audio: np.ndarray, language: str | None) -> dict[str, Any]:
        self.calls.append("whisper")
        words = self.transcript.split()
        dur = max(len(audio) / 16000.0, 0.5)
        step = dur / len(words)
        return {
            "text": " " + self.transcript,
            "language": language or "en",
            "segments": [
                {
                    "id": 0,
                    "start": 0.0,
                    "end": dur,
                    "text": " " + self.transcript,
                    "avg_logprob": -0.2,
                    "no_speech_prob": 0.01,
                    "words": [
                        {"word": " " + w, "start": i * step, "end": (i + 1) * step, "probability": 0.9}
                        for i, w in enumerate(words)
                    ],
                }
            ],
        }

    def intent_examples(self) -> list[tuple[str, str]]:
        from testbed.intent import DEFAULT_EXAMPLES

        return list(DEFAULT_EXAMPLES)


# --------------------------------------------------------------------------- payloads


def sine_wav(seconds: float = 1.0, freq: float = 440.0, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(seconds * rate)
        w.writeframes(
            b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(n))
        )
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def shape_png(colour: str = "red", shape: str = "circle", index: int = 0) -> str:
    from testbed.clip import shapes

    spec = shapes.ShapeSpec(colour, shape, "large", "middle")
    img = shapes.make_sample(1, index, stream="tests", spec=spec).image
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return b64(buf.getvalue())


# --------------------------------------------------------------------------- in-process apps


@dataclass
class InProcess:
    client: Any  # fastapi.testclient.TestClient
    app: Any
    log_file: Path
    backends: Any

    @property
    def service(self) -> Any:
        return self.app.state.service

    def logs(self) -> list[dict[str, Any]]:
        from testbed.logs import read_log_lines

        return read_log_lines(self.log_file) if self.log_file.exists() else []

    def metrics(self) -> str:
        r = self.client.get("/metrics")
        assert r.status_code == 200
        return str(r.text)


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., InProcess]]:
    """Factory: an in-process service app (FakeBackends unless given) wrapped in a TestClient."""
    from fastapi.testclient import TestClient

    from testbed.service import ServiceSettings, create_app

    clients: list[Any] = []

    def make(
        version: str = "stable", backends: Any = None, admin_token: str | None = ADMIN_TOKEN, **kw: Any
    ) -> InProcess:
        log_file = tmp_path / f"testbed-{version}-{len(clients)}.jsonl"
        settings = ServiceSettings(
            version=version, log_file=log_file, log_stdout=False, admin_token=admin_token, **kw
        )
        be = backends if backends is not None else FakeBackends()
        app = create_app(settings, be)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return InProcess(client, app, log_file, be)

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def service(make_service: Callable[..., InProcess]) -> InProcess:
    return make_service()


# --------------------------------------------------------------------------- real models


@pytest.fixture(scope="session")
def real_backends() -> Any:
    """The real models (CLIP, MiniLM, Whisper), loaded once per session."""
    require_models()
    import torch

    torch.set_num_threads(1)
    from testbed.service import RealBackends

    be = RealBackends("cpu")
    be.load_all()
    bad = {k: s.error for k, s in be.states().items() if s.status != "loaded"}
    assert not bad, bad
    return be


@pytest.fixture(scope="session")
def golden() -> Any:
    require_models()
    from testbed.golden import load_golden

    return load_golden()
