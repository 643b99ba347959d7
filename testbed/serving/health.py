"""Module health from model states and faults: ``GET /v1/health`` and the ``/metrics`` gauges."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import Response

from testbed.serving.config import MODEL_KEYS, MODULES

if TYPE_CHECKING:
    from testbed.serving.core import Service


def _model_status(model: dict[str, Any]) -> str:
    s = model["status"]
    return "ready" if s == "loaded" else ("degraded" if s == "loading" else "error")


def _router_status(status: dict[str, str]) -> tuple[str, str]:
    """The multimodal router is as healthy as the modules it dispatches to."""
    downstream = [status["embedding"], status["llm"], status["audio_processor"]]
    if all(s == "error" for s in downstream):
        return "error", "no module available"
    if any(s != "ready" for s in downstream):
        return "degraded", "a downstream module is not ready"
    return "ready", ""


def module_statuses(svc: Service) -> tuple[dict[str, str], dict[str, str]]:
    """Each module's status (ready | degraded | error) and a detail line saying why."""
    models = svc.model_states()
    status: dict[str, str] = {}
    detail: dict[str, str] = {}
    for module in ("embedding", "llm"):
        keys = [k for k, (_, mods) in MODEL_KEYS.items() if module in mods]
        states = [_model_status(models[k]) for k in keys]
        status[module] = "error" if "error" in states else ("degraded" if "degraded" in states else "ready")
        bad = [
            f"{models[k]['name']}: {models[k]['error'] or models[k]['status']}"
            for k in keys
            if _model_status(models[k]) != "ready"
        ]
        detail[module] = "; ".join(bad)
    whisper = models["whisper"]
    w = _model_status(whisper)
    status["audio_processor"] = w
    detail["audio_processor"] = (
        "" if w == "ready" else f"{whisper['name']}: {whisper['error'] or whisper['status']}"
    )
    if w == "ready" and _model_status(models["minilm"]) != "ready":
        status["audio_processor"] = "degraded"
        detail["audio_processor"] = "intent model unavailable: keyword fallback"
    status["multimodal_router"], detail["multimodal_router"] = _router_status(status)
    rd = svc.faults.get("router_degraded")
    if rd is not None and status["multimodal_router"] == "ready":
        status["multimodal_router"] = "degraded"
        detail["multimodal_router"] = "route table stale: dispatch fallback in use"
    return {m: status[m] for m in MODULES}, {m: detail[m] for m in MODULES}


def health_report(svc: Service) -> dict[str, Any]:
    """The health report; also refreshes the module-status and model-loaded gauges."""
    statuses, details = module_statuses(svc)
    values = statuses.values()
    overall = "error" if "error" in values else ("degraded" if "degraded" in values else "ready")
    models = svc.model_states()
    svc.metrics.set_module_status(statuses)
    for st in models.values():
        for module in st["modules"]:
            svc.metrics.model_loaded.labels(svc.settings.version, module, st["name"]).set(
                1.0 if st["loaded"] else 0.0
            )
    return {
        "status": overall,
        "version": svc.settings.version,
        "modules": statuses,
        "module_details": details,
        "models": list(models.values()),
        "uptime_s": round(time.time() - svc.started, 3),
        "timestamp": svc.now(None),
    }


def health_routes(svc: Service) -> APIRouter:
    """``GET /v1/health`` and ``GET /metrics`` (Prometheus text)."""
    routes = APIRouter()

    @routes.get("/v1/health")
    async def health() -> dict[str, Any]:
        return health_report(svc)

    @routes.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        health_report(svc)  # refresh model/module gauges
        svc.metrics.refresh_gpu()
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return routes
