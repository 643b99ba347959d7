"""The artifact root as the view reads it: a run's evidence folder, and files that cannot leave the root.

A missing or unreadable artifact is never an error here: the incident shows what exists and lists
what could not be read (``problems``), since an incident page that fails to open at 3 a.m. because
one JSON file is half-written helps nobody.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPORT = ("report", "report.html")  # the run's HTML report, under its folder

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_.~:+-]{1,250}$")


def names_a_folder(run_id: str) -> bool:
    """Whether ``run_id`` can name a folder under the artifact root (no separator, not ``.``/``..``)."""
    return bool(_SAFE_SEGMENT.fullmatch(run_id)) and run_id not in (".", "..")


class RunArtifacts:
    """One run's artifact folder (``<root>/<run id>/``); every read is guarded, its problems collected."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.problems: list[str] = []
        self.folder: Path | None = None
        if names_a_folder(run_id):
            self.folder = root / run_id
        else:
            self.problems.append(f"run id {run_id[:80]!r} cannot name an artifact folder: no evidence shown")

    def json(self, *parts: str) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        path = self.folder.joinpath(*parts)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self.problems.append(f"{'/'.join(parts)}: unreadable ({type(exc).__name__}: {str(exc)[:120]})")
            return None
        if not isinstance(data, dict):
            self.problems.append(f"{'/'.join(parts)}: not a JSON object")
            return None
        return data

    def names(self, phase: str) -> list[str]:
        if self.folder is None:
            return []
        try:
            return sorted(p.stem for p in (self.folder / phase).glob("*.json") if p.is_file())
        except OSError:
            return []

    def exists(self, *parts: str) -> bool:
        return self.folder is not None and self.folder.joinpath(*parts).is_file()

    def modified_at(self, *parts: str) -> datetime | None:
        """When the file was last written (UTC); None when it is not there."""
        if self.folder is None:
            return None
        try:
            return datetime.fromtimestamp(self.folder.joinpath(*parts).stat().st_mtime, UTC)
        except OSError:
            return None


class ArtifactNotFound(LookupError):
    """No such file under the artifact root (or a path that would leave it)."""


def artifact_file(base: Path, *parts: str) -> Path:
    """The regular file ``base/<parts...>``; ArtifactNotFound for anything else: a segment that is not a
    plain name (``..``, empty, hidden, with a slash), a symbolic link that leads out of ``base``, a
    folder, a missing file."""
    for part in parts:
        if (
            not part
            or part in (".", "..")
            or part.startswith(".")
            or "/" in part
            or "\\" in part
            or "\0" in part
        ):
            raise ArtifactNotFound(f"not a plain file name: {part[:80]!r}")
    try:
        root = base.resolve(strict=True)
        path = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        raise ArtifactNotFound("/".join(parts)) from None
    if not path.is_relative_to(root) or not path.is_file():
        raise ArtifactNotFound("/".join(parts))
    return path
