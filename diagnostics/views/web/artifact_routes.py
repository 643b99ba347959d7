"""An incident's stored files: its HTML report and its audit bundles (listed, archived, one by one)."""

# No ``from __future__ import annotations``: FastAPI reads the routes' ``Depends(caller)`` annotations,
# which name the router's own dependency (a local), so they must be evaluated where they are written.

import json
from typing import Annotated
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from diagnostics.views.artifacts import REPORT, ArtifactNotFound, artifact_file
from diagnostics.views.bundles import (
    AUDIT_DIR,
    BUNDLES_DIR,
    bundle_archive,
    bundle_folder,
    bundle_listing,
    iter_chunks,
)
from diagnostics.views.web.access import Caller, CallerDependency
from diagnostics.views.web.site import Site, security_headers


def artifact_router(site: Site, caller: CallerDependency) -> APIRouter:
    """``/incidents/{run_id}/report`` and ``/incidents/{run_id}/bundles/{stamp}[.tar.gz|/files/...]``."""
    router = APIRouter(dependencies=[Depends(caller)])  # every route: the caller is checked first
    Who = Annotated[Caller, Depends(caller)]

    @router.get("/incidents/{run_id}/report")
    async def report(request: Request, run_id: str, who: Who) -> Response:
        try:
            path = artifact_file(site.config.artifact_root(), run_id, *REPORT)
        except ArtifactNotFound:
            return site.not_found(request, who, f"no report for {run_id!r} yet (phase 3 writes it)")
        download = request.query_params.get("download") in ("1", "true")
        return FileResponse(
            path,
            media_type="text/html; charset=utf-8",
            headers=security_headers(sandbox=True),
            filename=f"{run_id}-report.html",
            content_disposition_type="attachment" if download else "inline",
        )

    # Before the bundle page: its ``{stamp}`` would match ``<stamp>.tar.gz`` as well.
    @router.get("/incidents/{run_id}/bundles/{stamp}.tar.gz")
    async def bundle_download(request: Request, run_id: str, stamp: str, who: Who) -> Response:
        try:
            folder = bundle_folder(site.config.artifact_root(), run_id, stamp)
        except ArtifactNotFound:
            return site.not_found(request, who, f"no audit bundle {stamp!r} for {run_id!r}")
        spooled = await anyio.to_thread.run_sync(bundle_archive, folder, f"{run_id}-{stamp}")
        return StreamingResponse(
            iter_chunks(spooled),
            media_type="application/gzip",
            headers={
                "Content-Disposition": f'attachment; filename="{quote(run_id)}-{quote(stamp)}.tar.gz"',
                "Cache-Control": "no-store",
            },
        )

    @router.get("/incidents/{run_id}/bundles/{stamp}")
    async def bundle(request: Request, run_id: str, stamp: str, who: Who) -> Response:
        try:
            folder = bundle_folder(site.config.artifact_root(), run_id, stamp)
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (ArtifactNotFound, OSError, ValueError):
            return site.not_found(request, who, f"no readable audit bundle {stamp!r} for {run_id!r}")
        files, omitted = bundle_listing(manifest)
        return site.page(
            request,
            "bundle.html",
            who,
            run_id=run_id,
            stamp=stamp,
            manifest=manifest,
            files=files,
            omitted=omitted,
            relative_path=f"{AUDIT_DIR}/{BUNDLES_DIR}/{run_id}/{stamp}",
        )

    @router.get("/incidents/{run_id}/bundles/{stamp}/files/{path:path}")
    async def bundle_file(request: Request, run_id: str, stamp: str, path: str, who: Who) -> Response:
        try:
            folder = bundle_folder(site.config.artifact_root(), run_id, stamp)
            found = artifact_file(folder, *path.split("/"))
        except ArtifactNotFound:
            return site.not_found(request, who, f"no file {path!r} in that bundle")
        media = "application/json" if found.suffix == ".json" else "text/plain; charset=utf-8"
        return FileResponse(found, media_type=media, headers=security_headers(sandbox=True))

    return router
