"""The metrics check against the real Prometheus binary scraping a real prometheus_client exporter.

Stable serves fast text and image requests, the canary slow text requests of which every fifth is a
500. After ~14 s of 1 s scrapes the check must see the request counts, a canary gate breach on p99
and 5xx on text, nothing wrong with stable, and gamma fits with a positive shape.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from diagnostics.golden_window.canary_gate import GateVerdict
from diagnostics.golden_window.metrics_sla import check_metrics_sla
from diagnostics.golden_window.timeline import Metric, metric_timeline
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import CanaryGates, Channel, TargetOverride
from diagnostics.sources.prometheus import PrometheusReader
from testbed.metrics import LATENCY_BUCKETS
from tests.conftest import free_port

PROMETHEUS = "/usr/bin/prometheus"
WINDOW_S = 10.0
TICK_S = 0.05  # per tick: 2 stable text, 1 stable image, 1 canary text request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(PROMETHEUS) is None, reason="the prometheus binary is not installed"),
]


@dataclass
class Feeder:
    """Observes requests into the exporter's registry on a steady clock, remembering when."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    log: list[tuple[float, str, str, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        labels = ["version", "channel", "tenant"]
        self.latency = Histogram(
            "testbed_request_duration_seconds",
            "latency",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter("testbed_requests", "requests", [*labels, "code"], registry=self.registry)
        self.errors = Counter("testbed_request_errors", "errors", [*labels, "code"], registry=self.registry)
        # Series exist (at 0) before the first scrape, so increase() sees every request.
        for version, channel in (("stable", "text"), ("stable", "image"), ("canary", "text")):
            self.latency.labels(version, channel, "default")
            self.requests.labels(version, channel, "default", "200")
        self.requests.labels("canary", "text", "default", "500")
        self.errors.labels("canary", "text", "default", "500")

    def observe(self, version: str, channel: str, seconds: float, code: int) -> None:
        self.latency.labels(version, channel, "default").observe(seconds)
        self.requests.labels(version, channel, "default", str(code)).inc()
        if code >= 400:
            self.errors.labels(version, channel, "default", str(code)).inc()
        self.log.append((time.time(), version, channel, code))

    def run(self) -> None:
        i = 0
        next_tick = time.monotonic()
        while not self.stop.is_set():
            self.observe("stable", "text", 0.02 + 0.01 * (i % 3), 200)  # 20, 30, 40 ms
            self.observe("stable", "text", 0.015 + 0.01 * (i % 2), 200)  # 15, 25 ms
            self.observe("stable", "image", 0.06 + 0.02 * (i % 4), 200)  # 60 ... 120 ms
            self.observe("canary", "text", 1.6 + 0.2 * (i % 5), 500 if i % 5 == 0 else 200)  # 1.6 ... 2.4 s
            i += 1
            next_tick += TICK_S
            time.sleep(max(0.0, next_tick - time.monotonic()))

    def count(self, version: str, channel: str, start: float, end: float) -> int:
        return sum(1 for t, v, c, _ in self.log if v == version and c == channel and start < t <= end)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Feeder]]:
    feeder = Feeder()
    exporter_port, prom_port = free_port(), free_port()
    server, _ = start_http_server(exporter_port, addr="127.0.0.1", registry=feeder.registry)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: testbed\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    thread = threading.Thread(target=feeder.run, daemon=True)
    url = f"http://127.0.0.1:{prom_port}"
    try:
        deadline = time.monotonic() + 20
        while True:  # ready, and the exporter scraped once
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Prometheus did not scrape the exporter within 20 s"
            try:
                body = httpx.get(
                    f"{url}/api/v1/query", params={"query": 'up{job="testbed"}'}, timeout=1
                ).json()
                if body["data"]["result"] and body["data"]["result"][0]["value"][1] == "1":
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        thread.start()
        yield url, feeder
    finally:
        feeder.stop.set()
        if thread.is_alive():
            thread.join(5)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        server.shutdown()
        server.server_close()


def test_check_against_real_prometheus(prometheus: tuple[str, Feeder]) -> None:
    url, feeder = prometheus
    time.sleep(WINDOW_S + 4)  # the window plus a few scrapes of margin
    books = load_runbooks()
    gates = CanaryGates(p99_latency_ms=1200, rate_5xx=0.005, error_rate=0.05, sustained_s=8, min_requests=20)
    thresholds = books.thresholds.model_copy(
        update={"target_overrides": {"testbed": TargetOverride(canary_gates=gates)}}
    )
    end = datetime.now(UTC)
    started = time.monotonic()
    result = check_metrics_sla(
        PrometheusReader(url, timeout_s=5),
        books.targets.get("testbed"),
        thresholds,
        books.priority_matrix,
        window_end=end,
        window_s=WINDOW_S,
    )
    assert time.monotonic() - started < 5

    stable_text = result.channel("stable", Channel.TEXT)
    canary_text = result.channel("canary", Channel.TEXT)
    assert stable_text is not None and canary_text is not None
    # increase() extrapolates scrapes to the window edges; the feeder's own log is the truth.
    t1 = end.timestamp()
    expected_stable = feeder.count("stable", "text", t1 - WINDOW_S, t1)  # ~2 per 50 ms tick: ~400
    expected_canary = feeder.count("canary", "text", t1 - WINDOW_S, t1)  # ~200
    assert expected_stable > 250
    assert stable_text.current.requests == pytest.approx(expected_stable, rel=0.2)
    assert canary_text.current.requests == pytest.approx(expected_canary, rel=0.2)
    # every fifth canary request is a 500: 20 %
    assert canary_text.current.rate_5xx == pytest.approx(0.2, abs=0.06)
    assert canary_text.current.error_rate == pytest.approx(0.2, abs=0.06)
    assert stable_text.current.errors == 0
    # canary latency 1.6-2.4 s: p99 in the (2, 3] s bucket; stable at most 40 ms -> (0.025, 0.05]
    p99 = canary_text.current.latency(0.99)
    assert p99 is not None and 2000 < p99 <= 3000
    stable_p99 = stable_text.current.latency(0.99)
    assert stable_p99 is not None and stable_p99 <= 50

    assert result.gate.verdict is GateVerdict.BREACH
    breached = {(g.channel, g.gate) for g in result.gate.breaches()}
    assert breached == {
        (Channel.TEXT, "p99_latency_ms"),
        (Channel.TEXT, "rate_5xx"),
        (Channel.TEXT, "error_rate"),
    }
    text_gate = next(c for c in result.gate.channels if c.channel is Channel.TEXT)
    assert text_gate.requests >= gates.min_requests
    p99_gate = next(g for g in text_gate.gates if g.gate == "p99_latency_ms")
    assert p99_gate.ratio_vs_stable is not None and p99_gate.ratio_vs_stable > 20  # > 2000 ms / <= 50 ms
    # stable passes: no finding names it
    assert [f for f in result.findings if f.version == "stable"] == []
    assert result.status is Status.FAILED
    assert result.gate_summary().verdict is GateVerdict.BREACH

    for fit in (stable_text.gamma, canary_text.gamma):
        assert fit is not None and fit.shape > 0 and fit.scale_ms > 0
    assert stable_text.gamma is not None and 10 < stable_text.gamma.mean_ms < 50
    assert canary_text.gamma is not None and 1500 < canary_text.gamma.mean_ms < 3000
    # the canary's dynamic threshold has stable's reference P99.99 (<= 50 ms) as its base:
    # max(180, <=50 * e^(0.02 * ~20 rps)) = 180 ms, which its ~3000 ms P99.99 breaches
    assert canary_text.dynamic is not None and canary_text.dynamic.threshold_ms == 180
    assert canary_text.breaches == ["latency_sla", "latency_dynamic", "error_rate"]
    assert result.gpu_memory == {}  # not exported here: no GPU
    result.model_dump_json()  # the DAG's artifact

    # The metric timeline's three range queries against the same Prometheus (query_range, range_frame).
    tl = metric_timeline(
        PrometheusReader(url, timeout_s=5), books.targets.get("testbed"), thresholds, end, WINDOW_S
    )
    assert tl.status is Status.OK and tl.elapsed_s < 2 and (tl.points, tl.step_s) == (11, 1.0)
    rate = tl.get(Channel.TEXT, Metric.REQUEST_RATE)
    assert rate is not None
    # the last step looks back 60 s, which covers every request so far: the feeder's log is the truth
    last = rate.values["stable"][-1]
    assert last is not None and last * 60 == pytest.approx(
        feeder.count("stable", "text", t1 - 60, t1), rel=0.25
    )
    assert rate.ratio == pytest.approx(0.5, rel=0.2)  # the canary serves one text request per tick
    err = tl.get(Channel.TEXT, Metric.ERROR_RATE)
    assert err is not None and err.stats["stable"].max == 0  # no error series: 0, not missing
    assert err.stats["canary"].mean == pytest.approx(0.2, abs=0.06) and err.canary_first_over is not None
    p99 = tl.get(Channel.TEXT, Metric.P99_LATENCY_MS)
    assert p99 is not None and p99.canary_first_over is not None
    assert 2000 < (p99.stats["canary"].min or 0) <= 3000 and (p99.stats["stable"].max or 1e9) <= 50
    image = tl.get(Channel.IMAGE, Metric.P99_LATENCY_MS)
    assert image is not None and image.stats["canary"].points == 0 and image.stats["stable"].points > 0
