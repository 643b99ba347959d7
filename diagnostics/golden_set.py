"""A golden multimodal set: captioned images, spoken and typed queries with intents and expected text.

The format is the manifest ``<root>/manifest.json`` (``images``, ``audio``, ``texts``, ``intents``),
read by :func:`load_golden`, whose entries resolve their files against ``root``. The testbed's set
(``testbed/golden``) is one such set; a target names its own in ``runbooks/targets.yaml``
(``golden.path``). Phase 2 and the regression suite send it through the service.

:func:`normalise` / :func:`error_rate` are how transcripts are compared: English uses whisper's
``EnglishTextNormalizer`` and word error rate; Chinese removes punctuation/space, folds the few
traditional characters whisper tends to emit for these sentences to simplified, and uses the
character error rate (jiwer).
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

__all__ = [
    "GoldenAudio",
    "GoldenImage",
    "GoldenSet",
    "GoldenText",
    "ImageAttributes",
    "error_rate",
    "load_golden",
    "normalise",
]


Language = Literal["en", "zh"]


class _FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    path: str  # relative to the data directory
    _root: Path = PrivateAttr(default=Path("."))

    @property
    def file(self) -> Path:
        """Absolute path of the entry's file."""
        return self._root / self.path


class ImageAttributes(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    colour: str
    shape: str
    size: str
    position: str


class GoldenImage(_FileEntry):
    caption: str
    label: str
    attributes: ImageAttributes
    width: int
    height: int
    pixels_sha256: str
    sha256: str


class GoldenAudio(_FileEntry):
    text: str
    language: Language
    intent: str
    voice: str
    espeak_args: list[str]
    sample_rate: int
    duration_s: float
    metric: Literal["wer", "cer"]
    max_error_rate: float = Field(ge=0.0, le=1.0)
    sha256: str


class GoldenText(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    text: str
    language: Language
    intent: str


class GoldenSet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    version: int
    generator: str
    seed: int
    intents: list[str]
    images: list[GoldenImage]
    audio: list[GoldenAudio]
    texts: list[GoldenText]
    _root: Path = PrivateAttr(default=Path("."))

    @model_validator(mode="after")
    def _check(self) -> GoldenSet:
        labelled: list[tuple[str, str]] = [(a.id, a.intent) for a in self.audio]
        labelled += [(t.id, t.intent) for t in self.texts]
        for item_id, intent in labelled:
            if intent not in self.intents:
                raise ValueError(f"{item_id}: intent {intent!r} not in {self.intents}")
        ids = [e.id for e in self.images] + [i for i, _ in labelled]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate ids in manifest")
        return self

    @property
    def root(self) -> Path:
        return self._root

    def audio_by_id(self, clip_id: str) -> GoldenAudio:
        for a in self.audio:
            if a.id == clip_id:
                return a
        raise KeyError(clip_id)

    def queries(self) -> list[tuple[str, str, str]]:
        """(text, language, intent) of every spoken and typed query."""
        out: list[tuple[str, str, str]] = [(a.text, a.language, a.intent) for a in self.audio]
        return out + [(t.text, t.language, t.intent) for t in self.texts]


def load_golden(root: Path) -> GoldenSet:
    """Load and validate ``<root>/manifest.json``; a missing or invalid manifest names the file."""
    root = root.expanduser().resolve()
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"golden set manifest {manifest} missing; set golden.path in runbooks/targets.yaml "
            "(the testbed's is built by python -m testbed.golden.build)"
        )
    try:
        gs = GoldenSet.model_validate(json.loads(manifest.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"{manifest}: not a valid golden set: {exc}") from None
    gs._root = root
    for e in [*gs.images, *gs.audio]:
        e._root = root
    return gs


# ------------------------------------------------------------------------------ transcript scoring

# Traditional -> simplified for the characters of the golden Chinese sentences (whisper base often
# answers Mandarin in traditional script). Not a general converter.
_T2S = str.maketrans(
    "這個產貨嗎訂單裡裏們訊閱麼時錢還沒說買賣號請問際當會過對應該種購換發運",
    "这个产货吗订单里里们讯阅么时钱还没说买卖号请问际当会过对应该种购换发运",
)


@functools.cache
def _english_normalizer() -> Callable[[str], str]:
    from whisper.normalizers import EnglishTextNormalizer

    normalizer: Callable[[str], str] = EnglishTextNormalizer()
    return normalizer


def normalise(text: str, language: str) -> str:
    """Comparable form of a transcript: English via whisper's EnglishTextNormalizer; Chinese without
    punctuation/whitespace, full-width folded (NFKC), traditional folded to simplified."""
    if language == "en":
        return _english_normalizer()(text)
    t = unicodedata.normalize("NFKC", text).translate(_T2S)
    return "".join(ch for ch in t if not (ch.isspace() or unicodedata.category(ch).startswith("P")))


def error_rate(expected: str, hypothesis: str, language: str) -> float:
    """WER for English, CER for Chinese, on normalised text (jiwer)."""
    import jiwer

    ref, hyp = normalise(expected, language), normalise(hypothesis, language)
    if language == "en":
        if not ref:
            return 0.0 if not hyp else 1.0
        return float(jiwer.wer(ref, hyp))
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.cer(ref, hyp))
