"""The multimodal_router module: ``POST /v1/router`` plans and runs a mixed text/image/audio request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from testbed.logs import fields
from testbed.serving.payloads import RouterBody, ServiceError, decode_b64, decode_image

if TYPE_CHECKING:
    from testbed.serving.core import Service


class MultimodalRouter:
    """Dispatches a request through the modules its inputs need (router_degraded misroutes it)."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

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
        svc = self.svc
        channel = "router"
        inputs = [
            k for k, v in (("text", body.text), ("image", body.image_b64), ("audio", body.audio_b64)) if v
        ]
        if not inputs:
            raise ServiceError(400, "router request needs at least one of text, image_b64, audio_b64")
        route = self.plan(inputs)
        rd = svc.faults.get("router_degraded")
        if rd is not None and svc.rng.random() < rd.magnitude:
            route = self.misroute(route)
        request.state.route = "->".join(route)
        svc.logger.info(
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
            started = svc.now(channel)
            if module == "audio_processor":
                assert body.audio_b64 is not None
                tr = await svc.audio.transcribe(decode_b64(body.audio_b64, "audio"), body.language, channel)
                results["transcript"] = tr
                if not body.text:
                    query_text = tr["text"]
            elif module == "embedding":
                await self._embed(image, query_text, results)
            elif module == "llm":
                results["chat"] = await svc.chat.answer(query_text, channel)
            stages.append({"module": module, "started_at": started, "ended_at": svc.now(channel)})
        return {"inputs": inputs, "route": route, "results": results, "stages": stages}

    async def _embed(self, image: Any, query_text: str, results: dict[str, Any]) -> None:
        """The embedding stage: image-text similarity when there is an image, else a text embedding."""
        svc, channel = self.svc, "router"
        if image is None:
            txt = await svc.embeddings.clip_text([query_text or " "], channel)
            results["text_embedding_dim"] = int(txt.shape[-1])
            return
        img = await svc.embeddings.clip_images([image], channel)
        results["image_embedding_dim"] = int(img.shape[-1])
        if not query_text:
            return
        txt = await svc.embeddings.clip_text([query_text], channel)
        if txt.shape[-1] != img.shape[-1]:
            svc.logger.error(
                "embedding dimension mismatch: cannot compare image (%d-d) and text (%d-d) embeddings",
                img.shape[-1],
                txt.shape[-1],
            )
            raise ServiceError(
                500, f"embedding dimension mismatch: image {img.shape[-1]} vs text {txt.shape[-1]}"
            )
        results["similarity"] = round(float(img[0] @ txt[0]), 4)
        results["query_text"] = query_text


def multimodal_routes(svc: Service) -> APIRouter:
    """``POST /v1/router``."""
    routes = APIRouter()

    @routes.post("/v1/router")
    async def router(body: RouterBody, request: Request) -> dict[str, Any]:
        return svc.stamp("router", await svc.multimodal.route(body, request))

    return routes
