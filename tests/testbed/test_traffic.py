"""testbed.traffic: mix parsing, request building from the golden set, and a short run through an
in-process gateway whose upstreams are mocks (rate bound, callers varied, progress and summary)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest

from testbed import traffic as tr
from tests.testbed.conftest import GOLDEN_MANIFEST


def test_parse_mix() -> None:
    assert tr.parse_mix(None) == tr.DEFAULT_MIX
    mix = tr.parse_mix("text=1,image=1")
    assert mix == {"text": 0.5, "image": 0.5, "audio": 0.0, "router": 0.0}
    for bad in ("video=1", "text", "text=-1", "text=abc", "text=0"):
        with pytest.raises(ValueError):
            tr.parse_mix(bad)


@pytest.fixture(scope="module")
def pool() -> tr.GoldenPool:
    if not GOLDEN_MANIFEST.is_file():
        pytest.skip("golden set not built")
    return tr.GoldenPool.load()


def test_build_request_covers_every_channel(pool: tr.GoldenPool) -> None:
    rng = random.Random(0)
    paths: dict[str, set[str]] = {}
    for channel in tr.CHANNELS:
        for _ in range(60):
            path, body = tr.build_request(channel, pool, rng)
            paths.setdefault(channel, set()).add(path)
            assert body
    assert paths["text"] == {"/v1/chat", "/v1/embeddings/text", "/v1/embeddings/rag"}
    assert paths["image"] == {"/v1/embeddings/image"}
    assert paths["audio"] == {"/v1/audio/transcriptions"}
    assert paths["router"] == {"/v1/router"}


def test_run_through_gateway(pool: tr.GoldenPool) -> None:
    from testbed.gateway import GatewaySettings, create_app

    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    app = create_app(
        GatewaySettings(
            canary_weight=30, strategy="user_hash", log_file=None, log_stdout=False, health_poll_s=0
        ),
        transport=httpx.MockTransport(upstream),
    )
    lines: list[str] = []
    summary: dict[str, Any] = asyncio.run(
        tr.run_traffic(
            "http://gateway",
            rate=20,
            duration_s=1.5,
            mix={"text": 0.4, "image": 0.3, "audio": 0.1, "router": 0.2},
            seed=1,
            progress_every=0.5,
            pool=pool,
            out=lines.append,
            transport=httpx.ASGITransport(app=app),
        )
    )
    assert 25 <= summary["sent"] <= 31  # 20 req/s for 1.5 s, never more
    assert summary["done"] == summary["sent"] and summary["codes"] == {"200": summary["sent"]}
    assert set(summary["served_by"]) == {"stable", "canary"}
    assert len(lines) >= 3 and lines[-1].startswith("[traffic] t=")
    users = {r.headers["x-user-id"] for r in seen}
    tenants = {r.headers["x-tenant"] for r in seen}
    assert len(users) > 10 and len(tenants) >= 2
    assert {json.loads(r.content) is not None for r in seen} == {True}
    assert {r.url.path for r in seen} >= {"/v1/embeddings/image", "/v1/router"}


def test_bounds() -> None:
    with pytest.raises(ValueError, match="rate"):
        asyncio.run(tr.run_traffic("http://x", rate=500, duration_s=1, pool=tr.GoldenPool([], [], [], [])))
    with pytest.raises(ValueError, match="duration"):
        asyncio.run(tr.run_traffic("http://x", rate=1, duration_s=1e9, pool=tr.GoldenPool([], [], [], [])))


def test_wait_ready_waits_for_every_upstream_and_gives_up_in_time() -> None:
    """Traffic sent while the services still load their models would only measure start-up."""
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from testbed.traffic import wait_ready

    state = {"canary": "degraded"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "status": "ready",
                    "upstreams": {"stable": {"status": "ready"}, "canary": {"status": state["canary"]}},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        started = time.monotonic()
        assert wait_ready(url, timeout_s=0.6, poll_s=0.1) is False
        assert 0.5 <= time.monotonic() - started < 3
        threading.Timer(0.3, lambda: state.update(canary="ready")).start()
        assert wait_ready(url, timeout_s=5, poll_s=0.1) is True
    finally:
        server.shutdown()
