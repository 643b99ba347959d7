"""The incidents list and the incident page, and the same data as JSON under ``/api``."""

# No ``from __future__ import annotations``: FastAPI reads the routes' ``Depends(caller)`` annotations,
# which name the router's own dependency (a local), so they must be evaluated where they are written.

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from diagnostics.views.incidents import DAG_ID, parse_filter
from diagnostics.views.web.access import Caller, CallerDependency
from diagnostics.views.web.site import Site, ui_base

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
GRADES = ("L1", "L2", "L3", "L4", "ungraded")


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit: a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def incident_router(site: Site, caller: CallerDependency) -> APIRouter:
    """``/`` (to the list), ``/incidents``, ``/incidents/{run_id}``, ``/api/incidents[/{run_id}]``."""
    router = APIRouter(dependencies=[Depends(caller)])  # every route: the caller is checked first
    Who = Annotated[Caller, Depends(caller)]

    @router.get("/")
    async def index(request: Request) -> Response:
        return RedirectResponse(ui_base(request) + "/incidents", status_code=307)

    @router.get("/incidents")
    async def incidents(request: Request, who: Who) -> Response:
        try:
            filters, limit = parse_filter(request.query_params), _limit(request)
        except ValueError as exc:
            return site.bad_request(request, who, str(exc))
        data = await anyio.to_thread.run_sync(site.listing, filters, limit)
        grades = sorted(set(GRADES) | set(data.grades))
        return site.page(request, "incidents.html", who, data=data, grades=grades, limit=limit)

    @router.get("/incidents/{run_id}")
    async def incident(request: Request, run_id: str, who: Who) -> Response:
        detail = await anyio.to_thread.run_sync(site.detail, run_id)
        if detail is None:
            return site.not_found(request, who, f"no run {run_id!r} of {DAG_ID}")
        return site.page(request, "incident.html", who, d=detail)

    @router.get("/api/incidents")
    async def api_incidents(request: Request, who: Who) -> Response:
        try:
            filters, limit = parse_filter(request.query_params), _limit(request)
        except ValueError as exc:
            return site.bad_request(request, who, str(exc))
        data = await anyio.to_thread.run_sync(site.listing, filters, limit)
        return JSONResponse(data.model_dump(mode="json"), headers={"Cache-Control": "no-store"})

    @router.get("/api/incidents/{run_id}")
    async def api_incident(request: Request, run_id: str, who: Who) -> Response:
        detail = await anyio.to_thread.run_sync(site.detail, run_id)
        if detail is None:
            return site.not_found(request, who, f"no run {run_id!r} of {DAG_ID}")
        return JSONResponse(detail.model_dump(mode="json"), headers={"Cache-Control": "no-store"})

    return router
