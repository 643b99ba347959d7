"""The service's models behind one interface: ``Backends`` (what the service calls) and ``RealBackends``."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from testbed.intent import DEFAULT_EXAMPLES, examples_from_golden
from testbed.logs import fields, run_in_context
from testbed.serving.config import MODEL_KEYS


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
