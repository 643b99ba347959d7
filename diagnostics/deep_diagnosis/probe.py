"""Sending the golden set through a version: the embeddings several checks read.

Kept in one place so every check asks the same questions the same way (the captions of the golden
images as texts, the images as PNG bytes, in the manifest's order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from diagnostics.deep_diagnosis.base import DeepContext
from diagnostics.deep_diagnosis.service import Embeddings

FloatArray = npt.NDArray[np.float64]


@dataclass
class GoldenEmbeddings:
    ids: list[str]
    captions: list[str]
    images: Embeddings
    texts: Embeddings


def golden_embeddings(ctx: DeepContext, version: str) -> GoldenEmbeddings:
    """Image and caption embeddings of every golden image from ``version`` (raises ServiceError)."""
    golden = ctx.golden()
    images = golden.images
    with ctx.client(version) as client:
        img = client.embed_images([i.file.read_bytes() for i in images])
        ctx.progress(f"{version}: image embeddings", len(images), len(images))
        txt = client.embed_texts([i.caption for i in images])
    return GoldenEmbeddings([i.id for i in images], [i.caption for i in images], img, txt)


def reference_embeddings(ctx: DeepContext) -> tuple[FloatArray, FloatArray]:
    """The reference CLIP's (image, caption) embeddings of the golden images."""
    golden = ctx.golden()
    enc = ctx.encoders()

    def compute() -> tuple[FloatArray, FloatArray]:
        return (
            enc.encode_images([i.file.read_bytes() for i in golden.images]),
            enc.encode_texts([i.caption for i in golden.images]),
        )

    result: tuple[FloatArray, FloatArray] = ctx.memo("reference_clip_golden", compute)
    return result


def same_caption(captions: list[str]) -> npt.NDArray[np.bool_]:
    """relevant[i, j]: text j describes image i (golden captions repeat: equal text counts as a hit)."""
    arr = np.asarray(captions, dtype=object)
    return np.asarray(arr[:, None] == arr[None, :], dtype=bool)


def unit(x: FloatArray) -> FloatArray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.where(norms == 0, 1.0, norms), dtype=np.float64)
