"""``Service``: the state of one service process and what every channel shares (clocks, model calls)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable
from typing import Any

from anyio import to_thread

from testbed import faults as F
from testbed.logs import fields, run_in_context, setup_logging
from testbed.metrics import ServiceMetrics, TenantLimiter
from testbed.serving.audio import Transcriber
from testbed.serving.backends import Backends, RealBackends
from testbed.serving.chat import FaqChat
from testbed.serving.config import CHANNELS, MODEL_FOR_CHANNEL, MODEL_KEYS, ServiceSettings
from testbed.serving.embeddings import Embeddings
from testbed.serving.multimodal import MultimodalRouter
from testbed.serving.payloads import ServiceError


class Service:
    """State of one service process: models, faults, metrics, logger, and the per-channel handlers."""

    def __init__(self, settings: ServiceSettings, backends: Backends | None = None) -> None:
        self.settings = settings
        self.faults = F.FaultRegistry()
        self.logger = setup_logging(
            f"testbed.service.{settings.version}.{id(self)}",
            settings.version,
            settings.log_file,
            stdout=settings.log_stdout,
            clock=self.log_clock,
        )
        self.real_backends: RealBackends | None = None
        if backends is None:
            self.real_backends = RealBackends(settings.device, self.logger)
            backends = self.real_backends
        self.backends: Backends = backends
        gpu = None
        try:
            import torch

            if torch.cuda.is_available():
                from testbed.metrics import torch_gpu_memory

                gpu = torch_gpu_memory
        except Exception:  # torch missing or broken: no GPU gauge
            gpu = None
        self.metrics = ServiceMetrics(settings.version, gpu)
        self.tenants = TenantLimiter(settings.max_tenants)
        self.sems = {k: asyncio.Semaphore(settings.model_concurrency) for k in MODEL_KEYS}
        self.ffmpeg_sem = asyncio.Semaphore(2)
        self.started = time.time()
        self.rng = random.Random()  # noqa: S311 - fault sampling, not security
        self.pii_rng = random.Random()  # noqa: S311 - fake PII
        # the channel handlers; later ones call earlier ones (chat and router embed, router transcribes)
        self.embeddings = Embeddings(self)
        self.chat = FaqChat(self)
        self.audio = Transcriber(self)
        self.multimodal = MultimodalRouter(self)

    # ---- clocks (the clock_skew fault offsets them)

    def skew_s(self, channel: str | None) -> float:
        fault = self.faults.get("clock_skew")
        if fault is None:
            return 0.0
        if channel is not None and channel not in fault.channels:
            return 0.0
        if channel is None and len(fault.channels) < len(CHANNELS):
            return 0.0
        return fault.magnitude / 1000.0

    def now(self, channel: str | None) -> float:
        return time.time() + self.skew_s(channel)

    def log_clock(self) -> float:
        from testbed.logs import channel_var

        return self.now(channel_var.get())

    # ---- responses

    def stamp(self, channel: str, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the service version and the (possibly skewed) server time."""
        body.setdefault("version", self.settings.version)
        body["timestamp"] = round(self.now(channel), 3)
        return body

    def check_batch(self, n: int) -> None:
        if n > self.settings.max_batch:
            raise ServiceError(400, f"batch too large: {n} > {self.settings.max_batch}")

    # ---- models

    def model_states(self) -> dict[str, dict[str, Any]]:
        """Model states as health reports them, with the model_not_loaded fault applied."""
        out = {k: s.as_dict() for k, s in self.backends.states().items()}
        fault = self.faults.get("model_not_loaded")
        if fault is not None:
            key = MODEL_FOR_CHANNEL[fault.channels[0]]
            st = out.get(key)
            if st is not None:
                real = st["sha256"] or st["expected_sha256"] or ""
                bad = hashlib.sha256(f"corrupted:{real}".encode()).hexdigest()
                st.update(
                    status="error",
                    loaded=False,
                    sha256=bad,
                    checksum_ok=False,
                    error=f"checksum mismatch (expected {st['expected_sha256'] or real}, got {bad})",
                )
        return out

    def check_available(self, key: str) -> None:
        """503 if model ``key`` is not usable (still loading, failed, or the model_not_loaded fault)."""
        nl = self.faults.get("model_not_loaded")
        if nl is not None and MODEL_FOR_CHANNEL[nl.channels[0]] == key:
            st = self.model_states()[key]
            self.logger.error(
                "model not loaded: %s (%s)", st["name"], st["error"], extra=fields(model=st["name"])
            )
            raise ServiceError(503, f"model not loaded: {st['name']} ({st['error']})")
        state = self.backends.states()[key]
        if state.status != "loaded":
            if state.status == "loading":
                raise ServiceError(503, f"model loading: {state.name}")
            self.logger.error(
                "model not loaded: %s (%s)", state.name, state.error, extra=fields(model=state.name)
            )
            raise ServiceError(503, f"model not loaded: {state.name} ({state.error})")

    async def call_model(
        self, key: str, channel: str, sub_channel: str, fn: Callable[..., Any], *args: Any
    ) -> Any:
        """Run ``fn(*args)`` on model ``key`` in a worker thread, bounded by the model's semaphore.

        Applies the model-level faults: model_not_loaded (503) and cuda_oom (500).
        """
        name = MODEL_KEYS[key][0]
        self.check_available(key)
        oom = self.faults.get("cuda_oom")
        if (
            oom is not None
            and (channel in oom.channels or sub_channel in oom.channels)
            and self.rng.random() < oom.magnitude
        ):
            gib = self.rng.choice([1.5, 2.0, 3.25, 4.0])
            self.logger.error(
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate %.2f GiB (GPU 0; 79.11 GiB "
                "total capacity; 77.80 GiB already allocated; 612.00 MiB free; 78.02 GiB reserved in total "
                "by PyTorch) while running %s",
                gib,
                name,
                extra=fields(model=name, module=MODEL_KEYS[key][1][0]),  # the module that runs the model
            )
            raise ServiceError(500, f"CUDA out of memory while running {name}")
        sem = self.sems[key]
        gauge = self.metrics.model_queue.labels(self.settings.version, name)
        gauge.inc()
        try:
            async with sem:
                t0 = time.perf_counter()
                result = await to_thread.run_sync(run_in_context(lambda: fn(*args)))
                self.metrics.model_inference.labels(self.settings.version, name).observe(
                    time.perf_counter() - t0
                )
                return result
        finally:
            gauge.dec()
