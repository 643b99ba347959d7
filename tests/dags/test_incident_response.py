"""``incident_response`` phase 1 run with ``dag.test()`` against the real testbed (stable + canary, real
models) scraped by a real Prometheus, one injected fault per scenario.

Each scenario clears every fault, injects one on the canary, sends the traffic that makes it show,
waits for Prometheus to scrape, runs the DAG and reads the stored results. The healthy scenario runs
first: later ones share the processes, so their windows may also contain earlier scenarios' traffic,
and they assert what their fault must show rather than the absence of everything else.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from diagnostics.incident.model import Incident
from tests.conftest import REPO
from tests.support.prometheus import RunningPrometheus, prometheus
from tests.support.runbooks import lighter_runbooks
from tests.support.testbed_procs import AUTH, Stack
from tests.testbed.conftest import b64, shape_png, sine_wav

pytestmark = [pytest.mark.integration, pytest.mark.models]

PHASE = "golden_window"
CHECKS = ("health_snapshot", "model_integrity", "metrics_sla", "log_classification")
DEEP_CHECKS = (
    "clip_consistency",
    "embedding_alignment",
    "asr_check",
    "temporal_alignment",
    "alignment_quality",
    "router_dispatch",
    "drift",
)


@dataclass
class Phase1:
    stack: Stack
    prom: RunningPrometheus
    dag: Any

    def run(self, *, deep: bool = True, **conf: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
        """Run the DAG; return the run and every stored phase-1 result (check -> JSON), plus the
        decision (``decision``) and the response results (``response/<name>``). ``deep=False`` marks
        phase 2's and phase 3's tasks done without running them: for the tests about phase 1 and the
        fast path (phase 2 under each fault is tests/diagnostics/deep_diagnosis/test_testbed_checks.py's)."""
        skip = None if deep else r"(deep_diagnosis|verified_delivery)\..*"
        run = self.dag.test(
            run_conf={"target": "testbed", "window_minutes": 2, **conf}, mark_success_pattern=skip
        )
        root = self.stack.home / "artifacts" / run.run_id
        results = {p.stem: json.loads(p.read_text()) for p in (root / PHASE).glob("*.json")}
        for p in (root / "decision").glob("*.json"):
            results[p.stem] = json.loads(p.read_text())
        for p in (root / "response").glob("*.json"):
            results[f"response/{p.stem}"] = json.loads(p.read_text())
        for p in (root / "deep_diagnosis").glob("*.json"):
            results[f"deep/{p.stem}"] = json.loads(p.read_text())
        for p in (root / "verified_delivery").glob("*.json"):
            results[f"delivery/{p.stem}"] = json.loads(p.read_text())
        return run, results

    def gateway_weight(self, weight: float | None = None) -> float:
        """Read (or set) the gateway's canary weight."""
        url = f"{self.stack.gateway.url}/admin/routing"
        if weight is not None:
            httpx.put(url, json={"canary_weight": weight}, headers=AUTH, timeout=5).raise_for_status()
        return float(httpx.get(url, headers=AUTH, timeout=5).json()["canary_weight"])


def _stable_traffic(url: str, stop: threading.Event) -> None:
    """Production always has stable traffic; recovery verification judges it (about 4 req/s)."""
    with httpx.Client(timeout=10) as client:
        while not stop.wait(0.25):
            with contextlib.suppress(httpx.HTTPError):
                client.post(f"{url}/v1/embeddings/text", json={"texts": ["a red circle"]})


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
        mp.setenv("TRIAGE24_AUDIT_KEY", "test-audit-key-0123456789abcdef")
        mp.setenv("TRIAGE24_DEADLINE_ALERTS", "0")  # dag.test() cannot run a DAG with deadlines (3.3)
        mp.setenv("TRIAGE24_RUNBOOKS_DIR", str(lighter_runbooks(tmp_path_factory.mktemp("runbooks"))))
        prom.wait_for_series('testbed_model_loaded{job="testbed",version="canary"}')
        bag = DagBag(dag_folder=str(REPO / "dags" / "incident_response.py"))
        assert bag.import_errors == {}
        stop = threading.Event()
        traffic = threading.Thread(target=_stable_traffic, args=(testbed_stack.stable.url, stop), daemon=True)
        traffic.start()
        try:
            yield Phase1(testbed_stack, prom, bag.dags["incident_response"])
        finally:
            stop.set()
            traffic.join(timeout=15)


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


def assert_ran(run: Any, results: dict[str, dict[str, Any]], deep: bool = True) -> None:
    assert run.state == "success"
    phase1 = {k for k in results if "/" not in k and k not in ("decision", "fast_decision")}
    # metric_timeline: phase 1's evidence for the report (no check of its own)
    assert phase1 == {*CHECKS, "summary", "metric_timeline"}, sorted(results)
    assert "decision" in results and "fast_decision" in results, sorted(results)
    ran = {k.removeprefix("deep/") for k in results if k.startswith("deep/")}
    assert ran == ({*DEEP_CHECKS, "summary", "evidence"} if deep else set()), sorted(ran)


def assert_delivered(phase1: Phase1, run: Any, results: dict[str, dict[str, Any]], version: str) -> None:
    from diagnostics.verified_delivery.audit import audit_key, verify_bundle

    suite = results["delivery/regression_suite"]
    assert suite["version"] == version and suite["trigger"] == run.run_id
    assert suite["status"] in ("ok", "degraded"), suite["summary"]  # degraded: only latency on a busy CPU
    assert set(suite["channels"]) == {"text", "image", "audio", "router"}
    summary = results["delivery/summary"]
    assert {d["phase"] for d in summary["details"]["deadlines"]} == {"golden_window", "deep_diagnosis"}
    assert all(d["state"] == "met" for d in summary["details"]["deadlines"])
    root = phase1.stack.home / "artifacts"
    html = (root / run.run_id / "report" / "report.html").read_text()
    assert run.run_id in html and results["decision"]["outcome"] in html and "<svg" in html
    bundles = sorted((root / "audit" / "bundles" / run.run_id).iterdir())
    assert len(bundles) == 1
    check = verify_bundle(bundles[0], audit_key("test-audit-key-0123456789abcdef"))
    assert check.status.value == "ok", check


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
    decision = results["decision"]
    assert decision["outcome"] == "continue", decision["reasons"]
    assert decision["needs_human"] is False
    assert "response/rollback" not in results
    # phase 2 measured both versions and found them healthy; the decision weighed it. The lighter
    # runbooks give the ASR check 2 clips: 0 of 2 failing cannot bound the failure share under its
    # tolerance, so it says insufficient rather than ok (continue does not require it; promotion does).
    for name in DEEP_CHECKS:
        expected = "insufficient_evidence" if name == "asr_check" else "ok"
        canary = results[f"deep/{name}"]["versions"]["canary"]
        assert canary["status"] == expected, results[f"deep/{name}"]["summary"]
    assert "too few clips for an ok: 0 of 2 failing" in results["deep/asr_check"]["summary"]
    evidence = results["deep/evidence"]
    assert set(evidence["drift"].values()) <= {0}
    assert {k: v for k, v in evidence["consistency"].items() if k != "asr_check"} and {
        v for k, v in evidence["consistency"].items() if k != "asr_check"
    } == {"ok"}
    assert decision["inputs"]["phase2"] == evidence
    # phase 3: nothing was rolled back, so the regression suite verified the canary; report and bundle
    assert_delivered(phase1, run, results, version="canary")


def test_2_a_critical_canary_finding_rolls_back_at_the_gateway_and_recovery_is_verified(
    phase1: Phase1,
) -> None:
    stack = phase1.stack
    clear_faults(stack)
    phase1.gateway_weight(10)  # the canary serves 10 % of the gateway's traffic
    inject(stack.canary.url, "embedding_dim_mismatch", channel="image", magnitude=512)
    body = {"text": "a red circle", "image_b64": shape_png("red", "circle")}
    assert drive(stack.canary.url, "/v1/router", body, 6, concurrency=3) == [500] * 6
    settle(stack)
    try:
        run, results = phase1.run()
    finally:
        clear_faults(stack)
    assert run.state == "success"
    # the canary's logs name the dimension mismatch on the router path, with the runbook's action
    found = problems(results["log_classification"])
    assert "embedding_dim_mismatch" in found, results["log_classification"]["summary"]
    finding = found["embedding_dim_mismatch"]
    assert finding["component"] == "multimodal_router" and finding["version"] in ("canary", None)
    assert "embedding_dim" in finding["action"]
    assert results["summary"]["findings"][0]["severity"] == "critical"
    assert results["summary"]["suspected_component"] in ("multimodal_router", "embedding")
    # the fast path rolled back on phase-1 evidence, before phase 2; the full decision agreed
    assert (
        results["fast_decision"]["outcome"] == "rollback"
        and results["fast_decision"]["inputs"]["phase2"] is None
    )
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["fast_path.rollback_now"] == "success" and states["fast_path.verify_now"] == "success"
    assert states["decision.done_by_fast_path"] == "success" and states["response.rollback"] == "skipped"
    decision = results["decision"]
    # The critical canary finding (the dimension mismatch in the canary's logs) holds on its own ...
    trace = {r["rule"]: r for r in decision["trace"]}
    critical = trace["critical_canary_finding"]
    assert critical["matched"] and "embedding_dim_mismatch" in critical["reasons"][0], critical
    # ... and leads unless the canary gate breached too: earlier tests' router requests (phase 2's
    # router_dispatch probes) share the 2-minute window, and a backed gate breach comes first.
    first = "canary_gate_breach" if trace["canary_gate_breach"]["matched"] else "critical_canary_finding"
    assert decision["outcome"] == "rollback" and decision["rule"] == first, decision["summary"]
    # phase 2 found the dimension mismatch on the canary (both dimensions named), not on stable
    alignment = results["deep/embedding_alignment"]["versions"]
    assert alignment["canary"]["status"] == "failed" and alignment["stable"]["status"] == "ok"
    assert "512-d" in alignment["canary"]["summary"] and "128-d" in alignment["canary"]["summary"]
    assert decision["inputs"]["phase2"]["consistency"]["embedding_alignment"] == "failed"
    # phase 3 verified what serves after the rollback: stable
    assert_delivered(phase1, run, results, version="stable")
    action = results["response/rollback"]
    assert action["outcome"] == "applied" and action["changed"] is True
    assert action["before"]["canary_weight"] == 10 and action["after"]["canary_weight"] == 0
    assert phase1.gateway_weight() == 0
    recovery = results["response/recovery_verification"]
    assert recovery["status"] == "ok" and recovery["recovered"] is True, recovery["summary"]
    assert recovery["time_to_recover_s"] is not None

    # A retried or re-run rollback task (a scheduler restart mid-incident) changes nothing.
    from diagnostics.response.phase import act_and_store

    phase1.gateway_weight(10)  # even if someone moved the weight back by hand since
    again = act_and_store(_incident_of(run), "rollback")
    assert again.outcome == "already_applied" and again.changed is False
    assert phase1.gateway_weight() == 10
    phase1.gateway_weight(0)


def _incident_of(run: Any) -> Incident:
    from diagnostics.config import Settings

    return Incident.model_validate_json((Settings().artifacts / run.run_id / "incident.json").read_text())


def test_3_audio_timeout_and_cuda_oom_are_each_blamed_on_the_module_that_logged_them(phase1: Phase1) -> None:
    # Two faults on two channels in one run (each alone showed the same): the log classification
    # keeps them apart and names each one's own module and runbook action.
    stack = phase1.stack
    clear_faults(stack)
    inject(stack.canary.url, "audio_timeout", magnitude=0.3)
    inject(stack.canary.url, "cuda_oom", channel="text", magnitude=1.0)
    codes = drive(stack.canary.url, "/v1/audio/transcriptions", {"audio_b64": b64(sine_wav(1.0))}, 4, 2)
    assert codes == [504] * 4
    codes = drive(stack.canary.url, "/v1/embeddings/text", {"texts": ["a blue square"]}, 10, 4)
    assert codes == [500] * 10
    settle(stack)
    run, results = phase1.run(deep=False)
    clear_faults(stack)
    assert_ran(run, results, deep=False)
    found = problems(results["log_classification"])
    assert found["audio_timeout"]["component"] == "audio_processor"
    assert "timeout_sec" in found["audio_timeout"]["action"]
    assert found["cuda_oom"]["severity"] == "critical"
    # The text encoder's module logged the OOM: it is blamed, not the matrix's first (audio_processor).
    assert found["cuda_oom"]["component"] == "embedding"
    assert results["log_classification"]["status"] == "failed"


def test_4_model_not_loaded_is_a_checksum_finding(phase1: Phase1) -> None:
    stack = phase1.stack
    clear_faults(stack)
    inject(stack.canary.url, "model_not_loaded", channel="image")
    run, results = phase1.run(deep=False)
    assert_ran(run, results, deep=False)
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


def test_5_latency_spike_on_the_canary_breaches_the_p99_gate(phase1: Phase1) -> None:
    stack = phase1.stack
    clear_faults(stack)
    inject(stack.canary.url, "latency_spike", channel="text", magnitude=1500)
    # Sustained: slow requests in both halves of the gate's 60 s window (30 s apart), so the breach
    # is backed by enough samples in each half and the decision may take the fast path.
    body = {"texts": ["a green triangle"]}
    codes = drive(stack.canary.url, "/v1/embeddings/text", body, 30, 12)
    time.sleep(31)
    codes += drive(stack.canary.url, "/v1/embeddings/text", body, 30, 12)
    assert codes == [200] * 60
    settle(stack)
    run, results = phase1.run(deep=False)
    clear_faults(stack)
    assert_ran(run, results, deep=False)
    gate = results["metrics_sla"]["gate"]
    assert gate["verdict"] == "breach", results["metrics_sla"]["summary"]
    assert results["metrics_sla"]["status"] == "failed"
    gate_findings = [f for f in results["metrics_sla"]["findings"] if f["problem"] == "canary_gate_breach"]
    assert any(f["channel"] == "text" and "p99" in f["evidence"] for f in gate_findings), gate_findings
    assert results["summary"]["gate"]["verdict"] == "breach"
    decision = results["decision"]
    assert decision["outcome"] == "rollback" and decision["rule"] == "canary_gate_breach"
    assert decision["gate_breach"] is True and decision["acts_without_human"] is True
    assert results["response/rollback"]["outcome"] == "noop"  # the weight already was 0
