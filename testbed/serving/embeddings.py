"""The embedding module: CLIP text/image and MiniLM embeddings with their faults, and their routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter

from testbed import faults as F
from testbed.serving.config import MODEL_KEYS
from testbed.serving.payloads import ImagesBody, TextsBody, decode_image

if TYPE_CHECKING:
    from testbed.serving.core import Service


class Embeddings:
    """Model calls of the embedding module, with embedding_drift, image_text_misalignment and
    embedding_dim_mismatch applied to what the models return."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def _drift(self, emb: np.ndarray, channel: str, sub_channel: str, key: int) -> np.ndarray:
        d = self.svc.faults.get("embedding_drift")
        if d is not None and (sub_channel in d.channels or channel in d.channels):
            return F.drift(emb, F.drift_shift(d.elapsed_s(), d.magnitude), key=key)
        return emb

    async def clip_text(self, texts: list[str], channel: str) -> np.ndarray:
        emb = await self.svc.call_model("clip", channel, "text", self.svc.backends.encode_clip_text, texts)
        return self._drift(np.asarray(emb, np.float32), channel, "text", 3)

    async def clip_images(self, images: list[Any], channel: str) -> np.ndarray:
        svc = self.svc
        emb = np.asarray(
            await svc.call_model("clip", channel, "image", svc.backends.encode_clip_images, images),
            np.float32,
        )
        mis = svc.faults.get("image_text_misalignment")
        if mis is not None:
            emb = F.misalign(emb, mis.magnitude)
        emb = self._drift(emb, channel, "image", 4)
        dm = svc.faults.get("embedding_dim_mismatch")
        if dm is not None and int(dm.magnitude) != emb.shape[-1]:
            emb = F.project_dim(emb, int(dm.magnitude))
            svc.logger.error(
                "embedding dimension mismatch: image encoder returned %d-d vectors but the text encoder "
                "returns %d-d (router embedding_dim=%d)",
                emb.shape[-1],
                svc.backends.clip_dim,
                svc.backends.clip_dim,
            )
        return emb

    async def minilm(self, texts: list[str], channel: str, drift: bool = True) -> np.ndarray:
        emb = np.asarray(
            await self.svc.call_model("minilm", channel, "text", self.svc.backends.encode_minilm, texts),
            np.float32,
        )
        return self._drift(emb, channel, "text", 5) if drift else emb


def embedding_routes(svc: Service) -> APIRouter:
    """``POST /v1/embeddings/text`` (CLIP), ``/v1/embeddings/rag`` (MiniLM), ``/v1/embeddings/image``."""
    routes = APIRouter()

    @routes.post("/v1/embeddings/text")
    async def embed_text(body: TextsBody) -> dict[str, Any]:
        svc.check_batch(len(body.texts))
        emb = await svc.embeddings.clip_text(body.texts, "text")
        return svc.stamp(
            "text", {"model": MODEL_KEYS["clip"][0], "dim": int(emb.shape[-1]), "embeddings": emb.tolist()}
        )

    @routes.post("/v1/embeddings/rag")
    async def embed_rag(body: TextsBody) -> dict[str, Any]:
        svc.check_batch(len(body.texts))
        emb = await svc.embeddings.minilm(body.texts, "text")
        return svc.stamp(
            "text", {"model": MODEL_KEYS["minilm"][0], "dim": int(emb.shape[-1]), "embeddings": emb.tolist()}
        )

    @routes.post("/v1/embeddings/image")
    async def embed_image(body: ImagesBody) -> dict[str, Any]:
        svc.check_batch(len(body.images))
        images = [decode_image(b) for b in body.images]
        emb = await svc.embeddings.clip_images(images, "image")
        return svc.stamp(
            "image", {"model": MODEL_KEYS["clip"][0], "dim": int(emb.shape[-1]), "embeddings": emb.tolist()}
        )

    return routes
