"""Prometheus metrics of the testbed service and gateway, each app with its own registry.

Names and labels are documented in ``testbed/README.md``; keep both in step.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

# 5 ms ... 30 s; includes the SLA and gate thresholds (200 ms, 350 ms, 1.2 s, 6 s).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.35,
    0.5,
    0.75,
    1.0,
    1.2,
    1.5,
    2.0,
    3.0,
    4.0,
    6.0,
    8.0,
    10.0,
    15.0,
    20.0,
    30.0,
)

CHANNELS = ("text", "image", "audio", "router")
ERROR_CODES = ("500", "503", "504")

_TENANT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
OTHER_TENANT = "other"


class TenantLimiter:
    """Bounds the tenant label's cardinality: the first ``max_tenants`` well-formed tenant names
    seen keep their name; later ones, and malformed ones, are reported as ``other``."""

    def __init__(self, max_tenants: int = 20) -> None:
        self.max_tenants = max_tenants
        # "default" (requests without a tenant header) always keeps its name: its series exist from
        # the start (ServiceMetrics.init_series), so it holds one of the max_tenants slots.
        self._seen: set[str] = {"default"}
        self._lock = threading.Lock()

    def __call__(self, raw: str | None) -> str:
        tenant = (raw or "default").strip() or "default"
        if not _TENANT_RE.match(tenant):
            return OTHER_TENANT
        with self._lock:
            if tenant in self._seen:
                return tenant
            if len(self._seen) < self.max_tenants:
                self._seen.add(tenant)
                return tenant
        return OTHER_TENANT


class ServiceMetrics:
    """Metrics of one service process (one version)."""

    def __init__(self, version: str, gpu_memory: Callable[[], dict[str, tuple[float, float]]] | None = None):
        self.version = version
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.latency = Histogram(
            "testbed_request_duration_seconds",
            "Latency of served requests per channel",
            ["version", "channel", "tenant"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "testbed_requests",
            "Requests served, by channel and HTTP status code",
            ["version", "channel", "tenant", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "testbed_request_errors",
            "Requests answered with an HTTP status >= 400, by channel and code",
            ["version", "channel", "tenant", "code"],
            registry=self.registry,
        )
        self.inflight = Gauge(
            "testbed_inflight_requests",
            "Requests being served now",
            ["version", "channel"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "testbed_model_loaded",
            "1 if the model is loaded and its checksum matches, else 0",
            ["version", "module", "model"],
            registry=self.registry,
        )
        self.module_status = Gauge(
            "testbed_module_status",
            "Health of each module: 1 for the current status, 0 for the others",
            ["version", "module", "status"],
            registry=self.registry,
        )
        self.model_inference = Histogram(
            "testbed_model_inference_seconds",
            "Time spent in model inference (excludes queueing for the model)",
            ["version", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_queue = Gauge(
            "testbed_model_queue_depth",
            "Calls waiting for or holding a model's concurrency slot",
            ["version", "model"],
            registry=self.registry,
        )
        self.gpu_memory: Gauge | None = None
        if gpu_memory is not None:
            self.gpu_memory = Gauge(
                "testbed_gpu_memory_bytes",
                "GPU memory of this process (torch.cuda), allocated and reserved",
                ["version", "device", "kind"],
                registry=self.registry,
            )
            self._gpu_source = gpu_memory
        self.init_series()

    def init_series(self, tenant: str = "default") -> None:
        """Create each channel's series at zero before the first request.

        Prometheus' ``increase()`` cannot count what a counter held at its first scrape, so a series
        born with the first request loses that request burst; pre-created series start from 0 and
        count every request. The error codes are the ones the service answers with.
        """
        for channel in CHANNELS:
            self.latency.labels(self.version, channel, tenant)
            for code in ("200", *ERROR_CODES):
                self.requests.labels(self.version, channel, tenant, code)
            for code in ERROR_CODES:
                self.errors.labels(self.version, channel, tenant, code)

    def observe(self, channel: str, tenant: str, code: int, seconds: float) -> None:
        self.latency.labels(self.version, channel, tenant).observe(seconds)
        self.requests.labels(self.version, channel, tenant, str(code)).inc()
        if code >= 400:
            self.errors.labels(self.version, channel, tenant, str(code)).inc()

    def set_module_status(self, statuses: dict[str, str]) -> None:
        for module, status in statuses.items():
            for candidate in ("ready", "degraded", "error"):
                self.module_status.labels(self.version, module, candidate).set(
                    1.0 if status == candidate else 0.0
                )

    def refresh_gpu(self) -> None:
        if self.gpu_memory is None:
            return
        for device, (allocated, reserved) in self._gpu_source().items():
            self.gpu_memory.labels(self.version, device, "allocated").set(allocated)
            self.gpu_memory.labels(self.version, device, "reserved").set(reserved)


def torch_gpu_memory() -> dict[str, tuple[float, float]]:
    """Allocated and reserved bytes per CUDA device (torch.cuda)."""
    import torch

    out: dict[str, tuple[float, float]] = {}
    for i in range(torch.cuda.device_count()):
        out[f"cuda:{i}"] = (float(torch.cuda.memory_allocated(i)), float(torch.cuda.memory_reserved(i)))
    return out


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "testbed_gateway_requests",
            "Requests proxied, by upstream version, channel and HTTP status code",
            ["version", "channel", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "testbed_gateway_request_duration_seconds",
            "End-to-end latency through the gateway, by upstream version and channel",
            ["version", "channel"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "testbed_gateway_upstream_errors",
            "Upstream connection failures and timeouts, by version and kind",
            ["version", "kind"],
            registry=self.registry,
        )
        self.canary_weight = Gauge(
            "testbed_gateway_canary_weight",
            "Share of traffic (percent) the routing strategy sends to the canary",
            registry=self.registry,
        )
        self.strategy = Gauge(
            "testbed_gateway_strategy",
            "1 for the active routing strategy",
            ["strategy"],
            registry=self.registry,
        )
        self.routing_changes = Counter(
            "testbed_gateway_routing_changes",
            "Changes of canary weight or strategy through the admin API",
            registry=self.registry,
        )
        self.upstream_up = Gauge(
            "testbed_gateway_upstream_up",
            "1 if the upstream answered its last health check, else 0",
            ["version"],
            registry=self.registry,
        )
        self.sessions = Gauge(
            "testbed_gateway_sticky_sessions",
            "Sessions pinned to a version by affinity",
            ["version"],
            registry=self.registry,
        )
