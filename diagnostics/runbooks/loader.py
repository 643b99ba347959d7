"""Load runbook YAML into validated models, reporting errors as ``file:line: field: what is expected``.

Two passes over the same text: PyYAML's composer gives the line of every mapping key and sequence
item, the safe loader gives the data; a pydantic error's location is mapped back to the nearest line.
``${VAR}`` and ``${VAR:-default}`` in string values are replaced from the environment, so ports and
paths stay configurable without editing the runbooks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from diagnostics.envsubst import MissingVariable, expand

M = TypeVar("M", bound=BaseModel)

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class RunbookError(ValueError):
    """A runbook file is missing, unreadable, not YAML, or does not match its schema."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _line_map(node: yaml.Node, path: Loc = ()) -> dict[Loc, int]:
    """Map every path in the document to the 1-based line where its value (or key) starts."""
    lines: dict[Loc, int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines.update(_line_map(value_node, (*path, key)))
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_line_map(item, (*path, index)))
    return lines


def _line_for(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def _expand_env(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return expand(value, environ)
    if isinstance(value, dict):
        return {k: _expand_env(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, environ) for v in value]
    return value


def _field_name(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml_model(path: Path, model: type[M], environ: Mapping[str, str] | None = None) -> M:
    """Parse ``path`` and validate it as ``model``; raise :class:`RunbookError` naming file and line."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunbookError([Problem(path, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunbookError([Problem(path, None, "", f"cannot read: {exc}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise RunbookError([Problem(path, line, "", f"not valid YAML: {reason}")]) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise RunbookError([Problem(path, 1, "", f"expected a mapping at the top level, got {kind}")])
    lines = _line_map(node) if node is not None else {}
    try:
        data = _expand_env(data, environ)
    except MissingVariable as exc:
        raise RunbookError(
            [Problem(path, None, "", f"environment variable {exc.args[0]} is not set and has no default")]
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc: Loc = tuple(err["loc"])
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                # Point at the discriminating key (e.g. rollback.method), not at its parent.
                loc = (*loc, str(err.get("ctx", {}).get("discriminator", "")).strip("'\""))
            problems.append(Problem(path, _line_for(loc, lines), _field_name(loc), _explain(err)))
        raise RunbookError(problems) from None


def _explain(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; see the schema in diagnostics/runbooks/schemas.py)"
    if err["type"] == "missing":
        return "required field is missing"
    given = err.get("input")
    if given is not None and not isinstance(given, dict | list):
        return f"{msg} (got {given!r})"
    return msg
