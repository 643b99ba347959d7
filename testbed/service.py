"""The testbed's multimodal service (FastAPI): one process per version (stable / canary), same code.

Modules (the names health reports):

- ``embedding``: CLIP text and image embeddings (the project's small CLIP, ``testbed/clip``) and
  RAG text embeddings (all-MiniLM-L6-v2);
- ``llm``: ``POST /v1/chat`` — *not* a generative model: retrieval over a small set of canned
  customer-service answers by MiniLM cosine similarity (``FAQ`` below), with a fallback answer when
  nothing is similar enough;
- ``audio_processor``: Whisper base transcription (ffmpeg decode, word timestamps) + intent;
- ``multimodal_router``: ``POST /v1/router`` dispatches a mixed text/image/audio request.

Images travel as base64 PNG/JPEG inside JSON; audio as base64 inside JSON or as a multipart
upload (field ``file``). See ``testbed/README.md`` for routes, metrics, logs and faults.

Model inference runs in worker threads, at most ``model_concurrency`` calls per model at a time
(an asyncio semaphore per model), with torch limited to one thread per process by ``serve``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import json
import logging
import os
import random
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from anyio import to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from testbed import faults as F
from testbed.intent import (
    DEFAULT_EXAMPLES,
    CentroidIntentClassifier,
    IntentResult,
    KeywordIntentClassifier,
    examples_from_golden,
)
from testbed.logs import bind_trace, fields, run_in_context, setup_logging, trace_from_headers
from testbed.metrics import ServiceMetrics, TenantLimiter

ADMIN_TOKEN_ENV = "TRIAGE24_TESTBED_ADMIN_TOKEN"  # noqa: S105 - the variable name, not a secret
MODULES = F.MODULES
CHANNELS = F.CHANNELS
STATUSES = ("ready", "degraded", "error")

#: route -> (channel, module)
ROUTES: dict[str, tuple[str, str]] = {
    "/v1/embeddings/text": ("text", "embedding"),
    "/v1/embeddings/rag": ("text", "embedding"),
    "/v1/chat": ("text", "llm"),
    "/v1/embeddings/image": ("image", "embedding"),
    "/v1/audio/transcriptions": ("audio", "audio_processor"),
    "/v1/router": ("router", "multimodal_router"),
}

#: model key -> (display name, modules that need it)
MODEL_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "clip": ("clip-shapes", ("embedding",)),
    "minilm": ("all-MiniLM-L6-v2", ("embedding", "llm")),
    "whisper": ("whisper-base", ("audio_processor",)),
}
#: model_not_loaded's channel -> the model it breaks
MODEL_FOR_CHANNEL = {"image": "clip", "audio": "whisper", "text": "minilm"}

#: The llm module's knowledge: canned customer-service answers, retrieved by question similarity.
FAQ: tuple[tuple[str, str], ...] = (
    ("Is this product in stock?", "Most shapes are in stock; the product page shows live availability."),
    ("Where is my order?", "You can track your order under Account > Orders; tracking updates hourly."),
    (
        "How do I return an item?",
        "Returns are free within 30 days: start one under Account > Orders > Return.",
    ),
    (
        "When will I get my refund?",
        "Refunds reach your card 3 to 5 business days after we receive the return.",
    ),
    ("How much does shipping cost?", "Shipping is free over $50; below that it is a flat $4.99."),
    (
        "How long does delivery take?",
        "Standard delivery takes 2 to 4 business days; express arrives next day.",
    ),
    (
        "What is the price of this item?",
        "Prices are on each product page; small shapes start at $3, large at $6.",
    ),
    ("Do you have any discounts?", "Subscribe to the newsletter for 10% off your first order."),
    ("Can I change my order?", "Orders can be changed within one hour of purchase under Account > Orders."),
    ("Which payment methods do you accept?", "We accept major credit cards, PayPal and Alipay."),
    ("I want to talk to a human.", "Connecting you to a support agent; the average wait is under 2 minutes."),
    (
        "What colours do the shapes come in?",
        "Red, green, blue, yellow, purple and orange, in small and large.",
    ),
)
FAQ_MIN_SCORE = 0.35
FAQ_FALLBACK = "Sorry, I don't know that one yet. A support agent can help: say 'talk to a human'."


# --------------------------------------------------------------------------- settings


@dataclass
class ServiceSettings:
    version: str = "stable"
    log_file: Path | None = None
    log_stdout: bool = True
    admin_token: str | None = None  # None: the admin API answers 503
    audio_timeout_s: float = 10.0  # ffmpeg decode timeout
    model_concurrency: int = 1  # concurrent inference calls per model
    max_batch: int = 64
    max_tenants: int = 20
    slow_ms: dict[str, float] = field(
        default_factory=lambda: {"text": 1000.0, "image": 1000.0, "audio": 8000.0, "router": 8000.0}
    )
    max_upload_bytes: int = 10 * 1024 * 1024
    device: str = "cpu"
    log_admin: bool = False  # write admin actions (fault changes) to the log

    @classmethod
    def from_env(cls, **overrides: Any) -> ServiceSettings:
        s = cls(**overrides)
        if "admin_token" not in overrides:
            s.admin_token = os.environ.get(ADMIN_TOKEN_ENV) or None
        if "audio_timeout_s" not in overrides and os.environ.get("TRIAGE24_TESTBED_AUDIO_TIMEOUT_S"):
            s.audio_timeout_s = float(os.environ["TRIAGE24_TESTBED_AUDIO_TIMEOUT_S"])
        if "model_concurrency" not in overrides and os.environ.get("TRIAGE24_TESTBED_MODEL_CONCURRENCY"):
            s.model_concurrency = max(1, int(os.environ["TRIAGE24_TESTBED_MODEL_CONCURRENCY"]))
        if "log_admin" not in overrides:
            s.log_admin = os.environ.get("TRIAGE24_TESTBED_LOG_ADMIN", "") in {"1", "true", "yes"}
        return s


def default_log_file(name: str) -> Path:
    home = Path(os.environ.get("TRIAGE24_HOME") or Path(__file__).resolve().parent.parent / ".triage24")
    return home / "logs" / f"testbed-{name}.jsonl"


# --------------------------------------------------------------------------- models


@dataclass
class ModelState:
    key: str
    name: str
    modules: tuple[str, ...]
    status: str = "loading"  # loading | loaded | error
    path: str | None = None
    sha256: str | None = None  # of the file that was loaded
    expected_sha256: str | None = None  # from the model manifest
    error: str | None = None
    load_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "modules": list(self.modules),
            "status": self.status,
            "loaded": self.status == "loaded",
            "path": self.path,
            "sha256": self.sha256,
            "expected_sha256": self.expected_sha256,
            "checksum_ok": (
                None
                if self.sha256 is None or self.expected_sha256 is None
                else self.sha256 == self.expected_sha256
            ),
            "error": self.error,
            "load_seconds": self.load_seconds,
        }


class Backends(Protocol):
    """What the service needs from its models (real ones in ``RealBackends``; tests may fake it)."""

    clip_dim: int

    def states(self) -> dict[str, ModelState]: ...

    def encode_clip_text(self, texts: list[str]) -> np.ndarray: ...

    def encode_clip_images(self, images: list[Any]) -> np.ndarray: ...

    def encode_minilm(self, texts: list[str]) -> np.ndarray: ...

    def transcribe(self, audio: np.ndarray, language: str | None) -> dict[str, Any]: ...

    def intent_examples(self) -> list[tuple[str, str]]: ...


class _EncoderMemo:
    """Reuses Whisper's audio-encoder output within one ``transcribe`` call.

    With ``word_timestamps=True`` whisper runs the whole model a second time to align words
    (``timing.find_alignment``), re-encoding the same 30 s mel window — on a CPU that is about a third
    of the request. While ``active()`` (per thread), an encoder call on the very tensor already encoded
    in this call (same storage, offset, shape, strides and version counter; the input is kept alive so
    its memory cannot be reused) returns the stored output. Outside ``active()`` it is a pass-through.
    """

    def __init__(self, encoder: Any) -> None:
        self.forward = encoder.forward
        self.local = threading.local()
        encoder.forward = self

    def __call__(self, x: Any) -> Any:
        memo: dict[Any, Any] | None = getattr(self.local, "memo", None)
        if memo is None:
            return self.forward(x)
        key = (
            x.untyped_storage().data_ptr(),
            x.storage_offset(),
            tuple(x.shape),
            tuple(x.stride()),
            x._version,
        )
        hit = memo.get(key)
        if hit is not None:
            return hit[1]
        out = self.forward(x)
        memo[key] = (x, out)
        return out

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self.local.memo = {}
        try:
            yield
        finally:
            self.local.memo = None


class RealBackends:
    """CLIP, MiniLM and Whisper from ``testbed.models``, loaded in a background thread."""

    def __init__(self, device: str = "cpu", logger: logging.Logger | None = None) -> None:
        self.device = device
        self.logger = logger or logging.getLogger("testbed.service")
        self.clip_dim = 128
        self._states = {k: ModelState(k, name, mods) for k, (name, mods) in MODEL_KEYS.items()}
        self._clip: Any = None
        self._preprocess: Any = None
        self._tokenizer: Any = None
        self._minilm: Any = None
        self._whisper: Any = None
        self._encoder_memo: _EncoderMemo | None = None
        self._examples: list[tuple[str, str]] = list(DEFAULT_EXAMPLES)
        self._thread: threading.Thread | None = None
        self.done = threading.Event()

    def states(self) -> dict[str, ModelState]:
        return self._states

    def start(self) -> None:
        self._thread = threading.Thread(
            target=run_in_context(self.load_all), name="model-loader", daemon=True
        )
        self._thread.start()

    def load_all(self) -> None:
        try:
            manifest = self._manifest()
            for key in ("clip", "minilm", "whisper"):
                self._load(key, manifest)
            self._load_examples()
        finally:
            self.done.set()

    def _manifest(self) -> dict[str, dict[str, Any]]:
        try:
            from testbed import models

            entries = models.model_manifest()
        except Exception as exc:
            self.logger.error("model manifest unavailable: %s", exc, extra=fields(event="model_manifest"))
            return {}
        out: dict[str, dict[str, Any]] = {}
        for entry in entries:
            name = str(entry.get("name", "")).lower()
            module = entry.get("module")
            if "minilm" in name:
                out["minilm"] = dict(entry)
            elif module == "audio_processor" or "whisper" in name:
                out["whisper"] = dict(entry)
            elif module == "embedding":
                out["clip"] = dict(entry)
        return out

    def _load(self, key: str, manifest: dict[str, dict[str, Any]]) -> None:
        state = self._states[key]
        entry = manifest.get(key, {})
        if entry.get("name"):
            state.name = str(entry["name"])
        state.path = str(entry["path"]) if entry.get("path") else None
        # model_manifest(): "sha256" of the file on disk, "expected_sha256" pinned (None: not pinned)
        state.expected_sha256 = entry.get("expected_sha256")
        if state.expected_sha256 and not _is_sha256(state.expected_sha256):
            state.expected_sha256 = None  # a placeholder, not a pin
        t0 = time.monotonic()
        try:
            from testbed import models

            if key == "clip":
                self._clip, self._preprocess, self._tokenizer = models.load_clip(device=self.device)
                self._clip.eval()
                dim = getattr(getattr(self._clip, "text_projection", None), "shape", None)
                if dim is not None:
                    self.clip_dim = int(dim[-1])
            elif key == "minilm":
                self._minilm = models.load_minilm(device=self.device)
            else:
                self._whisper = models.load_whisper(device=self.device)
                self._warm_up_word_timing()
                enc = getattr(self._whisper, "encoder", None)
                if enc is not None:
                    memo = enc.forward if isinstance(enc.forward, _EncoderMemo) else _EncoderMemo(enc)
                    self._encoder_memo = memo
            if state.path and Path(state.path).is_file():
                state.sha256 = models.sha256_file(Path(state.path))
            else:
                state.sha256 = entry.get("sha256") or None
            state.load_seconds = round(time.monotonic() - t0, 3)
            if (
                key == "whisper"
                and state.expected_sha256
                and state.sha256 != state.expected_sha256
                and state.path
                and getattr(models, "_whisper_up_to_date", lambda p: False)(Path(state.path))
            ):
                # another torch serialisation of the same pinned content (see testbed.models.prepare)
                state.expected_sha256 = state.sha256
            if state.expected_sha256 and state.sha256 != state.expected_sha256:
                state.status = "error"
                state.error = f"checksum mismatch (expected {state.expected_sha256}, got {state.sha256})"
                self.logger.error(
                    "failed to load model %s: %s",
                    state.name,
                    state.error,
                    extra=fields(event="model_load", model=state.name),
                )
                return
            state.status = "loaded"
            self.logger.info(
                "model loaded: %s in %.2f s (sha256 %s)",
                state.name,
                state.load_seconds,
                state.sha256,
                extra=fields(event="model_load", model=state.name),
            )
        except Exception as exc:
            state.status = "error"
            state.error = f"{type(exc).__name__}: {exc}"
            state.load_seconds = round(time.monotonic() - t0, 3)
            self.logger.error(
                "failed to load model %s: %s",
                state.name,
                state.error,
                extra=fields(event="model_load", model=state.name),
            )

    def _warm_up_word_timing(self) -> None:
        """Compile whisper's numba DTW now (~3 s) rather than in the first audio request."""
        try:
            import torch
            from whisper.timing import dtw

            dtw(torch.rand(6, 8))
        except Exception as exc:  # only a warm-up
            self.logger.warning("word-timing warm-up failed: %s", exc)

    def _load_examples(self) -> None:
        try:
            from testbed.golden import load_golden

            examples = examples_from_golden(load_golden())
            if examples:
                self._examples = examples
        except Exception as exc:
            self.logger.warning(
                "golden text queries unavailable for intents (%s); using built-in examples", exc
            )

    def intent_examples(self) -> list[tuple[str, str]]:
        return self._examples

    def encode_clip_text(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tokens = self._tokenizer(texts)
            emb = self._clip.encode_text(tokens.to(self.device))
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return np.asarray(emb.cpu().numpy(), dtype=np.float32)

    def encode_clip_images(self, images: list[Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            batch = torch.stack([self._preprocess(im) for im in images]).to(self.device)
            emb = self._clip.encode_image(batch)
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return np.asarray(emb.cpu().numpy(), dtype=np.float32)

    def encode_minilm(self, texts: list[str]) -> np.ndarray:
        emb = self._minilm.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
        return np.asarray(emb, dtype=np.float32)

    def transcribe(self, audio: np.ndarray, language: str | None) -> dict[str, Any]:
        import whisper

        memo = self._encoder_memo.active() if self._encoder_memo is not None else contextlib.nullcontext()
        with memo:
            result: dict[str, Any] = whisper.transcribe(
                self._whisper,
                audio,
                language=language,
                word_timestamps=True,
                fp16=False,
                temperature=0.0,
                condition_on_previous_text=False,
                verbose=None,
            )
        return result


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())


# --------------------------------------------------------------------------- request bodies


class TextsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1)


class ImagesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(min_length=1, description="base64-encoded PNG or JPEG images")


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str | None = None
    messages: list[dict[str, str]] | None = None


class RouterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    image_b64: str | None = None
    audio_b64: str | None = None
    language: str | None = None


# --------------------------------------------------------------------------- errors and decoding


class ServiceError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AudioTimeout(Exception):
    pass


def decode_image(b64: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError(400, f"image is not valid base64: {exc}") from exc
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.width * im.height > 4096 * 4096:
                raise ServiceError(400, "image too large (max 4096x4096 pixels)")
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ServiceError(400, f"image is not a readable PNG/JPEG: {exc}") from exc


def decode_b64(b64: str, what: str) -> bytes:
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError(400, f"{what} is not valid base64: {exc}") from exc


FFMPEG_CMD = [
    "ffmpeg",
    "-hide_banner",
    "-loglevel",
    "error",
    "-threads",
    "1",
    "-i",
    "pipe:0",
    "-f",
    "s16le",
    "-ac",
    "1",
    "-acodec",
    "pcm_s16le",
    "-ar",
    "16000",
    "pipe:1",
]


def decode_audio(data: bytes, timeout_s: float, *, stall: bool = False) -> np.ndarray:
    """Decode any ffmpeg-readable audio to mono float32 at 16 kHz, killing ffmpeg after ``timeout_s``.

    ``stall`` (the ``audio_timeout`` fault) feeds ffmpeg only half the upload and never closes its
    input — a stalled upload stream — so the decoder genuinely hangs until the timeout kills it.
    Raises ``AudioTimeout`` on timeout and ``ServiceError(400)`` on undecodable input.
    """
    if not stall:
        try:
            proc = subprocess.run(FFMPEG_CMD, input=data, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AudioTimeout(f"ffmpeg subprocess timeout after {timeout_s:.1f} s") from exc
        if proc.returncode != 0 or not proc.stdout:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ServiceError(400, f"audio could not be decoded: {err[-1] if err else 'empty output'}")
        return np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0

    p = subprocess.Popen(FFMPEG_CMD, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed() -> None:
        with contextlib.suppress(OSError, ValueError):
            assert p.stdin is not None
            p.stdin.write(data[: max(1, len(data) // 2)])
            p.stdin.flush()

    def drain() -> None:
        with contextlib.suppress(OSError, ValueError):
            assert p.stdout is not None
            while p.stdout.read(65536):
                pass

    threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain, daemon=True)]
    for t in threads:
        t.start()
    try:
        p.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise AudioTimeout(f"ffmpeg subprocess timeout after {timeout_s:.1f} s (pid {p.pid})") from exc
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout, p.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
    raise ServiceError(400, "audio stream ended early")


def check_admin(request: Request, token: str | None) -> None:
    """Bearer-token check of the admin API: 503 when no token is configured, 401 when wrong."""
    if not token:
        raise HTTPException(503, "admin token not configured")
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise HTTPException(
            401, "invalid or missing admin bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


# --------------------------------------------------------------------------- the app


class Service:
    """State of one service process: models, faults, metrics, logger."""

    def __init__(self, settings: ServiceSettings, backends: Backends | None = None) -> None:
        self.settings = settings
        self.faults = F.FaultRegistry()
        self.logger = setup_logging(
            f"testbed.service.{settings.version}.{id(self)}",
            settings.version,
            settings.log_file,
            stdout=settings.log_stdout,
            clock=self.log_clock,
        )
        self.real_backends: RealBackends | None = None
        if backends is None:
            self.real_backends = RealBackends(settings.device, self.logger)
            backends = self.real_backends
        self.backends: Backends = backends
        gpu = None
        try:
            import torch

            if torch.cuda.is_available():
                from testbed.metrics import torch_gpu_memory

                gpu = torch_gpu_memory
        except Exception:  # torch missing or broken: no GPU gauge
            gpu = None
        self.metrics = ServiceMetrics(settings.version, gpu)
        self.tenants = TenantLimiter(settings.max_tenants)
        self.sems = {k: asyncio.Semaphore(settings.model_concurrency) for k in MODEL_KEYS}
        self.ffmpeg_sem = asyncio.Semaphore(2)
        self.started = time.time()
        self.rng = random.Random()  # noqa: S311 - fault sampling, not security
        self.pii_rng = random.Random()  # noqa: S311 - fake PII
        self._intent: CentroidIntentClassifier | None = None
        self._keyword_intent = KeywordIntentClassifier()
        self._faq_emb: np.ndarray | None = None
        self._init_lock = threading.Lock()

    # ---- clocks (the clock_skew fault offsets them)

    def skew_s(self, channel: str | None) -> float:
        fault = self.faults.get("clock_skew")
        if fault is None:
            return 0.0
        if channel is not None and channel not in fault.channels:
            return 0.0
        if channel is None and len(fault.channels) < len(CHANNELS):
            return 0.0
        return fault.magnitude / 1000.0

    def now(self, channel: str | None) -> float:
        return time.time() + self.skew_s(channel)

    def log_clock(self) -> float:
        from testbed.logs import channel_var

        return self.now(channel_var.get())

    # ---- health

    def model_states(self) -> dict[str, dict[str, Any]]:
        """Model states as health reports them, with the model_not_loaded fault applied."""
        out = {k: s.as_dict() for k, s in self.backends.states().items()}
        fault = self.faults.get("model_not_loaded")
        if fault is not None:
            key = MODEL_FOR_CHANNEL[fault.channels[0]]
            st = out.get(key)
            if st is not None:
                real = st["sha256"] or st["expected_sha256"] or ""
                bad = hashlib.sha256(f"corrupted:{real}".encode()).hexdigest()
                st.update(
                    status="error",
                    loaded=False,
                    sha256=bad,
                    checksum_ok=False,
                    error=f"checksum mismatch (expected {st['expected_sha256'] or real}, got {bad})",
                )
        return out

    def module_statuses(self) -> tuple[dict[str, str], dict[str, str]]:
        models = self.model_states()
        status: dict[str, str] = {}
        detail: dict[str, str] = {}

        def model_status(key: str) -> str:
            s = models[key]["status"]
            return "ready" if s == "loaded" else ("degraded" if s == "loading" else "error")

        for module in ("embedding", "llm"):
            keys = [k for k, (_, mods) in MODEL_KEYS.items() if module in mods]
            states = [model_status(k) for k in keys]
            status[module] = (
                "error" if "error" in states else ("degraded" if "degraded" in states else "ready")
            )
            bad = [
                f"{models[k]['name']}: {models[k]['error'] or models[k]['status']}"
                for k in keys
                if model_status(k) != "ready"
            ]
            detail[module] = "; ".join(bad)
        w = model_status("whisper")
        status["audio_processor"] = w
        detail["audio_processor"] = (
            ""
            if w == "ready"
            else f"{models['whisper']['name']}: {models['whisper']['error'] or models['whisper']['status']}"
        )
        if w == "ready" and model_status("minilm") != "ready":
            status["audio_processor"] = "degraded"
            detail["audio_processor"] = "intent model unavailable: keyword fallback"
        downstream = [status["embedding"], status["llm"], status["audio_processor"]]
        if all(s == "error" for s in downstream):
            status["multimodal_router"], detail["multimodal_router"] = "error", "no module available"
        elif any(s != "ready" for s in downstream):
            status["multimodal_router"], detail["multimodal_router"] = (
                "degraded",
                "a downstream module is not ready",
            )
        else:
            status["multimodal_router"], detail["multimodal_router"] = "ready", ""
        rd = self.faults.get("router_degraded")
        if rd is not None and status["multimodal_router"] == "ready":
            status["multimodal_router"] = "degraded"
            detail["multimodal_router"] = "route table stale: dispatch fallback in use"
        return {m: status[m] for m in MODULES}, {m: detail[m] for m in MODULES}

    def health(self) -> dict[str, Any]:
        statuses, details = self.module_statuses()
        overall = (
            "error"
            if "error" in statuses.values()
            else ("degraded" if "degraded" in statuses.values() else "ready")
        )
        models = self.model_states()
        self.metrics.set_module_status(statuses)
        for st in models.values():
            for module in st["modules"]:
                self.metrics.model_loaded.labels(self.settings.version, module, st["name"]).set(
                    1.0 if st["loaded"] else 0.0
                )
        return {
            "status": overall,
            "version": self.settings.version,
            "modules": statuses,
            "module_details": details,
            "models": list(models.values()),
            "uptime_s": round(time.time() - self.started, 3),
            "timestamp": self.now(None),
        }

    # ---- model calls

    def check_available(self, key: str) -> None:
        """503 if model ``key`` is not usable (still loading, failed, or the model_not_loaded fault)."""
        nl = self.faults.get("model_not_loaded")
        if nl is not None and MODEL_FOR_CHANNEL[nl.channels[0]] == key:
            st = self.model_states()[key]
            self.logger.error(
                "model not loaded: %s (%s)", st["name"], st["error"], extra=fields(model=st["name"])
            )
            raise ServiceError(503, f"model not loaded: {st['name']} ({st['error']})")
        state = self.backends.states()[key]
        if state.status != "loaded":
            if state.status == "loading":
                raise ServiceError(503, f"model loading: {state.name}")
            self.logger.error(
                "model not loaded: %s (%s)", state.name, state.error, extra=fields(model=state.name)
            )
            raise ServiceError(503, f"model not loaded: {state.name} ({state.error})")

    async def call_model(
        self, key: str, channel: str, sub_channel: str, fn: Callable[..., Any], *args: Any
    ) -> Any:
        """Run ``fn(*args)`` on model ``key`` in a worker thread, bounded by the model's semaphore.

        Applies the model-level faults: model_not_loaded (503) and cuda_oom (500).
        """
        name = MODEL_KEYS[key][0]
        self.check_available(key)
        oom = self.faults.get("cuda_oom")
        if (
            oom is not None
            and (channel in oom.channels or sub_channel in oom.channels)
            and self.rng.random() < oom.magnitude
        ):
            gib = self.rng.choice([1.5, 2.0, 3.25, 4.0])
            self.logger.error(
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate %.2f GiB (GPU 0; 79.11 GiB "
                "total capacity; 77.80 GiB already allocated; 612.00 MiB free; 78.02 GiB reserved in total "
                "by PyTorch) while running %s",
                gib,
                name,
                extra=fields(model=name, module=MODEL_KEYS[key][1][0]),  # the module that runs the model
            )
            raise ServiceError(500, f"CUDA out of memory while running {name}")
        sem = self.sems[key]
        gauge = self.metrics.model_queue.labels(self.settings.version, name)
        gauge.inc()
        try:
            async with sem:
                t0 = time.perf_counter()
                result = await to_thread.run_sync(run_in_context(lambda: fn(*args)))
                self.metrics.model_inference.labels(self.settings.version, name).observe(
                    time.perf_counter() - t0
                )
                return result
        finally:
            gauge.dec()

    # ---- embeddings with faults

    def _drift(self, emb: np.ndarray, channel: str, sub_channel: str, key: int) -> np.ndarray:
        d = self.faults.get("embedding_drift")
        if d is not None and (sub_channel in d.channels or channel in d.channels):
            return F.drift(emb, F.drift_shift(d.elapsed_s(), d.magnitude), key=key)
        return emb

    async def clip_text(self, texts: list[str], channel: str) -> np.ndarray:
        emb = await self.call_model("clip", channel, "text", self.backends.encode_clip_text, texts)
        return self._drift(np.asarray(emb, np.float32), channel, "text", 3)

    async def clip_images(self, images: list[Any], channel: str) -> np.ndarray:
        emb = np.asarray(
            await self.call_model("clip", channel, "image", self.backends.encode_clip_images, images),
            np.float32,
        )
        mis = self.faults.get("image_text_misalignment")
        if mis is not None:
            emb = F.misalign(emb, mis.magnitude)
        emb = self._drift(emb, channel, "image", 4)
        dm = self.faults.get("embedding_dim_mismatch")
        if dm is not None and int(dm.magnitude) != emb.shape[-1]:
            emb = F.project_dim(emb, int(dm.magnitude))
            self.logger.error(
                "embedding dimension mismatch: image encoder returned %d-d vectors but the text encoder "
                "returns %d-d (router embedding_dim=%d)",
                emb.shape[-1],
                self.backends.clip_dim,
                self.backends.clip_dim,
            )
        return emb

    async def minilm(self, texts: list[str], channel: str, drift: bool = True) -> np.ndarray:
        emb = np.asarray(
            await self.call_model("minilm", channel, "text", self.backends.encode_minilm, texts), np.float32
        )
        return self._drift(emb, channel, "text", 5) if drift else emb

    # ---- llm

    async def answer(self, message: str, channel: str) -> dict[str, Any]:
        if self._faq_emb is None:
            self._faq_emb = await self.minilm([q for q, _ in FAQ], channel, drift=False)
        q = await self.minilm([message or " "], channel, drift=False)
        sims = self._faq_emb @ q[0]
        best = int(np.argmax(sims))
        score = float(sims[best])
        fallback = score < FAQ_MIN_SCORE or not message.strip()
        return {
            "answer": FAQ_FALLBACK if fallback else FAQ[best][1],
            "matched_question": None if fallback else FAQ[best][0],
            "score": round(score, 4),
            "fallback": fallback,
            "model": f"faq-retrieval ({MODEL_KEYS['minilm'][0]})",
        }

    # ---- audio

    async def intent(self, text: str, channel: str) -> IntentResult:
        try:
            if self._intent is None:
                examples = self.backends.intent_examples()
                self._intent = await self.call_model(
                    "minilm",
                    channel,
                    "text",
                    lambda: CentroidIntentClassifier(self.backends.encode_minilm, examples),
                )
            clf = self._intent
            assert clf is not None
            result: IntentResult = await self.call_model("minilm", channel, "text", clf.classify, text)
            return result
        except ServiceError:
            # intent model unavailable: keyword rules (health shows audio_processor degraded)
            return self._keyword_intent.classify(text)

    async def transcribe(self, data: bytes, language: str | None, channel: str) -> dict[str, Any]:
        timeout = self.settings.audio_timeout_s
        at = self.faults.get("audio_timeout")
        stall = at is not None and (channel in at.channels or "audio" in at.channels)
        if stall and at is not None:
            timeout = min(timeout, at.magnitude)
        # whisper must be usable before we spend time decoding
        self.check_available("whisper")
        async with self.ffmpeg_sem:
            try:
                audio = await to_thread.run_sync(
                    run_in_context(lambda: decode_audio(data, timeout, stall=stall))
                )
            except AudioTimeout as exc:
                self.logger.error(
                    "%s while decoding audio (audio.timeout_sec=%.1f); decoder killed",
                    exc,
                    timeout,
                    extra=fields(module="audio_processor"),
                )
                raise ServiceError(504, f"audio decode timed out: {exc}") from exc
        duration = len(audio) / 16000.0
        if duration > 120:
            raise ServiceError(400, "audio longer than 120 s")
        deg = self.faults.get("asr_degraded")
        if deg is not None and (channel in deg.channels or "audio" in deg.channels):
            audio = F.add_noise_snr(audio, deg.magnitude)
        result = await self.call_model("whisper", channel, "audio", self.backends.transcribe, audio, language)
        skew = self.skew_s(channel)
        segments: list[dict[str, Any]] = []
        for seg in result.get("segments", []):
            words = [
                {
                    "word": str(w.get("word", "")).strip(),
                    "start": round(float(w["start"]) + skew, 3),
                    "end": round(float(w["end"]) + skew, 3),
                    "probability": round(float(w.get("probability", 0.0)), 4),
                }
                for w in seg.get("words", []) or []
            ]
            segments.append(
                {
                    "id": seg.get("id", len(segments)),
                    "start": round(float(seg["start"]) + skew, 3),
                    "end": round(float(seg["end"]) + skew, 3),
                    "text": str(seg.get("text", "")).strip(),
                    "avg_logprob": round(float(seg.get("avg_logprob", 0.0)), 4),
                    "no_speech_prob": round(float(seg.get("no_speech_prob", 0.0)), 4),
                    "words": words,
                }
            )
        text = str(result.get("text", "")).strip()
        intent = await self.intent(text, channel)
        return {
            "text": text,
            "language": result.get("language"),
            "duration_s": round(duration, 3),
            "segments": segments,
            "intent": intent.as_dict(),
            "model": MODEL_KEYS["whisper"][0],
        }

    # ---- router

    @staticmethod
    def plan(inputs: Sequence[str]) -> list[str]:
        if "audio" in inputs:
            if "image" in inputs:
                return ["audio_processor", "embedding"]
            if "text" in inputs:
                return ["audio_processor", "llm"]
            return ["audio_processor"]
        if "image" in inputs:
            return ["embedding"]
        return ["llm"]

    @staticmethod
    def misroute(correct: list[str]) -> list[str]:
        """Where a degraded router sends a request instead (always a different first module)."""
        return ["embedding"] if correct[0] == "llm" else ["llm"]

    async def route(self, body: RouterBody, request: Request) -> dict[str, Any]:
        channel = "router"
        inputs = [
            k for k, v in (("text", body.text), ("image", body.image_b64), ("audio", body.audio_b64)) if v
        ]
        if not inputs:
            raise ServiceError(400, "router request needs at least one of text, image_b64, audio_b64")
        route = self.plan(inputs)
        rd = self.faults.get("router_degraded")
        if rd is not None and self.rng.random() < rd.magnitude:
            route = self.misroute(route)
        request.state.route = "->".join(route)
        self.logger.info(
            "routed request: inputs=%s route=%s",
            "+".join(inputs),
            "->".join(route),
            extra=fields(route="->".join(route), inputs=inputs),
        )
        image = decode_image(body.image_b64) if body.image_b64 and "embedding" in route else None
        results: dict[str, Any] = {}
        stages: list[dict[str, Any]] = []
        query_text = body.text or ""
        for module in route:
            started = self.now(channel)
            if module == "audio_processor":
                assert body.audio_b64 is not None
                tr = await self.transcribe(decode_b64(body.audio_b64, "audio"), body.language, channel)
                results["transcript"] = tr
                if not body.text:
                    query_text = tr["text"]
            elif module == "embedding":
                if image is not None:
                    img = await self.clip_images([image], channel)
                    results["image_embedding_dim"] = int(img.shape[-1])
                    if query_text:
                        txt = await self.clip_text([query_text], channel)
                        if txt.shape[-1] != img.shape[-1]:
                            self.logger.error(
                                "embedding dimension mismatch: cannot compare image (%d-d) and text (%d-d) "
                                "embeddings",
                                img.shape[-1],
                                txt.shape[-1],
                            )
                            raise ServiceError(
                                500,
                                "embedding dimension mismatch: "
                                f"image {img.shape[-1]} vs text {txt.shape[-1]}",
                            )
                        results["similarity"] = round(float(img[0] @ txt[0]), 4)
                        results["query_text"] = query_text
                else:
                    txt = await self.clip_text([query_text or " "], channel)
                    results["text_embedding_dim"] = int(txt.shape[-1])
            elif module == "llm":
                results["chat"] = await self.answer(query_text, channel)
            stages.append({"module": module, "started_at": started, "ended_at": self.now(channel)})
        return {"inputs": inputs, "route": route, "results": results, "stages": stages}


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServiceError(400, f"body is not valid JSON: {exc}") from exc


def create_app(settings: ServiceSettings | None = None, backends: Backends | None = None) -> FastAPI:
    """The service app. Without ``backends`` it loads the real models in a background thread at startup."""
    settings = settings or ServiceSettings.from_env()
    svc = Service(settings, backends)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc.logger.info("service starting: version %s", settings.version, extra=fields(event="startup"))
        if svc.real_backends is not None:
            svc.real_backends.start()
        yield
        svc.logger.info("service stopping", extra=fields(event="shutdown"))

    app = FastAPI(title=f"Triage24 testbed service ({settings.version})", lifespan=lifespan)
    app.state.service = svc

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "version": settings.version}, status_code=exc.status)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Any]) -> Response:
        path = request.url.path
        channel, module = ROUTES.get(path, (None, None))
        ctx = trace_from_headers(request.headers.get("traceparent"))
        tenant = svc.tenants(request.headers.get("x-tenant"))
        bind_trace(ctx, channel, tenant if channel else None)
        start = time.perf_counter()
        response: Response
        if channel:
            svc.metrics.inflight.labels(settings.version, channel).inc()
        try:
            burst = svc.faults.get("error_burst", channel) if channel else None
            spike = svc.faults.get("latency_spike", channel) if channel else None
            if spike is not None:
                await asyncio.sleep(spike.magnitude / 1000.0)
            if burst is not None and svc.rng.random() < burst.magnitude:
                svc.logger.error(
                    "HTTP 500 internal server error in %s: worker raised RuntimeError('upstream error: "
                    "connection reset by peer')",
                    module,
                    extra=fields(module=module),
                )
                response = JSONResponse({"error": "internal server error", "version": settings.version}, 500)
            else:
                response = await call_next(request)
        except Exception as exc:
            svc.logger.exception("unhandled error: %s", exc, extra=fields(module=module))
            response = JSONResponse({"error": "internal server error", "version": settings.version}, 500)
        finally:
            if channel:
                svc.metrics.inflight.labels(settings.version, channel).dec()
        elapsed = time.perf_counter() - start
        response.headers["X-Trace-Id"] = ctx.trace_id
        response.headers["traceparent"] = ctx.traceparent
        response.headers["X-Version"] = settings.version
        response.headers["X-Server-Time"] = f"{svc.now(channel):.3f}"
        if channel:
            code = response.status_code
            svc.metrics.observe(channel, tenant, code, elapsed)
            extra: dict[str, Any] = {
                "method": request.method,
                "path": path,
                "status": code,
                "latency_ms": round(elapsed * 1000, 2),
                "module": module,
                "user_id": request.headers.get("x-user-id"),
            }
            route = getattr(request.state, "route", None)
            if route:
                extra["route"] = route
            msg = "request completed" if code < 400 else f"request failed: HTTP {code}"
            pii = svc.faults.get("pii_in_logs", channel)
            if pii is not None and svc.pii_rng.random() < pii.magnitude:
                sample = F.make_pii(svc.pii_rng)
                extra["caller"] = {
                    "phone": sample.cn_phone,
                    "alt_phone": sample.intl_phone,
                    "id_card": sample.cn_id,
                    "email": sample.email,
                    "card": sample.card,
                }
                msg += f" caller profile: {sample.as_text()}"
            level = logging.ERROR if code >= 500 else (logging.WARNING if code >= 400 else logging.INFO)
            svc.logger.log(level, msg, extra={"fields": extra})
            slow = settings.slow_ms.get(channel)
            if slow is not None and elapsed * 1000 > slow:
                svc.logger.warning(
                    "slow request: %.0f ms on %s (threshold %.0f ms)",
                    elapsed * 1000,
                    channel,
                    slow,
                    extra=fields(latency_ms=round(elapsed * 1000, 2), path=path),
                )
        return response

    def stamp(channel: str, body: dict[str, Any]) -> dict[str, Any]:
        body.setdefault("version", settings.version)
        body["timestamp"] = round(svc.now(channel), 3)
        return body

    # ---- health and metrics

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        return svc.health()

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        svc.health()  # refresh model/module gauges
        svc.metrics.refresh_gpu()
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ---- data routes

    def check_batch(n: int) -> None:
        if n > settings.max_batch:
            raise ServiceError(400, f"batch too large: {n} > {settings.max_batch}")

    @app.post("/v1/embeddings/text")
    async def embed_text(body: TextsBody) -> dict[str, Any]:
        check_batch(len(body.texts))
        emb = await svc.clip_text(body.texts, "text")
        return stamp(
            "text", {"model": MODEL_KEYS["clip"][0], "dim": int(emb.shape[-1]), "embeddings": emb.tolist()}
        )

    @app.post("/v1/embeddings/rag")
    async def embed_rag(body: TextsBody) -> dict[str, Any]:
        check_batch(len(body.texts))
        emb = await svc.minilm(body.texts, "text")
        return stamp(
            "text", {"model": MODEL_KEYS["minilm"][0], "dim": int(emb.shape[-1]), "embeddings": emb.tolist()}
        )

    @app.post("/v1/embeddings/image")
    async def embed_image(body: ImagesBody) -> dict[str, Any]:
        check_batch(len(body.images))
        images = [decode_image(b) for b in body.images]
        emb = await svc.clip_images(images, "image")
        return stamp(
            "image", {"model": MODEL_KEYS["clip"][0], "dim": int(emb.shape[-1]), "embeddings": emb.tolist()}
        )

    @app.post("/v1/chat")
    async def chat(body: ChatBody) -> dict[str, Any]:
        message = body.message
        if message is None and body.messages:
            users = [m.get("content", "") for m in body.messages if m.get("role", "user") == "user"]
            message = users[-1] if users else ""
        if message is None:
            raise ServiceError(400, "chat needs 'message' or 'messages'")
        return stamp("text", await svc.answer(message, "text"))

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "")
        language: str | None = None
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ServiceError(400, "multipart upload needs a 'file' field")
            data = await upload.read()
            lang = form.get("language")
            language = lang if isinstance(lang, str) and lang else None
        else:
            raw = await request.body()
            if len(raw) > settings.max_upload_bytes * 2:
                raise ServiceError(413, "upload too large")
            body = _json_body(raw)
            if not isinstance(body, dict) or not isinstance(body.get("audio_b64"), str):
                raise ServiceError(400, 'JSON body needs {"audio_b64": "<base64 audio>", "language"?: "en"}')
            data = decode_b64(body["audio_b64"], "audio_b64")
            language = body.get("language") or None
        if len(data) > settings.max_upload_bytes:
            raise ServiceError(413, "upload too large")
        if not data:
            raise ServiceError(400, "empty audio")
        return stamp("audio", await svc.transcribe(data, language, "audio"))

    @app.post("/v1/router")
    async def router(body: RouterBody, request: Request) -> dict[str, Any]:
        return stamp("router", await svc.route(body, request))

    # ---- admin (faults)

    def admin(request: Request) -> None:
        check_admin(request, settings.admin_token)

    def catalogue() -> dict[str, Any]:
        return {
            name: {
                "summary": s.summary,
                "channels": list(s.channels),
                "default_channel": s.default_channel or "all",
                "magnitude": s.magnitude_meaning,
                "default_magnitude": s.default_magnitude,
                "range": [s.magnitude_min, s.magnitude_max],
                "shows_in": s.shows_in,
            }
            for name, s in F.FAULTS.items()
        }

    @app.get("/admin/faults")
    async def list_faults(request: Request) -> dict[str, Any]:
        admin(request)
        return {"active": [f.as_dict() for f in svc.faults.active()], "available": catalogue()}

    @app.post("/admin/faults")
    async def set_fault(request: Request) -> JSONResponse:
        admin(request)
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        try:
            fault = svc.faults.activate(body)
        except F.FaultError as exc:
            return JSONResponse({"error": str(exc), "valid_faults": list(F.FAULT_NAMES)}, status_code=400)
        if settings.log_admin:
            svc.logger.info("admin: fault set %s", fault.as_dict(), extra=fields(event="admin"))
        if fault.name == "model_not_loaded":
            st = svc.model_states()[MODEL_FOR_CHANNEL[fault.channels[0]]]
            svc.logger.error(
                "failed to load model %s: %s",
                st["name"],
                st["error"],
                extra=fields(event="model_load", model=st["name"]),
            )
        return JSONResponse(
            {"activated": fault.as_dict(), "active": [f.as_dict() for f in svc.faults.active()]}
        )

    @app.delete("/admin/faults")
    async def clear_faults(request: Request, fault: str | None = None) -> JSONResponse:
        admin(request)
        try:
            cleared = svc.faults.clear(fault)
        except F.FaultError as exc:
            return JSONResponse({"error": str(exc), "valid_faults": list(F.FAULT_NAMES)}, status_code=400)
        if settings.log_admin:
            svc.logger.info("admin: faults cleared %s", cleared, extra=fields(event="admin"))
        return JSONResponse({"cleared": cleared, "active": [f.as_dict() for f in svc.faults.active()]})

    @app.get("/")
    async def root() -> PlainTextResponse:
        return PlainTextResponse(f"triage24 testbed service {settings.version}\n")

    return app
