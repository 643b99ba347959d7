"""A real HTTP server on loopback that answers canned responses: for clients of services we replay.

Each route maps ``(method, path)`` to a :class:`Canned` answer; requests are recorded so tests can
assert what a client sent. Runs in a thread; ``with canned_server(...) as srv`` always shuts it down.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Canned:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def payload(self) -> tuple[bytes, str]:
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return self.body, "application/octet-stream"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CannedServer:
    url: str
    requests: list[Recorded]


Route = Canned | Callable[[Recorded], Canned]


@contextlib.contextmanager
def canned_server(routes: dict[tuple[str, str], Route]) -> Iterator[CannedServer]:
    recorded: list[Recorded] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            req = Recorded(self.command, self.path, dict(self.headers), self.rfile.read(length))
            recorded.append(req)
            route = routes.get((self.command, self.path.split("?")[0]))
            if route is None:
                canned = Canned(404, {"error": "no route"})
            else:
                canned = route(req) if callable(route) else route
            time.sleep(canned.delay_s)
            data, ctype = canned.payload()
            self.send_response(canned.status)
            self.send_header("Content-Type", canned.headers.get("Content-Type", ctype))
            for k, v in canned.headers.items():
                if k != "Content-Type":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield CannedServer(f"http://127.0.0.1:{server.server_address[1]}", recorded)
    finally:
        server.shutdown()
        server.server_close()
