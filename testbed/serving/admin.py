"""The admin API of the service (``/admin/faults``: list, set, clear faults) and its bearer-token check."""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from testbed import faults as F
from testbed.logs import fields
from testbed.serving.config import MODEL_FOR_CHANNEL

if TYPE_CHECKING:
    from testbed.serving.core import Service


def check_admin(request: Request, token: str | None) -> None:
    """Bearer-token check of the admin API: 503 when no token is configured, 401 when wrong."""
    if not token:
        raise HTTPException(503, "admin token not configured")
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise HTTPException(
            401, "invalid or missing admin bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def fault_catalogue() -> dict[str, Any]:
    """Every fault the admin API accepts, with its channels and magnitude range."""
    return {
        name: {
            "summary": s.summary,
            "channels": list(s.channels),
            "default_channel": s.default_channel or "all",
            "magnitude": s.magnitude_meaning,
            "default_magnitude": s.default_magnitude,
            "range": [s.magnitude_min, s.magnitude_max],
            "shows_in": s.shows_in,
        }
        for name, s in F.FAULTS.items()
    }


def _log_model_not_loaded(svc: Service, fault: F.ActiveFault) -> None:
    """model_not_loaded logs the load failure a real corrupted model file would have logged."""
    st = svc.model_states()[MODEL_FOR_CHANNEL[fault.channels[0]]]
    svc.logger.error(
        "failed to load model %s: %s",
        st["name"],
        st["error"],
        extra=fields(event="model_load", model=st["name"]),
    )


def admin_routes(svc: Service) -> APIRouter:
    """``GET``, ``POST`` and ``DELETE /admin/faults`` (bearer token)."""
    routes = APIRouter()
    settings = svc.settings

    def active() -> list[dict[str, Any]]:
        return [f.as_dict() for f in svc.faults.active()]

    @routes.get("/admin/faults")
    async def list_faults(request: Request) -> dict[str, Any]:
        check_admin(request, settings.admin_token)
        return {"active": active(), "available": fault_catalogue()}

    @routes.post("/admin/faults")
    async def set_fault(request: Request) -> JSONResponse:
        check_admin(request, settings.admin_token)
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None  # answered as an invalid fault below
        try:
            fault = svc.faults.activate(body)
        except F.FaultError as exc:
            return JSONResponse({"error": str(exc), "valid_faults": list(F.FAULT_NAMES)}, status_code=400)
        if settings.log_admin:
            svc.logger.info("admin: fault set %s", fault.as_dict(), extra=fields(event="admin"))
        if fault.name == "model_not_loaded":
            _log_model_not_loaded(svc, fault)
        return JSONResponse({"activated": fault.as_dict(), "active": active()})

    @routes.delete("/admin/faults")
    async def clear_faults(request: Request, fault: str | None = None) -> JSONResponse:
        check_admin(request, settings.admin_token)
        try:
            cleared = svc.faults.clear(fault)
        except F.FaultError as exc:
            return JSONResponse({"error": str(exc), "valid_faults": list(F.FAULT_NAMES)}, status_code=400)
        if settings.log_admin:
            svc.logger.info("admin: faults cleared %s", cleared, extra=fields(event="admin"))
        return JSONResponse({"cleared": cleared, "active": active()})

    return routes
