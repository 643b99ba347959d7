"""The client phase 2 talks to a target's version with: embeddings, transcriptions, router calls.

Every call returns a :class:`Call` with what came back and how: HTTP status, latency, the client's
send/receive wall-clock times and the server's own clock (``X-Server-Time`` / body ``timestamp``), so
the temporal check can compare streams. A refused connection, a timeout, a non-2xx answer or a body
that is not the documented JSON is a :class:`ServiceError` with the reason — checks turn it into a
finding or ``insufficient_evidence``, never a crash.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from diagnostics.runbooks.schemas import ServiceApi, Target

FloatArray = npt.NDArray[np.float64]


class ServiceError(RuntimeError):
    """A call failed: ``kind`` is timeout / unreachable / http / malformed."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status


@dataclass
class Call:
    body: dict[str, Any]
    status: int
    latency_ms: float
    sent_at: float  # client wall clock, unix seconds
    received_at: float
    server_time: float | None = None  # X-Server-Time header, else the body's timestamp

    @property
    def client_midpoint(self) -> float:
        return (self.sent_at + self.received_at) / 2


@dataclass
class Embeddings:
    vectors: FloatArray
    dim: int
    model: str | None
    calls: list[Call] = field(default_factory=list)


def _server_time(resp: httpx.Response, body: dict[str, Any]) -> float | None:
    for raw in (resp.headers.get("x-server-time"), body.get("timestamp")):
        try:
            if raw is not None:
                return float(raw)
        except (TypeError, ValueError):
            continue
    return None


class ServiceClient:
    """One version of one target (``stable`` or ``canary``)."""

    def __init__(self, target: Target, version: str, *, client: httpx.Client | None = None) -> None:
        if version not in target.versions:
            raise ValueError(f"target {target.name} has no version {version!r} (runbooks/targets.yaml)")
        self.target, self.version = target, version
        self.api: ServiceApi = target.api
        self.base = str(target.versions[version].base_url).rstrip("/")
        self._client = client or httpx.Client(timeout=self.api.timeout_s)
        self._owns = client is None

    def close(self) -> None:
        if self._owns:
            self._client.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, path: str, payload: dict[str, Any], timeout_s: float | None = None) -> Call:
        url = self.base + path
        sent = time.time()
        started = time.perf_counter()
        try:
            resp = self._client.post(url, json=payload, timeout=timeout_s or self.api.timeout_s)
        except httpx.TimeoutException as exc:
            raise ServiceError(
                "timeout",
                f"{url}: no answer within {timeout_s or self.api.timeout_s:g} s ({type(exc).__name__})",
            ) from None
        except httpx.HTTPError as exc:
            raise ServiceError("unreachable", f"{url}: {type(exc).__name__}: {exc}"[:300]) from None
        latency_ms = (time.perf_counter() - started) * 1000
        received = time.time()
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            detail = body.get("error") or body.get("detail") if isinstance(body, dict) else resp.text[:200]
            raise ServiceError(
                "http", f"{url}: HTTP {resp.status_code}: {str(detail)[:200]}", resp.status_code
            )
        if not isinstance(body, dict):
            raise ServiceError(
                "malformed", f"{url}: HTTP {resp.status_code} but the body is not a JSON object"
            )
        return Call(body, resp.status_code, latency_ms, sent, received, _server_time(resp, body))

    def _embed(self, path: str, key: str, items: Sequence[str]) -> Embeddings:
        vectors: list[list[float]] = []
        calls: list[Call] = []
        dim: int | None = None
        model: str | None = None
        for i in range(0, len(items), self.api.batch_size):
            call = self.post(path, {key: list(items[i : i + self.api.batch_size])})
            calls.append(call)
            emb = call.body.get("embeddings")
            if not isinstance(emb, list) or len(emb) != len(items[i : i + self.api.batch_size]):
                raise ServiceError(
                    "malformed", f"{self.base}{path}: 'embeddings' missing or of the wrong length"
                )
            got = {len(v) for v in emb if isinstance(v, list)}
            if len(got) != 1:
                raise ServiceError(
                    "malformed", f"{self.base}{path}: embeddings of mixed or no length {sorted(got)}"
                )
            this = got.pop()
            if dim is not None and this != dim:
                raise ServiceError(
                    "malformed", f"{self.base}{path}: batches returned {dim}-d and {this}-d vectors"
                )
            dim, model = this, call.body.get("model") or model
            vectors.extend(emb)
        arr = np.asarray(vectors, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ServiceError("malformed", f"{self.base}{path}: non-finite values in the embeddings")
        return Embeddings(arr, dim or 0, model, calls)

    def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        return self._embed(self.api.text_embeddings, "texts", texts)

    def embed_images(self, images: Sequence[bytes]) -> Embeddings:
        return self._embed(
            self.api.image_embeddings, "images", [base64.b64encode(b).decode("ascii") for b in images]
        )

    def transcribe(self, audio: Path, language: str | None = None, timeout_s: float | None = None) -> Call:
        payload: dict[str, Any] = {"audio_b64": base64.b64encode(audio.read_bytes()).decode("ascii")}
        if language:
            payload["language"] = language
        call = self.post(self.api.transcriptions, payload, timeout_s)
        if not isinstance(call.body.get("text"), str):
            raise ServiceError("malformed", f"{self.base}{self.api.transcriptions}: no 'text' in the answer")
        return call

    def router(self, payload: dict[str, Any]) -> Call:
        return self.post(self.api.router, payload)

    def chat(self, message: str) -> Call:
        call = self.post(self.api.chat, {"message": message})
        if not isinstance(call.body.get("answer"), str):
            raise ServiceError("malformed", f"{self.base}{self.api.chat}: no 'answer' in the reply")
        return call
