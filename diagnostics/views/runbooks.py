"""The Markdown runbooks the findings point to: their names, and one rendered as safe HTML."""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt

from diagnostics.views.artifacts import ArtifactNotFound, artifact_file

RUNBOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,120}\.md$")


class RunbookNotFound(LookupError):
    pass


_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def runbook_names(runbooks_dir: Path) -> list[str]:
    try:
        return sorted(
            p.name for p in runbooks_dir.glob("*.md") if p.is_file() and RUNBOOK_NAME.fullmatch(p.name)
        )
    except OSError:
        return []


def render_runbook(runbooks_dir: Path, name: str) -> str:
    """A Markdown runbook of ``runbooks_dir`` as HTML. Raw HTML in the Markdown is shown as text, and
    markdown-it refuses ``javascript:``-style link targets; RunbookNotFound for any other name."""
    if not RUNBOOK_NAME.fullmatch(name):
        raise RunbookNotFound(f"{name[:80]!r} is not a runbook name (letters, digits, _ and -, ending .md)")
    try:
        path = artifact_file(runbooks_dir, name)
    except ArtifactNotFound:
        raise RunbookNotFound(f"no runbook {name} in {runbooks_dir.name}/") from None
    return str(_MARKDOWN.render(path.read_text(encoding="utf-8", errors="replace")))
