"""A golden multimodal set: captioned images, spoken and typed queries with intents and expected text.

The format is the manifest ``<root>/manifest.json`` (``images``, ``audio``, ``texts``, ``intents``),
read by :func:`load_golden`, whose entries resolve their files against ``root``. The testbed's set
(``testbed/golden``) is one such set; a target names its own in ``runbooks/targets.yaml``
(``golden.path``). Phase 2 and the regression suite send it through the service.

:func:`normalise` / :func:`error_rate` are how transcripts are compared, by the language's own rule
(:func:`metric_for`, on the primary subtag of a BCP-47-like code: ``zh-TW`` is ``zh``):

- languages written without spaces between words (Chinese ``zh``/``yue``, Japanese ``ja``, Thai,
  Lao, Burmese, Khmer, Tibetan): character error rate, on the text without punctuation or
  whitespace, NFKC-folded (full-width forms); Chinese is also folded Traditional → Simplified by
  OpenCC's ``tw2s`` configuration (:func:`to_simplified`);
- every other (space-delimited) language: word error rate; English through whisper's
  ``EnglishTextNormalizer``, the others case-folded, NFKC, punctuation and symbols as spaces
  (combining marks kept, so Indic vowel signs stay in their words).

Error rates are computed by jiwer.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

__all__ = [
    "GoldenAudio",
    "GoldenImage",
    "GoldenSet",
    "GoldenText",
    "ImageAttributes",
    "error_rate",
    "load_golden",
    "metric_for",
    "normalise",
    "to_simplified",
]


#: A language code: ISO 639 primary subtag, optional BCP-47 subtags (``en``, ``zh``, ``zh-TW``, ``pt-BR``).
Language = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")]
Metric = Literal["wer", "cer"]


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
    metric: Metric
    max_error_rate: float = Field(ge=0.0, le=1.0)
    sha256: str

    @model_validator(mode="after")
    def _metric_follows_language(self) -> GoldenAudio:
        if self.metric != metric_for(self.language):
            raise ValueError(
                f"{self.id}: metric {self.metric!r} but {self.language!r} is scored by "
                f"{metric_for(self.language)!r} (see diagnostics.golden_set.metric_for)"
            )
        return self


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

#: Primary subtags of languages written without spaces between words: scored by CER.
CER_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "my", "km", "bo"})
#: Chinese (Mandarin, Cantonese): also folded Traditional -> Simplified before CER.
_CHINESE = frozenset({"zh", "yue"})
#: OpenCC configuration of the fold. ``tw2s`` converts character by character (no phrase rewriting:
#: ``t2sp``/``tw2sp`` would turn 軟體 into 软件, a different word, and hide a real substitution) and
#: first folds Taiwan variant forms (看著 -> 看着, 著名 stays), which is the script whisper tends
#: to answer Mandarin in; hk2s differs only on a few Hong Kong variants.
OPENCC_CONFIG = "tw2s"
_SUBTAG = re.compile(r"[-_]")


def _primary(language: str) -> str:
    return _SUBTAG.split(language.strip(), maxsplit=1)[0].lower()


def metric_for(language: str) -> Metric:
    """``"cer"`` for languages written without spaces between words, ``"wer"`` for the others."""
    return "cer" if _primary(language) in CER_LANGUAGES else "wer"


@functools.cache
def _opencc() -> Callable[[str], str]:
    import opencc

    convert: Callable[[str], str] = opencc.OpenCC(OPENCC_CONFIG).convert
    return convert


def to_simplified(text: str) -> str:
    """Traditional Chinese folded to Simplified by OpenCC (:data:`OPENCC_CONFIG`)."""
    return _opencc()(text)


@functools.cache
def _english_normalizer() -> Callable[[str], str]:
    from whisper.normalizers import EnglishTextNormalizer

    normalizer: Callable[[str], str] = EnglishTextNormalizer()
    return normalizer


def _replace(text: str, categories: str, replacement: str) -> str:
    """``text`` with every character of the Unicode major ``categories`` replaced."""
    return "".join(replacement if unicodedata.category(ch)[0] in categories else ch for ch in text)


def normalise(text: str, language: str) -> str:
    """Comparable form of a transcript (see the module docstring): English via whisper's
    EnglishTextNormalizer; CER languages without punctuation or whitespace, NFKC-folded,
    Chinese also Traditional -> Simplified; other languages case-folded, NFKC, punctuation and
    symbols as spaces, whitespace collapsed."""
    lang = _primary(language)
    if lang == "en":
        return _english_normalizer()(text)
    t = unicodedata.normalize("NFKC", text)
    if lang in CER_LANGUAGES:
        if lang in _CHINESE:
            t = to_simplified(t)
        return "".join(_replace(t, "PZ", "").split())
    return " ".join(_replace(t.casefold(), "PS", " ").split())


def error_rate(expected: str, hypothesis: str, language: str) -> float:
    """The language's own rule (:func:`metric_for`): CER or WER, on normalised text (jiwer)."""
    import jiwer

    ref, hyp = normalise(expected, language), normalise(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    if metric_for(language) == "cer":
        return float(jiwer.cer(ref, hyp))
    return float(jiwer.wer(ref, hyp))
