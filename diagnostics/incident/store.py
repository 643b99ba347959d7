"""The artifact root: every check's full result as JSON at ``<root>/<incident id>/<phase>/<check>.json``.

One place does this I/O so the DAG, the CLI and the later report and audit bundle agree on paths.
Writes are atomic (a temp file renamed into place), so a reader never sees half a result, and a
retried task simply replaces its earlier result.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_SEGMENT = re.compile(r"^[A-Za-z0-9_.~:+-]{1,250}$")


class ArtifactError(ValueError):
    pass


def _segment(value: str, what: str) -> str:
    # Run ids and check names become directory names: nothing that could climb out of the root.
    if not _SEGMENT.match(value) or value in (".", ".."):
        raise ArtifactError(f"{what} {value!r} cannot be a path segment (allowed: letters, digits, _.~:+-)")
    return value


def result_path(root: Path, incident_id: str, phase: str, check: str) -> Path:
    return (
        root
        / _segment(incident_id, "incident id")
        / _segment(phase, "phase")
        / f"{_segment(check, 'check')}.json"
    )


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_result(root: Path, incident_id: str, phase: str, check: str, result: BaseModel) -> Path:
    """Store a check's full result; returns its path."""
    return write_json(result_path(root, incident_id, phase, check), result.model_dump(mode="json"))


def read_result(root: Path, incident_id: str, phase: str, check: str) -> dict[str, Any]:
    path = result_path(root, incident_id, phase, check)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"no result of {check} for {incident_id}/{phase} at {path}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: not a JSON object")
    return data
