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
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

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


def replace_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` in one step: a temporary dot-file beside it (unique per writer), then
    a rename, so a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: Any) -> Path:
    return replace_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_result(root: Path, incident_id: str, phase: str, check: str, result: BaseModel) -> Path:
    """Store a check's full result; returns its path."""
    return write_json(result_path(root, incident_id, phase, check), result.model_dump(mode="json"))


def _read_object(path: Path, incident_id: str, phase: str, check: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"no result of {check} for {incident_id}/{phase} at {path}") from None
    except ValueError as exc:
        raise ArtifactError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: not a JSON object")
    return data


@overload
def read_result(root: Path, incident_id: str, phase: str, check: str) -> dict[str, Any]: ...
@overload
def read_result(root: Path, incident_id: str, phase: str, check: str, model: type[M]) -> M: ...
def read_result(
    root: Path, incident_id: str, phase: str, check: str, model: type[M] | None = None
) -> dict[str, Any] | M:
    """A stored result, as the model that wrote it (``model``), or as the raw JSON object when the
    caller must survive any shape (the report and the audit bundle show what is there). Missing,
    unreadable or not of the model's shape: :class:`ArtifactError` naming the file and the field."""
    path = result_path(root, incident_id, phase, check)
    data = _read_object(path, incident_id, phase, check)
    if model is None:
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ArtifactError(f"{path}: {field}: {first['msg']} (not a stored {model.__name__})") from None


def find_json(root: Path, incident_id: str, phase: str, check: str) -> dict[str, Any] | None:
    """A stored result as raw JSON, or None when it was never stored or cannot be read: missing
    evidence, which the caller (the decision, phase 3's summary) weighs as such."""
    try:
        return read_result(root, incident_id, phase, check)
    except ArtifactError:
        return None


def find_result(root: Path, incident_id: str, phase: str, check: str, model: type[M]) -> M | None:
    """Like :func:`read_result` with a model, but a result never stored is None (missing evidence,
    which the caller weighs as such); a malformed one still raises."""
    if not result_path(root, incident_id, phase, check).exists():
        return None
    return read_result(root, incident_id, phase, check, model)
