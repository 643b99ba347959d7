"""One look of the canary watch against the real Prometheus binary scraping the testbed's own metrics
(two exporters, stable and canary, as the testbed runs them): the four queries parse and count exactly
the requests, errors, 5xx and SLA-slow requests that were served; a stopped Prometheus pauses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import start_http_server

from diagnostics.canary_watch import Counters
from diagnostics.canary_watch.look import build_looks, read_answers
from diagnostics.canary_watch.session import WatchSpec
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.canary_watch import load_canary_watch
from testbed.metrics import ServiceMetrics
from tests.conftest import REPO, free_port
from tests.support.prometheus import RunningPrometheus, prometheus

pytestmark = pytest.mark.integration

SPEC = WatchSpec.from_runbook(
    load_canary_watch(REPO / "runbooks" / "canary_watch.yaml"), load_runbooks().targets.get("testbed")
)
KEYS = [(t.channel, t.test) for t in SPEC.tests]

# (version, channel, seconds, code, how many)
TRAFFIC = [
    ("stable", "text", 0.03, 200, 95),
    ("stable", "text", 0.25, 200, 3),  # slower than text's 200 ms SLA
    ("stable", "text", 0.03, 500, 2),
    ("stable", "image", 0.08, 200, 50),
    ("canary", "text", 0.03, 200, 9),
    ("canary", "text", 0.3, 200, 4),  # slow
    ("canary", "text", 0.03, 500, 3),
    ("canary", "text", 0.03, 503, 2),
    ("canary", "text", 0.03, 404, 2),  # an error, not a 5xx
    ("canary", "audio", 7.0, 200, 3),  # slower than the testbed's 6 s audio SLA
]


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[RunningPrometheus]:
    servers = []
    targets = []
    for version in ("stable", "canary"):
        metrics = ServiceMetrics(version)
        metrics.init_series()
        for v, channel, seconds, code, n in TRAFFIC:
            for _ in range(n if v == version else 0):
                metrics.observe(channel, "default", code, seconds)
        port = free_port()
        servers.append(start_http_server(port, addr="127.0.0.1", registry=metrics.registry)[0])
        targets.append(f"127.0.0.1:{port}")
    config = [{"job_name": "testbed", "static_configs": [{"targets": targets}]}]
    try:
        with prometheus(tmp_path, config) as prom:
            prom.wait_for_series('count(up{job="testbed"} == 1) == 2')
            yield prom
    finally:
        for server in servers:
            server.shutdown()


async def _look(url: str) -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        return await read_answers(client, url, SPEC.look, time.time(), timeout_s=3.0)


def test_one_look_counts_what_each_version_served(scraped: RunningPrometheus) -> None:
    answers = asyncio.run(_look(scraped.url))
    assert all(isinstance(a, list) for a in answers.values()), answers
    looks = build_looks(SPEC.look, KEYS, answers)  # type: ignore[arg-type]
    text = {test: looks[("text", test)] for test in ("errors", "errors_5xx", "sla_slow")}
    assert text["errors"].canary == Counters(requests=20, events=7)
    assert text["errors"].stable == Counters(requests=100, events=2)
    assert text["errors_5xx"].canary == Counters(requests=20, events=5)
    assert text["errors_5xx"].stable == Counters(requests=100, events=2)
    assert text["sla_slow"].canary == Counters(requests=20, events=4)
    assert text["sla_slow"].stable == Counters(requests=100, events=3)
    # the testbed's audio SLA is 6 s (target override); stable's pre-created series count 0
    assert looks[("audio", "sla_slow")].canary == Counters(requests=3, events=3)
    assert looks[("audio", "sla_slow")].stable == Counters(requests=0, events=0)
    assert looks[("image", "errors")].canary == Counters(requests=0, events=0)
    assert all(look.reason is None for look in looks.values())


def test_a_stopped_prometheus_pauses_every_test(scraped: RunningPrometheus) -> None:
    url = scraped.url
    scraped.stop()
    answers = asyncio.run(_look(url))
    assert set(answers.values()) == {"Prometheus unreachable (ConnectError)"}
    looks = build_looks(SPEC.look, KEYS, answers)  # type: ignore[arg-type]
    assert all(look.canary is None and look.stable is None for look in looks.values())
    assert looks[("text", "errors")].reason == (
        "requests: Prometheus unreachable (ConnectError); errors: Prometheus unreachable (ConnectError)"
    )
