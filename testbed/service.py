"""The testbed's multimodal service (FastAPI): one process per version (stable / canary), same code.

Modules (the names health reports):

- ``embedding``: CLIP text and image embeddings (the project's small CLIP, ``testbed/clip``) and
  RAG text embeddings (all-MiniLM-L6-v2);
- ``llm``: ``POST /v1/chat`` — *not* a generative model: retrieval over a small set of canned
  customer-service answers by MiniLM cosine similarity (``testbed.serving.chat.FAQ``), with a
  fallback answer when nothing is similar enough;
- ``audio_processor``: Whisper base transcription (ffmpeg decode, word timestamps) + intent;
- ``multimodal_router``: ``POST /v1/router`` dispatches a mixed text/image/audio request.

Images travel as base64 PNG/JPEG inside JSON; audio as base64 inside JSON or as a multipart
upload (field ``file``). See ``testbed/README.md`` for routes, metrics, logs and faults.

Model inference runs in worker threads, at most ``model_concurrency`` calls per model at a time
(an asyncio semaphore per model), with torch limited to one thread per process by ``serve``.

This module wires the app; the parts live in ``testbed.serving``: ``config`` (settings, route and
model tables), ``backends`` (the models), ``payloads`` (request bodies, ``ServiceError``), ``core``
(``Service``: clocks, model calls), one module per channel (``embeddings``, ``chat``, ``audio``,
``multimodal``), ``health``, ``admin`` (faults API) and ``observe`` (per-request metrics and logs).
The names other code imports from here are re-exported below.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from testbed.logs import fields
from testbed.serving.admin import admin_routes, check_admin
from testbed.serving.audio import AudioTimeout, audio_routes, decode_audio
from testbed.serving.backends import Backends, ModelState, RealBackends
from testbed.serving.chat import FAQ, FAQ_FALLBACK, FAQ_MIN_SCORE, chat_routes
from testbed.serving.config import (
    ADMIN_TOKEN_ENV,
    CHANNELS,
    MODEL_FOR_CHANNEL,
    MODEL_KEYS,
    MODULES,
    ROUTES,
    STATUSES,
    ServiceSettings,
    default_log_file,
)
from testbed.serving.core import Service
from testbed.serving.embeddings import embedding_routes
from testbed.serving.health import health_routes
from testbed.serving.multimodal import multimodal_routes
from testbed.serving.observe import observe_requests
from testbed.serving.payloads import ServiceError, decode_b64, decode_image

__all__ = [
    "ADMIN_TOKEN_ENV",
    "CHANNELS",
    "FAQ",
    "FAQ_FALLBACK",
    "FAQ_MIN_SCORE",
    "MODEL_FOR_CHANNEL",
    "MODEL_KEYS",
    "MODULES",
    "ROUTES",
    "STATUSES",
    "AudioTimeout",
    "Backends",
    "ModelState",
    "RealBackends",
    "Service",
    "ServiceError",
    "ServiceSettings",
    "check_admin",
    "create_app",
    "decode_audio",
    "decode_b64",
    "decode_image",
    "default_log_file",
]


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
    observe_requests(app, svc)
    for routes in (
        health_routes(svc),
        embedding_routes(svc),
        chat_routes(svc),
        audio_routes(svc),
        multimodal_routes(svc),
        admin_routes(svc),
    ):
        app.include_router(routes)

    @app.get("/")
    async def root() -> PlainTextResponse:
        return PlainTextResponse(f"triage24 testbed service {settings.version}\n")

    return app
