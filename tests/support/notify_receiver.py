"""A notification receiver on loopback (a real HTTP server in a thread, tests/support/http.py): each
POST to its path is answered with the next scripted status (then ``ok``), and recorded."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from tests.support.http import Canned, CannedServer, Recorded, canned_server


class Receiver:
    def __init__(self, path: str, ok: int = 200, retry_after: str | None = None) -> None:
        self.path = path
        self.ok = ok
        self.retry_after = retry_after  # sent with each scripted 429
        self.script: list[int] = []
        self.lock = threading.Lock()
        self.server: CannedServer | None = None

    def answer(self, req: Recorded) -> Canned:
        with self.lock:
            status = self.script.pop(0) if self.script else self.ok
        if status == 429 and self.retry_after is not None:
            return Canned(status, "slow down", {"Retry-After": self.retry_after})
        return Canned(status, {"status": "success" if status < 300 else "error"})

    @property
    def base(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def hostport(self) -> str:
        return self.base.split("://", 1)[1]

    @property
    def url(self) -> str:
        return self.base + self.path

    @property
    def requests(self) -> list[Recorded]:
        assert self.server is not None
        return self.server.requests

    @property
    def bodies(self) -> list[Any]:
        return [json.loads(r.body) for r in self.requests]

    @property
    def raw(self) -> str:
        return b"".join(r.body for r in self.requests).decode("utf-8", "replace")


@contextlib.contextmanager
def receiver(path: str, ok: int = 200, retry_after: str | None = None) -> Iterator[Receiver]:
    rec = Receiver(path, ok, retry_after)
    with canned_server({("POST", path): rec.answer}) as srv:
        rec.server = srv
        yield rec
