"""An exclusive file lock across the processes of one host (``flock``), for read-modify-write sections."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the ``with`` block, waiting for any other holder.

    The lock file and its folder are created when missing and left in place: removing it would let a
    waiter lock a file that a newcomer no longer sees. An ``OSError`` (a folder that cannot be
    created, a read-only file system) reaches the caller before the block runs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
