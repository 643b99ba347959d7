"""Writes real testbed log lines: testbed.logs' own JSON formatter and trace context, with the exact
messages testbed/serving/ and testbed/gateway_http.py log for each fault (see testbed/README.md)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from testbed.logs import channel_var, fields, parent_span_var, setup_logging, span_id_var, trace_id_var

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
_ids = itertools.count(1)

ROUTES = {
    "/v1/embeddings/text": ("text", "embedding"),
    "/v1/chat": ("text", "llm"),
    "/v1/embeddings/image": ("image", "embedding"),
    "/v1/audio/transcriptions": ("audio", "audio_processor"),
    "/v1/router": ("router", "multimodal_router"),
}


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now.timestamp()

    def advance(self, ms: float) -> None:
        self.now += timedelta(milliseconds=ms)


class Writer:
    """One testbed process (stable, canary or gateway) writing to its own JSON-lines file."""

    def __init__(self, path: Path, version: str, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self.logger = setup_logging(
            f"t24-test-{version}-{next(_ids)}", version, path, stdout=False, clock=clock
        )

    def log(self, level: int, msg: str, *args: Any, **extra: Any) -> None:
        self.logger.log(level, msg, *args, extra=fields(**extra) if extra else None)

    def close(self) -> None:
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)


@contextmanager
def traced(
    trace_id: str, span_id: str, parent: str | None = None, channel: str | None = None
) -> Iterator[None]:
    tokens = [
        (trace_id_var, trace_id_var.set(trace_id)),
        (span_id_var, span_id_var.set(span_id)),
        (parent_span_var, parent_span_var.set(parent)),
        (channel_var, channel_var.set(channel)),
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class Testbed:
    """stable, canary and gateway writers sharing a clock; ``request`` logs one proxied request."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, start: datetime = T0) -> None:
        self.clock = Clock(start)
        self.folder = folder
        self.w = {
            v: Writer(folder / f"testbed-{v}.jsonl", v, self.clock) for v in ("stable", "canary", "gateway")
        }
        self.n = 0

    def close(self) -> None:
        for w in self.w.values():
            w.close()

    def request(
        self,
        version: str,
        path: str,
        *,
        status: int = 200,
        latency_ms: float = 40.0,
        errors: tuple[tuple[str, dict[str, Any]], ...] = (),
        route: str | None = None,
        inputs: str | None = None,
        leak: str | None = None,
        slow_threshold_ms: float | None = None,
    ) -> str:
        """Log what service ``version`` and the gateway write for one request; returns its trace id."""
        self.n += 1
        trace_id = f"{self.n:032x}"
        gw_span, svc_span = f"{self.n:015x}a", f"{self.n:015x}b"
        channel, module = ROUTES[path]
        svc = self.w[version]
        with traced(trace_id, svc_span, gw_span, channel):
            if route is not None:
                svc.log(
                    logging.INFO,
                    "routed request: inputs=%s route=%s",
                    inputs,
                    route,
                    route=route,
                    inputs=inputs,
                )
            self.clock.advance(latency_ms / 2)
            for message, error_fields in errors:
                svc.log(logging.ERROR, message, **error_fields)
            self.clock.advance(latency_ms / 2)
            extra: dict[str, Any] = {
                "method": "POST",
                "path": path,
                "status": status,
                "latency_ms": latency_ms,
                "module": module,
                "user_id": f"user-{self.n % 7}",
            }
            if route is not None:
                extra["route"] = route
            msg = "request completed" if status < 400 else f"request failed: HTTP {status}"
            if leak:
                msg += f" caller profile: {leak}"
            level = logging.ERROR if status >= 500 else (logging.WARNING if status >= 400 else logging.INFO)
            svc.log(level, msg, **extra)
            if slow_threshold_ms is not None and latency_ms > slow_threshold_ms:
                svc.log(
                    logging.WARNING,
                    "slow request: %.0f ms on %s (threshold %.0f ms)",
                    latency_ms,
                    channel,
                    slow_threshold_ms,
                    latency_ms=latency_ms,
                    path=path,
                )
        self.clock.advance(1.5)
        with traced(trace_id, gw_span, None, None):
            self.w["gateway"].log(
                logging.ERROR if status >= 500 else logging.INFO,
                "proxied %s %s -> %s HTTP %d in %.1f ms",
                "POST",
                path,
                version,
                status,
                latency_ms + 1.5,
                upstream=version,
                status=status,
                latency_ms=latency_ms + 1.5,
                route_reason="weight",
                user_id=f"user-{self.n % 7}",
                tenant=None,
            )
        self.clock.advance(500)
        return trace_id

    def healthy_traffic(self, n: int = 10) -> None:
        paths = list(ROUTES)
        for i in range(n):
            version = "canary" if i % 4 == 0 else "stable"
            path = paths[i % len(paths)]
            if path == "/v1/router":
                self.request(version, path, route="llm", inputs="text")
            else:
                self.request(version, path)


# Exact fault messages (testbed/serving/).
DIM_MISMATCH_ENCODER = (
    "embedding dimension mismatch: image encoder returned 512-d vectors but the text encoder returns "
    "128-d (router embedding_dim=128)"
)
DIM_MISMATCH_ROUTER = "embedding dimension mismatch: cannot compare image (512-d) and text (128-d) embeddings"
AUDIO_TIMEOUT = (
    "ffmpeg subprocess timeout after 2.0 s (pid 4242) while decoding audio (audio.timeout_sec=2.0); "
    "decoder killed"
)
CUDA_OOM = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total "
    "capacity; 77.80 GiB already allocated; 612.00 MiB free; 78.02 GiB reserved in total "
    "by PyTorch) while running whisper-base"
)
CHECKSUM = "checksum mismatch (expected " + "a" * 64 + ", got " + "b" * 64 + ")"
MODEL_NOT_LOADED = f"model not loaded: clip-shapes ({CHECKSUM})"
ERROR_BURST = (
    "HTTP 500 internal server error in {module}: worker raised RuntimeError('upstream error: "
    "connection reset by peer')"
)
