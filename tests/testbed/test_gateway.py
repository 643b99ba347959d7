"""The gray-release gateway: routing policy (split, strategies, affinity, rollback) and the app
in-process against mock upstreams (proxying, X-Served-By, trace forwarding, admin API, metrics)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.gateway import STRATEGIES, GatewaySettings, Router, bucket, create_app
from tests.testbed.conftest import ADMIN_TOKEN, AUTH

# --------------------------------------------------------------------------- the routing policy


def test_percentage_split_within_tolerance() -> None:
    for seed in range(5):
        r = Router(20, "percentage", rng=random.Random(seed))
        share = sum(r.decide().version == "canary" for _ in range(1000)) / 1000
        assert abs(share - 0.20) <= 0.05, (seed, share)


def test_user_hash_split_and_determinism() -> None:
    r = Router(20, "user_hash")
    users = [f"user-{i}" for i in range(1000)]
    first = [r.decide(user_id=u).version for u in users]
    assert abs(first.count("canary") / 1000 - 0.20) <= 0.05
    assert [r.decide(user_id=u).version for u in users] == first  # same user, same version
    assert all(0 <= bucket(u) < 100 for u in users)
    # raising the weight only moves users stable -> canary
    r.update(weight=50)
    second = [r.decide(user_id=u).version for u in users]
    assert all(b == "canary" for a, b in zip(first, second, strict=True) if a == "canary")
    assert abs(second.count("canary") / 1000 - 0.50) <= 0.05


def test_header_strategy() -> None:
    r = Router(30, "header")
    assert r.decide(canary_header="always") == r.decide(canary_header="ALWAYS")
    assert r.decide(canary_header="always").version == "canary"
    assert r.decide(canary_header="never").version == "stable"
    assert {r.decide().version for _ in range(100)} == {"stable"}
    # the percentage strategy ignores the header
    p = Router(0.0001, "percentage", rng=random.Random(1))
    assert {p.decide(canary_header="always").version for _ in range(100)} == {"stable"}


def test_sessions_are_sticky() -> None:
    r = Router(50, "percentage", rng=random.Random(3))
    sessions = [f"s{i}" for i in range(200)]
    first = {s: r.decide(session_id=s).version for s in sessions}
    assert 60 < list(first.values()).count("canary") < 140
    for _ in range(5):
        for s in sessions:
            d = r.decide(session_id=s)
            assert d.version == first[s] and d.reason == "session"
    # a weight change keeps sessions where they are, while both versions still have weight
    r.update(weight=10)
    assert all(r.decide(session_id=s).version == first[s] for s in sessions)
    assert r.session_counts()["canary"] == list(first.values()).count("canary")
    # user_hash: the session wins over the user's bucket once pinned
    r.update(strategy="user_hash")
    assert all(r.decide(user_id="other-user", session_id=s).version == first[s] for s in sessions)


def test_weight_zero_is_a_rollback_for_everything() -> None:
    r = Router(50, "percentage", rng=random.Random(2))
    pinned = [f"s{i}" for i in range(100) if r.decide(session_id=f"s{i}").version == "canary"]
    assert pinned and r.session_counts()["canary"] == len(pinned)
    r.update(weight=0)
    for strategy in STRATEGIES:
        r.update(strategy=strategy)
        for i in range(100):
            d = r.decide(user_id=f"u{i}", session_id=f"s{i}", canary_header="always")
            assert d.version == "stable" and d.reason == "weight_zero"
    # weight 100 with a stable-pinned session: it moves to the canary
    r2 = Router(0.0001, "percentage", rng=random.Random(0))
    assert r2.decide(session_id="x").version == "stable"
    r2.update(weight=100)
    assert r2.decide(session_id="x").version == "canary"


def test_router_validation() -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        Router(101)
    with pytest.raises(ValueError, match="valid strategies"):
        Router(10, "random")
    r = Router(10)
    with pytest.raises(ValueError):
        r.update(weight=-1)
    assert r.canary_weight == 10


# --------------------------------------------------------------------------- the app, mock upstreams


class Upstreams:
    """Records what reaches each mock upstream and answers like a service."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, httpx.Request]] = []
        self.down: set[str] = set()
        self.fail: set[str] = set()

    def handler(self, request: httpx.Request) -> httpx.Response:
        version = "stable" if request.url.port == 18101 else "canary"
        if version in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests.append((version, request))
        if request.url.path == "/v1/health":
            return httpx.Response(200, json={"status": "ready", "version": version, "modules": {}})
        code = 500 if version in self.fail else 200
        return httpx.Response(
            code,
            json={"version": version, "path": request.url.path},
            headers={"X-Version": version, "traceparent": request.headers.get("traceparent", "")},
        )


@pytest.fixture
def upstreams() -> Upstreams:
    return Upstreams()


@pytest.fixture
def gateway(upstreams: Upstreams, tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    settings = GatewaySettings(
        stable_url="http://127.0.0.1:18101",
        canary_url="http://127.0.0.1:18102",
        canary_weight=0,
        admin_token=ADMIN_TOKEN,
        log_file=tmp_path / "gateway.jsonl",
        log_stdout=False,
        health_poll_s=0,
    )
    app = create_app(settings, transport=httpx.MockTransport(upstreams.handler))
    with TestClient(app) as client:
        client.log_file = tmp_path / "gateway.jsonl"  # type: ignore[attr-defined]
        yield client


def put_routing(client: Any, **body: Any) -> dict[str, Any]:
    r = client.put("/admin/routing", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_proxy_adds_served_by_and_forwards(gateway: Any, upstreams: Upstreams) -> None:
    r = gateway.post("/v1/chat?x=1", json={"message": "hi"}, headers={"X-Tenant": "acme", "X-User-Id": "u1"})
    assert r.status_code == 200 and r.headers["x-served-by"] == "stable" and r.json()["version"] == "stable"
    _, req = upstreams.requests[-1]
    assert req.url.path == "/v1/chat" and req.url.query == b"x=1"
    assert json.loads(req.content) == {"message": "hi"}
    assert req.headers["x-tenant"] == "acme" and req.headers["x-user-id"] == "u1"
    assert "t24_session" in r.cookies


def test_trace_id_forwarded_and_logged(gateway: Any, upstreams: Upstreams) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = gateway.post("/v1/chat", json={}, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert r.headers["x-trace-id"] == trace_id
    sent = upstreams.requests[-1][1].headers["traceparent"]
    assert re.fullmatch(rf"00-{trace_id}-[0-9a-f]{{16}}-01", sent) and "00f067aa0ba902b7" not in sent
    # without a traceparent the gateway starts the trace and the upstream continues it
    r = gateway.post("/v1/chat", json={})
    sent = upstreams.requests[-1][1].headers["traceparent"]
    assert sent.split("-")[1] == r.headers["x-trace-id"]
    from testbed.logs import read_log_lines

    lines = read_log_lines(gateway.log_file)
    proxied = [ln for ln in lines if ln["message"].startswith("proxied")]
    assert (
        proxied[0]["trace_id"] == trace_id
        and proxied[0]["upstream"] == "stable"
        and proxied[0]["version"] == "gateway"
    )


def test_admin_routing_auth_and_validation(gateway: Any, tmp_path: Path) -> None:
    assert gateway.get("/admin/routing").status_code == 401
    assert gateway.get("/admin/routing", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert gateway.put("/admin/routing", json={"canary_weight": 50}).status_code == 401
    assert gateway.get("/admin/routing", headers=AUTH).json()["canary_weight"] == 0
    for bad in ({"canary_weight": 150}, {"strategy": "coin"}, {}, {"weight": 5}, {"canary_weight": "x"}):
        r = gateway.put("/admin/routing", json=bad, headers=AUTH)
        assert r.status_code == 400, bad
    assert (
        "valid strategies: percentage, user_hash, header"
        in gateway.put("/admin/routing", json={"strategy": "coin"}, headers=AUTH).json()["error"]
    )
    state = put_routing(gateway, canary_weight=25, strategy="user_hash")
    assert state["canary_weight"] == 25 and state["strategy"] == "user_hash"

    from fastapi.testclient import TestClient

    app = create_app(GatewaySettings(admin_token=None, log_file=None, log_stdout=False, health_poll_s=0))
    with TestClient(app) as c:
        r = c.get("/admin/routing", headers=AUTH)
        assert r.status_code == 503 and "admin token not configured" in r.text


def test_split_through_the_app_and_rollback(gateway: Any) -> None:
    put_routing(gateway, canary_weight=20, strategy="percentage")
    served = [
        gateway.post("/v1/chat", json={}, headers={"X-Session-Id": f"s{i}"}).headers["x-served-by"]
        for i in range(400)
    ]
    assert abs(served.count("canary") / 400 - 0.2) <= 0.07
    # sticky: the same sessions come back to the same versions
    again = [
        gateway.post("/v1/chat", json={}, headers={"X-Session-Id": f"s{i}"}).headers["x-served-by"]
        for i in range(400)
    ]
    assert again == served
    # a cookie-carrying client sticks too
    gateway.cookies.clear()
    first = gateway.post("/v1/chat", json={})
    gateway.cookies.set("t24_session", first.cookies["t24_session"])
    assert {gateway.post("/v1/chat", json={}).headers["x-served-by"] for _ in range(20)} == {
        first.headers["x-served-by"]
    }
    gateway.cookies.clear()
    # rollback
    put_routing(gateway, canary_weight=0)
    assert {
        gateway.post("/v1/chat", json={}, headers={"X-Session-Id": f"s{i}"}).headers["x-served-by"]
        for i in range(400)
    } == {"stable"}
    put_routing(gateway, canary_weight=100, strategy="header")
    assert (
        gateway.post("/v1/chat", json={}, headers={"X-Canary": "always"}).headers["x-served-by"] == "canary"
    )
    assert gateway.post("/v1/chat", json={}, headers={"X-Canary": "never"}).headers["x-served-by"] == "stable"


def test_metrics_by_version(gateway: Any, upstreams: Upstreams) -> None:
    put_routing(gateway, canary_weight=100)
    upstreams.fail.add("canary")
    for _ in range(3):
        assert gateway.post("/v1/embeddings/image", json={}).status_code == 500
    put_routing(gateway, canary_weight=0)
    gateway.post("/v1/embeddings/image", json={})
    text = gateway.get("/metrics").text
    assert 'testbed_gateway_requests_total{channel="image",code="500",version="canary"} 3.0' in text
    assert 'testbed_gateway_requests_total{channel="image",code="200",version="stable"} 1.0' in text
    assert (
        'testbed_gateway_request_duration_seconds_bucket{channel="image",le="0.005",version="canary"}' in text
    )
    assert "testbed_gateway_canary_weight 0.0" in text
    assert "testbed_gateway_routing_changes_total 2.0" in text
    assert 'testbed_gateway_strategy{strategy="percentage"} 1.0' in text


def test_health_and_upstream_failure(gateway: Any, upstreams: Upstreams) -> None:
    h = gateway.get("/health").json()
    assert h["status"] == "ready" and h["gateway"] == "ready"
    assert h["upstreams"]["stable"]["status"] == "ready" and h["upstreams"]["canary"]["reachable"]
    assert h["routing"]["canary_weight"] == 0
    upstreams.down.add("canary")
    h = gateway.get("/health").json()
    assert h["status"] == "degraded" and h["upstreams"]["canary"]["status"] == "unreachable"
    put_routing(gateway, canary_weight=100)
    r = gateway.post("/v1/chat", json={})
    assert r.status_code == 502 and r.headers["x-served-by"] == "canary"
    assert (
        'testbed_gateway_upstream_errors_total{kind="connect",version="canary"} 1.0'
        in gateway.get("/metrics").text
    )
    upstreams.down.add("stable")
    assert gateway.get("/health").json()["status"] == "error"
