"""Reference encoders: the CLIP and Whisper that phase 2 compares the service with.

Configured per target in ``runbooks/targets.yaml`` (``reference:``): an open_clip model name with a
pretrained tag or a local checkpoint path (plus an optional model-config JSON for custom models), and
an openai-whisper checkpoint path or model name. Device ``auto`` means ``cuda`` where torch sees a GPU
(a GPU pod), else the CPU. Models are loaded once per process (keyed by device and path) and reused by
every check of the process; inputs go through in batches. A missing weight file raises
:class:`ReferenceModelError` naming the file and how to provide it — the check turns that into
``insufficient_evidence``.

Whisper transcripts of golden clips are deterministic for a given checkpoint, clip and options, so
they are memoised on disk (``<cache_dir>/<sha256>.json``); the GPU path recomputes them when asked
(``use_cache=False``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from diagnostics.runbooks.schemas import ReferenceModels

log = logging.getLogger("triage24.deep.encoders")

FloatArray = npt.NDArray[np.float64]

_lock = threading.RLock()
_clip_cache: dict[tuple[str, str, str], tuple[Any, Callable[[Any], Any], Callable[..., Any]]] = {}
_whisper_cache: dict[tuple[str, str], Any] = {}

PROVIDE_HINT = {
    "clip": "set reference.clip.pretrained in runbooks/targets.yaml to the checkpoint file "
    "(e.g. open_clip_pytorch_model.bin of ViT-B-32) or to an open_clip pretrained tag in the model cache",
    "whisper": "set reference.whisper.checkpoint in runbooks/targets.yaml to an openai-whisper .pt file "
    "(for the testbed: run `triage24 models prepare`)",
}


class ReferenceModelError(RuntimeError):
    """A reference model cannot be loaded: the message names the file and how to provide it."""


def resolve_device(preference: str = "auto") -> str:
    """``cuda`` when asked for (or ``auto``) and torch sees a GPU, else ``cpu``."""
    if preference == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if preference == "cuda":
        log.warning("reference device cuda requested but torch sees no GPU: using the CPU")
    return "cpu"


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.startswith("~") or value.endswith((".pt", ".bin", ".safetensors", ".pth"))


def resolve_path(value: str, root: Path) -> Path:
    """A configured path: ``~`` expanded, relative paths against ``root`` (the repo)."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def load_open_clip(
    model: str, pretrained: str, *, device: str = "cpu", config: Path | None = None
) -> tuple[Any, Callable[[Any], Any], Callable[..., Any]]:
    """(model, eval preprocess, tokenizer) of an open_clip model; cached per process and device.

    ``pretrained`` is a checkpoint path or an open_clip tag; ``config`` an extra model-config JSON
    registered first (custom architectures such as the testbed's clip-shapes).
    """
    key = (device, model, pretrained)
    with _lock:
        if key in _clip_cache:
            return _clip_cache[key]
        if _looks_like_path(pretrained) and not Path(pretrained).is_file():
            raise ReferenceModelError(f"CLIP checkpoint {pretrained} not found; {PROVIDE_HINT['clip']}")
        import open_clip

        if config is not None:
            if not config.exists():
                raise ReferenceModelError(
                    f"open_clip model config {config} not found (reference.clip.config)"
                )
            if model not in open_clip.list_models():
                open_clip.add_model_config(config)
        if model not in open_clip.list_models():
            raise ReferenceModelError(
                f"open_clip has no model {model!r}; use one of open_clip.list_models() "
                "or give reference.clip.config"
            )
        net, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=pretrained, device=device
        )
        net.eval()
        tokenizer = open_clip.get_tokenizer(model)
        _clip_cache[key] = (net, preprocess, tokenizer)
        log.info("reference CLIP %s loaded from %s on %s", model, pretrained, device)
        return _clip_cache[key]


def _stored_alignment_heads(path: Path) -> str | None:
    import torch

    ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    heads = ck.get("alignment_heads") if isinstance(ck, dict) else None
    return heads if isinstance(heads, str) else None


def load_whisper_model(
    checkpoint: Path | str, *, device: str = "cpu", download_root: Path | None = None
) -> Any:
    """An openai-whisper model from a checkpoint file (alignment heads stored in it are applied, for
    word timestamps) or a model name resolved in ``download_root``; cached per process and device."""
    key = (device, str(checkpoint))
    with _lock:
        if key in _whisper_cache:
            return _whisper_cache[key]
        import whisper

        if isinstance(checkpoint, Path):
            if not checkpoint.is_file():
                raise ReferenceModelError(
                    f"Whisper checkpoint {checkpoint} not found; {PROVIDE_HINT['whisper']}"
                )
            model = whisper.load_model(str(checkpoint), device=device)
            heads = _stored_alignment_heads(checkpoint)
            if heads is not None:
                model.set_alignment_heads(heads.encode("ascii"))
        else:
            root = str(download_root) if download_root else None
            model = whisper.load_model(checkpoint, device=device, download_root=root)
        model.eval()
        _whisper_cache[key] = model
        log.info("reference Whisper loaded from %s on %s", checkpoint, device)
        return model


def sha256_bytes(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


@dataclass
class Transcript:
    text: str
    language: str
    words: list[tuple[str, float, float]] = field(default_factory=list)  # (word, start_s, end_s)
    seconds: float = 0.0


@dataclass
class ReferenceEncoders:
    """The reference CLIP and Whisper of one target, loaded lazily on first use."""

    config: ReferenceModels
    root: Path
    cache_dir: Path | None = None
    _device: str | None = None

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = resolve_device(self.config.device)
        return self._device

    # ------------------------------------------------------------------------------------- CLIP

    @property
    def has_clip(self) -> bool:
        return self.config.clip is not None

    def clip(self) -> tuple[Any, Callable[[Any], Any], Callable[..., Any]]:
        cfg = self.config.clip
        if cfg is None:
            raise ReferenceModelError(
                "no reference CLIP configured (reference.clip in runbooks/targets.yaml)"
            )
        pretrained = (
            str(resolve_path(cfg.pretrained, self.root))
            if _looks_like_path(cfg.pretrained)
            else cfg.pretrained
        )
        config = resolve_path(cfg.config, self.root) if cfg.config else None
        return load_open_clip(cfg.model, pretrained, device=self.device, config=config)

    def clip_dim(self) -> int:
        model, _, _ = self.clip()
        return (
            int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else int(model.embed_dim)
        )

    def encode_texts(self, texts: Sequence[str]) -> FloatArray:
        """L2-normalised CLIP text embeddings, in batches."""
        import torch

        model, _, tokenizer = self.clip()
        out: list[FloatArray] = []
        with torch.no_grad():
            for i in range(0, len(texts), self.config.batch_size):
                tokens = tokenizer(list(texts[i : i + self.config.batch_size])).to(self.device)
                emb = model.encode_text(tokens).float()
                out.append((emb / emb.norm(dim=-1, keepdim=True)).cpu().numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, 0))

    def encode_images(self, images: Sequence[bytes]) -> FloatArray:
        """L2-normalised CLIP image embeddings of encoded images (PNG/JPEG bytes), in batches."""
        import torch
        from PIL import Image

        model, preprocess, _ = self.clip()
        out: list[FloatArray] = []
        with torch.no_grad():
            for i in range(0, len(images), self.config.batch_size):
                batch = [
                    preprocess(Image.open(io.BytesIO(b)).convert("RGB"))
                    for b in images[i : i + self.config.batch_size]
                ]
                emb = model.encode_image(torch.stack(batch).to(self.device)).float()
                out.append((emb / emb.norm(dim=-1, keepdim=True)).cpu().numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, 0))

    # ---------------------------------------------------------------------------------- Whisper

    @property
    def has_whisper(self) -> bool:
        return self.config.whisper is not None

    def _whisper_target(self) -> Path | str:
        cfg = self.config.whisper
        if cfg is None:
            raise ReferenceModelError(
                "no reference Whisper configured (reference.whisper in runbooks/targets.yaml)"
            )
        if _looks_like_path(cfg.checkpoint):
            return resolve_path(cfg.checkpoint, self.root)
        return cfg.checkpoint

    def whisper(self) -> Any:
        return load_whisper_model(self._whisper_target(), device=self.device)

    def _cache_key(self, audio: bytes, language: str | None) -> str:
        target = self._whisper_target()
        ident = f"{target}|{Path(target).stat().st_size if isinstance(target, Path) else ''}|{language}|words"
        return sha256_bytes(ident.encode(), audio)

    def transcribe(
        self, audio_path: Path, language: str | None = None, *, use_cache: bool = True
    ) -> Transcript:
        """Greedy transcription with word timestamps (temperature 0: deterministic)."""
        audio = audio_path.read_bytes()
        cached = self.cache_dir / f"{self._cache_key(audio, language)}.json" if self.cache_dir else None
        if use_cache and cached is not None and cached.is_file():
            try:
                data = json.loads(cached.read_text(encoding="utf-8"))
                return Transcript(data["text"], data["language"], [tuple(w) for w in data["words"]], 0.0)
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable reference transcript cache %s: recomputing", cached)
        import time

        model = self.whisper()
        started = time.perf_counter()
        result = model.transcribe(
            str(audio_path),
            language=language,
            temperature=0.0,
            word_timestamps=True,
            condition_on_previous_text=False,
            fp16=self.device == "cuda",
        )
        seconds = time.perf_counter() - started
        words = [
            (str(w["word"]).strip(), float(w["start"]), float(w["end"]))
            for seg in result.get("segments", [])
            for w in seg.get("words", [])
        ]
        out = Transcript(
            str(result["text"]).strip(), str(result.get("language") or language or ""), words, seconds
        )
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            tmp.write_text(json.dumps({"text": out.text, "language": out.language, "words": out.words}))
            tmp.replace(cached)
        return out
