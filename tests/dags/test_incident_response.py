"""``incident_response`` phase 1 run with ``dag.test()`` against the real testbed (stable + canary, real
models) scraped by a real Prometheus, one injected fault per scenario.

Each scenario clears every fault, injects one on the canary, sends the traffic that makes it show,
waits for Prometheus to scrape, runs the DAG and reads the stored results. The healthy scenario runs
first: later ones share the processes, so their windows may also contain earlier scenarios' traffic,
and they assert what their fault must show rather than the absence of everything else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.support.prometheus import RunningPrometheus, prometheus
from tests.support.testbed_procs import AUTH, Stack
from tests.testbed.conftest import b64, shape_png, sine_wav

pytestmark = [pytest.mark.integration, pytest.mark.models]

PHASE = "golden_window"
CHECKS = ("health_snapshot", "model_integrity", "metrics_sla", "log_classification")


@dataclass
class Phase1:
    stack: Stack
    prom: RunningPrometheus
    dag: Any

    def run(self, **conf: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
        """Run the DAG; return the run and every stored phase-1 result (check -> JSON)."""
        run = self.dag.test(run_conf={"target": "testbed", "window_minutes": 2, **conf})
        base = self.stack.home / "artifacts" / run.run_id / PHASE
        results = {p.stem: json.loads(p.read_text()) for p in base.glob("*.json")}
        return run, results


@pytest.fixture(scope="module")
def phase1(
    testbed_stack: Stack, airflow_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Phase1]:
    from airflow.dag_processing.dagbag import DagBag

    scrape = {
        "job_name": "testbed",
        "static_configs": [
            {"targets": [testbed_stack.stable.url.removeprefix("http://")], "labels": {"version": "stable"}},
            {"targets": [testbed_stack.canary.url.removeprefix("http://")], "labels": {"version": "canary"}},
        ],
    }
    with (
        prometheus(tmp_path_factory.mktemp("prometheus"), [scrape]) as prom,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key, value in testbed_stack.environ().items():
            mp.setenv(key, value)
        mp.setenv("TRIAGE24_PROMETHEUS_PORT", str(prom.port))
        prom.wait_for_series('testbed_model_loaded{job="testbed",version="canary"}')
        bag = DagBag(dag_folder=str(REPO / "dags" / "incident_response.py"))
        assert bag.import_errors == {}
        yield Phase1(testbed_stack, prom, bag.dags["incident_response"])


def clear_faults(stack: Stack) -> None:
    for proc in (stack.stable, stack.canary):
        httpx.delete(f"{proc.url}/admin/faults", headers=AUTH, timeout=5).raise_for_status()


def inject(url: str, fault: str, **body: Any) -> None:
    resp = httpx.post(f"{url}/admin/faults", json={"fault": fault, **body}, headers=AUTH, timeout=5)
    assert resp.status_code == 200, resp.text


def drive(url: str, path: str, body: dict[str, Any], n: int, concurrency: int = 8) -> list[int]:
    """Send ``n`` requests; return their HTTP codes (timeouts as 0)."""

    def one(_: int) -> int:
        try:
            return httpx.post(f"{url}{path}", json=body, timeout=30).status_code
        except httpx.HTTPError:
            return 0

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(n)))


def settle(stack: Stack) -> None:
    time.sleep(2.5)  # two 1 s scrapes, and the services' log lines flushed


def problems(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["problem"]: f for f in result["findings"]}


def assert_ran(run: Any, results: dict[str, dict[str, Any]]) -> None:
    assert run.state == "success"
    assert set(results) == {*CHECKS, "summary"}, sorted(results)


def test_1_healthy_service_blames_no_component(phase1: Phase1) -> None:
    stack = phase1.stack
    clear_faults(stack)
    for proc in (stack.stable, stack.canary):
        assert set(drive(proc.url, "/v1/embeddings/text", {"texts": ["a red circle"]}, 60)) == {200}
    settle(stack)
    run, results = phase1.run()
    assert_ran(run, results)
    assert results["health_snapshot"]["status"] == "ok", results["health_snapshot"]["summary"]
    assert [e["status"] for e in results["health_snapshot"]["endpoints"]] == ["ready", "ready", "ready"]
    assert results["model_integrity"]["status"] == "ok"
    assert {m["verdict"] for m in results["model_integrity"]["models"]} == {"ok"}
    assert len(results["model_integrity"]["models"]) == 6  # 3 pinned models x 2 versions
    assert results["metrics_sla"]["gate"]["verdict"] == "pass", results["metrics_sla"]["gate"]
    blamed = [f for f in results["summary"]["findings"] if f["severity"] in ("critical", "high")]
    assert blamed == []
    assert results["summary"]["suspected_component"] is None or not blamed


def test_2_embedding_dim_mismatch_blames_the_router_path(phase1: Phase1) -> None:
    stack = phase1.stack
    clear_faults(stack)
    inject(stack.canary.url, "embedding_dim_mismatch", channel="image", magnitude=512)
    body = {"text": "a red circle", "image_b64": shape_png("red", "circle")}
    codes = drive(stack.canary.url, "/v1/router", body, 12, concurrency=4)
    assert codes.count(500) == 12
    settle(stack)
    run, results = phase1.run()
    assert_ran(run, results)
    found = problems(results["log_classification"])
    assert "embedding_dim_mismatch" in found, results["log_classification"]["summary"]
    finding = found["embedding_dim_mismatch"]
    assert finding["component"] == "multimodal_router"
    assert finding["version"] in ("canary", None)
    assert "embedding_dim" in finding["action"]
    top = results["summary"]["findings"][0]
    assert top["severity"] == "critical"
    assert results["summary"]["suspected_component"] in ("multimodal_router", "embedding")


def test_3_audio_timeout_blames_the_audio_processor(phase1: Phase1) -> None:
    stack = phase1.stack
    clear_faults(stack)
    inject(stack.canary.url, "audio_timeout", magnitude=0.3)
    codes = drive(stack.canary.url, "/v1/audio/transcriptions", {"audio_b64": b64(sine_wav(1.0))}, 4, 2)
    assert codes == [504] * 4
    settle(stack)
    run, results = phase1.run()
    assert_ran(run, results)
    found = problems(results["log_classification"])
    assert found["audio_timeout"]["component"] == "audio_processor"
    assert "timeout_sec" in found["audio_timeout"]["action"]


def test_4_cuda_oom_is_found_in_the_logs(phase1: Phase1) -> None:
    stack = phase1.stack
    clear_faults(stack)
    inject(stack.canary.url, "cuda_oom", channel="text", magnitude=1.0)
    codes = drive(stack.canary.url, "/v1/embeddings/text", {"texts": ["a blue square"]}, 10, 4)
    assert codes == [500] * 10
    settle(stack)
    run, results = phase1.run()
    assert_ran(run, results)
    found = problems(results["log_classification"])
    assert found["cuda_oom"]["severity"] == "critical"
    assert found["cuda_oom"]["component"] == "audio_processor"  # the matrix's first component for OOM
    assert results["log_classification"]["status"] == "failed"


def test_5_model_not_loaded_is_a_checksum_finding(phase1: Phase1) -> None:
    stack = phase1.stack
    clear_faults(stack)
    inject(stack.canary.url, "model_not_loaded", channel="image")
    run, results = phase1.run()
    assert_ran(run, results)
    models = results["model_integrity"]
    assert models["status"] == "failed"
    bad = [m for m in models["models"] if m["verdict"] != "ok"]
    assert [(m["version"], m["name"]) for m in bad] == [("canary", "clip-shapes")]
    assert bad[0]["verdict"] == "checksum_mismatch"
    finding = problems(models)["model_not_loaded"]
    assert finding["component"] == "embedding" and finding["version"] == "canary"
    assert "sha256" in finding["evidence"] and "pinned 9bdaad55e6ff" in finding["evidence"]
    health = results["health_snapshot"]
    canary = next(e for e in health["endpoints"] if e["name"] == "canary")
    assert canary["modules"]["embedding"] == "error"
    assert health["status"] == "failed"
    clear_faults(stack)


def test_6_latency_spike_on_the_canary_breaches_the_p99_gate(phase1: Phase1) -> None:
    stack = phase1.stack
    clear_faults(stack)
    inject(stack.canary.url, "latency_spike", channel="text", magnitude=1500)
    codes = drive(stack.canary.url, "/v1/embeddings/text", {"texts": ["a green triangle"]}, 60, 12)
    assert codes == [200] * 60
    settle(stack)
    run, results = phase1.run()
    clear_faults(stack)
    assert_ran(run, results)
    gate = results["metrics_sla"]["gate"]
    assert gate["verdict"] == "breach", results["metrics_sla"]["summary"]
    assert results["metrics_sla"]["status"] == "failed"
    gate_findings = [f for f in results["metrics_sla"]["findings"] if f["problem"] == "canary_gate_breach"]
    assert any(f["channel"] == "text" and "p99" in f["evidence"] for f in gate_findings), gate_findings
    assert results["summary"]["gate"]["verdict"] == "breach"


def test_7_prometheus_stopped_is_insufficient_evidence_and_the_run_succeeds(phase1: Phase1) -> None:
    clear_faults(phase1.stack)
    phase1.prom.stop()
    run, results = phase1.run()
    assert_ran(run, results)
    metrics = results["metrics_sla"]
    assert metrics["status"] == "insufficient_evidence"
    assert "prometheus" in metrics["summary"].lower()
    assert results["summary"]["checks"]["metrics_sla"] == "insufficient_evidence"
    assert results["health_snapshot"]["status"] == "ok"
