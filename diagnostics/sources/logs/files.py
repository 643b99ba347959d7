"""Log lines from JSON-lines files (the testbed's, or any service writing one JSON object a line)."""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

from diagnostics.sources.logs.records import (
    LogQuery,
    LogRead,
    LogRecord,
    ReadStats,
    SourceUnavailable,
)

__all__ = ["FileLogSource"]


class FileLogSource:
    """Streams the files matching ``paths`` (globs; relative ones are taken from ``base_dir``).

    Files are read line by line, never whole; lines that are not JSON objects with a timestamp are
    skipped and counted as malformed. Reading stops at ``query.max_records`` matching lines, and says
    so (``truncated``). Files are read in name order, so lines are not globally time-ordered: the
    classification does not need them to be.
    """

    def __init__(self, paths: Sequence[str], base_dir: Path | str | None = None) -> None:
        if not paths:
            raise ValueError("FileLogSource needs at least one path or glob")
        self.paths = list(paths)
        self.base_dir = Path(base_dir) if base_dir is not None else None

    def describe(self) -> str:
        return "files " + ", ".join(self._patterns())

    def _patterns(self) -> list[str]:
        out = []
        for p in self.paths:
            path = Path(p).expanduser()
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            out.append(str(path))
        return out

    def files(self) -> list[Path]:
        found: set[str] = set()
        for pattern in self._patterns():
            found.update(m for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
        return [Path(f) for f in sorted(found)]

    def read(self, query: LogQuery) -> LogRead:
        files = self.files()
        if not files:
            raise SourceUnavailable(self.describe(), "no log files match " + ", ".join(self._patterns()))
        stats = ReadStats(source=self.describe(), inputs=[str(f) for f in files])
        return LogRead(stats=stats, records=self._iterate(files, query, stats))

    def _iterate(self, files: list[Path], query: LogQuery, stats: ReadStats) -> Iterator[LogRecord]:
        keep = query.matcher()
        for path in files:
            try:
                fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
            except OSError as exc:
                # A file rotated away between glob and open is not worth failing the check for.
                stats.inputs.remove(str(path))
                if not stats.inputs:
                    raise SourceUnavailable(stats.source, f"cannot open {path}: {exc.strerror}") from exc
                continue
            with fh:
                for raw in fh:
                    line = raw.strip()
                    if not line:
                        continue
                    record = stats.accept(partial(json.loads, line), keep, query.max_records)
                    if record is not None:
                        yield record
                    elif stats.truncated:
                        return
