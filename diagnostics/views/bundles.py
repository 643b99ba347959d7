"""An incident's audit bundles under the artifact root: the list, one bundle's files, its archive."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diagnostics.views.artifacts import artifact_file, names_a_folder
from diagnostics.views.models import BundleRef
from diagnostics.views.values import as_str

AUDIT_DIR = "audit"
BUNDLES_DIR = "bundles"


def bundles_of(root: Path, run_id: str) -> list[BundleRef]:
    """The incident's audit bundles (``<root>/audit/bundles/<run id>/<stamp>/``), newest first."""
    if not names_a_folder(run_id):
        return []
    folder = root / AUDIT_DIR / BUNDLES_DIR / run_id
    try:
        stamps = sorted(
            (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True
        )
    except OSError:
        return []
    out = []
    for path in stamps:
        manifest: dict[str, Any] = {}
        seal: dict[str, Any] = {}
        try:
            loaded = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            manifest = loaded if isinstance(loaded, dict) else {}
            loaded = json.loads((path / "seal.json").read_text(encoding="utf-8"))
            seal = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            pass
        files = manifest.get("files")
        out.append(
            BundleRef(
                stamp=path.name,
                created_at=as_str(manifest.get("created_at")),
                files=len(files) if isinstance(files, dict) else None,
                bundle_digest=as_str(seal.get("bundle_digest")),
                relative_path=f"{AUDIT_DIR}/{BUNDLES_DIR}/{run_id}/{path.name}",
            )
        )
    return out


def bundle_folder(root: Path, run_id: str, stamp: str) -> Path:
    """The bundle's folder; ArtifactNotFound for any bad or missing part (it must have a manifest)."""
    manifest = artifact_file(root, AUDIT_DIR, BUNDLES_DIR, run_id, stamp, "manifest.json")
    return manifest.parent


def bundle_listing(manifest: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the bundle's files as its manifest lists them, then the manifest and seal; what it omitted)."""
    listed = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    files = [
        {"path": p, "size": e.get("size"), "sha256": e.get("sha256")}
        for p, e in sorted(listed.items())
        if isinstance(e, dict)
    ]
    files += [{"path": n, "size": None, "sha256": None} for n in ("manifest.json", "seal.json")]
    omitted = [o for o in manifest.get("omitted") or [] if isinstance(o, dict)]
    return files, omitted


def bundle_archive(folder: Path, prefix: str) -> Any:
    """The bundle's regular files (no links) as a gzipped tar in a spooled temp file, rewound."""
    spooled = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - returned open
    with tarfile.open(fileobj=spooled, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            tar.add(path, arcname=f"{prefix}/{path.relative_to(folder).as_posix()}", recursive=False)
    spooled.seek(0)
    return spooled


def iter_chunks(fileobj: io.IOBase, size: int = 64 * 1024) -> Iterator[bytes]:
    """The file's bytes in chunks, closing it at the end (or when the response stops early)."""
    try:
        while chunk := fileobj.read(size):
            yield chunk
    finally:
        fileobj.close()
