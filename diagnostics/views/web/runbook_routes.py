"""The Markdown runbooks the findings link to, rendered: ``/runbooks`` and ``/runbooks/{name}``."""

# No ``from __future__ import annotations``: FastAPI reads the routes' ``Depends(caller)`` annotations,
# which name the router's own dependency (a local), so they must be evaluated where they are written.

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from diagnostics.views.runbooks import RunbookNotFound, render_runbook, runbook_names
from diagnostics.views.web.access import Caller, CallerDependency
from diagnostics.views.web.site import Site


def runbook_router(site: Site, caller: CallerDependency) -> APIRouter:
    router = APIRouter(dependencies=[Depends(caller)])  # every route: the caller is checked first
    Who = Annotated[Caller, Depends(caller)]

    @router.get("/runbooks")
    async def runbooks(request: Request, who: Who) -> Response:
        names = runbook_names(site.config.runbooks_dir())
        return site.page(request, "runbook.html", who, name=None, html=None, names=names)

    @router.get("/runbooks/{name}")
    async def runbook(request: Request, name: str, who: Who) -> Response:
        directory = site.config.runbooks_dir()
        try:
            html = render_runbook(directory, name)
        except RunbookNotFound as exc:
            return site.not_found(request, who, str(exc))
        return site.page(request, "runbook.html", who, name=name, html=html, names=runbook_names(directory))

    return router
