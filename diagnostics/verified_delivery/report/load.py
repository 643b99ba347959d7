"""Reading an incident's artifacts for the report: each file is present, missing or malformed — never
an exception.

The report is written at the end of an incident whose phases may have failed, timed out or never
run, so every artifact is optional. :func:`read_artifact` returns an :class:`Artifact` that says
which of the three it is (a malformed file keeps the parser's message, so the report can name the
file and the fault), with its data **already PII-masked**: every string in it, dictionary keys
included, goes through :func:`diagnostics.pii.mask_pii` as it is read, so nothing downstream can
put an unmasked string into the report. Numbers that look like PII (a phone number stored as a JSON
number) become masked strings, as :func:`diagnostics.pii.mask_record` does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from diagnostics.pii import mask_pii

State = Literal["present", "missing", "malformed"]


def mask_tree(value: Any) -> Any:
    """A copy of a JSON-like value with every string (keys too) PII-masked; other values kept."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        text = str(value)
        masked = mask_pii(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {mask_pii(str(k)): mask_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_tree(v) for v in value]
    return mask_pii(str(value))


@dataclass(frozen=True)
class Artifact:
    """One artifact file as the report sees it. ``data`` is the masked JSON object when present."""

    rel: str
    state: State
    data: dict[str, Any]
    problem: str = ""
    mtime: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.state == "present"

    def note(self) -> str:
        """What the report says about a file it could not use (empty when it could)."""
        if self.state == "missing":
            return f"{self.rel} is missing"
        if self.state == "malformed":
            return f"{self.rel} is malformed: {self.problem}"
        return ""


def read_artifact(incident_dir: Path, rel: str) -> Artifact:
    """The artifact at ``incident_dir / rel`` (a JSON object), or why it cannot be used."""
    path = incident_dir / rel
    try:
        raw = path.read_bytes()
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    except FileNotFoundError:
        return Artifact(rel, "missing", {})
    except OSError as exc:  # a folder where a file should be, no permission, ...
        return Artifact(rel, "malformed", {}, problem=mask_pii(f"cannot be read ({exc.strerror or exc})"))
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Artifact(
            rel, "malformed", {}, problem=f"not UTF-8 text ({exc.reason} at byte {exc.start})", mtime=mtime
        )
    except json.JSONDecodeError as exc:
        return Artifact(
            rel,
            "malformed",
            {},
            problem=f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            mtime=mtime,
        )
    if not isinstance(data, dict):
        return Artifact(
            rel, "malformed", {}, problem=f"a JSON {type(data).__name__}, not an object", mtime=mtime
        )
    return Artifact(rel, "present", mask_tree(data), mtime=mtime)


def file_mtimes(incident_dir: Path, folder: str) -> list[datetime]:
    """Modification times of the JSON files directly in ``incident_dir / folder`` (none: empty)."""
    out: list[datetime] = []
    try:
        paths = sorted((incident_dir / folder).glob("*.json"))
    except OSError:
        return out
    for p in paths:
        try:
            out.append(datetime.fromtimestamp(p.stat().st_mtime, tz=UTC))
        except OSError:
            continue
    return out


# --- defensive accessors: a valid JSON file may still have an unexpected shape -------------------------


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_num(value: Any) -> float | None:
    """A finite JSON number as a float; None for anything else (booleans, strings, null, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def as_str(value: Any, default: str = "") -> str:
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)
