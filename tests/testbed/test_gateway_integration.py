"""Real processes: stable and canary services (real models) and the gateway, started once per session
on free ports (conftest.testbed_stack) and always stopped. End-to-end: health, golden requests through
the gateway with trace propagation into both log files, canary faults seen in gateway metrics, the
rollback (weight 0), and the traffic command."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.testbed.conftest import AUTH, REPO, Stack

pytestmark = [pytest.mark.integration, pytest.mark.models]


def routing(stack: Stack, **body: Any) -> dict[str, Any]:
    r = httpx.put(f"{stack.gateway.url}/admin/routing", json=body, headers=AUTH, timeout=5)
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_for_log(proc: Any, pred: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in proc.logs() if pred(ln)]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_health_of_every_process(testbed_stack: Stack) -> None:
    for proc, version in ((testbed_stack.stable, "stable"), (testbed_stack.canary, "canary")):
        h = httpx.get(f"{proc.url}/v1/health", timeout=5).json()
        assert h["status"] == "ready" and h["version"] == version
        m = httpx.get(f"{proc.url}/metrics", timeout=5).text
        assert re.search(
            rf'testbed_model_loaded\{{[^}}]*model="whisper-base"[^}}]*version="{version}"\}} 1\.0', m
        )
        assert "process_resident_memory_bytes" in m
    g = httpx.get(f"{testbed_stack.gateway.url}/health", timeout=5).json()
    assert g["status"] == "ready"
    assert {v: u["status"] for v, u in g["upstreams"].items()} == {"stable": "ready", "canary": "ready"}


def test_golden_audio_through_gateway_with_trace(testbed_stack: Stack, golden: Any) -> None:
    from testbed.golden import error_rate

    routing(testbed_stack, canary_weight=0, strategy="percentage")
    clip = next(a for a in golden.audio if a.id == "en-where-order")
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    r = httpx.post(
        f"{testbed_stack.gateway.url}/v1/audio/transcriptions",
        json={"audio_b64": base64.b64encode(clip.file.read_bytes()).decode(), "language": "en"},
        headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01", "X-Tenant": "acme", "X-User-Id": "u-1"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-served-by"] == "stable" and r.headers["x-trace-id"] == trace_id
    assert error_rate(clip.text, r.json()["text"], "en") == 0.0
    assert r.json()["intent"]["label"] == clip.intent
    svc_lines = wait_for_log(testbed_stack.stable, lambda ln: ln.get("trace_id") == trace_id)
    assert svc_lines and all(ln["channel"] == "audio" and ln["version"] == "stable" for ln in svc_lines)
    done = [ln for ln in svc_lines if ln["message"] == "request completed"]
    assert done and done[0]["tenant"] == "acme" and done[0]["user_id"] == "u-1"
    gw_lines = wait_for_log(testbed_stack.gateway, lambda ln: ln.get("trace_id") == trace_id)
    assert gw_lines and gw_lines[0]["upstream"] == "stable"
    # the service's parent span is the gateway's span
    assert done[0]["parent_span_id"] == gw_lines[0]["span_id"]
    assert not [ln for ln in testbed_stack.canary.logs() if ln.get("trace_id") == trace_id]


def test_canary_fault_rollback(testbed_stack: Stack) -> None:
    gw, canary = testbed_stack.gateway.url, testbed_stack.canary.url
    r = httpx.post(
        f"{canary}/admin/faults", json={"fault": "error_burst", "magnitude": 1.0}, headers=AUTH, timeout=5
    )
    assert r.status_code == 200
    try:
        routing(testbed_stack, canary_weight=50, strategy="user_hash")
        served = []
        for i in range(40):
            r = httpx.post(
                f"{gw}/v1/embeddings/text",
                json={"texts": ["a red circle"]},
                headers={"X-User-Id": f"user-{i}"},
                timeout=30,
            )
            served.append((r.headers["x-served-by"], r.status_code))
        assert {c for v, c in served if v == "canary"} == {500}
        assert {c for v, c in served if v == "stable"} == {200}
        n_canary = sum(v == "canary" for v, _ in served)
        assert 8 <= n_canary <= 32
        metrics = httpx.get(f"{gw}/metrics", timeout=5).text
        assert (
            f'testbed_gateway_requests_total{{channel="text",code="500",version="canary"}} {n_canary}.0'
            in metrics
        )
        cm = httpx.get(f"{canary}/metrics", timeout=5).text
        assert re.search(
            r'testbed_request_errors_total\{channel="text",code="500",tenant="default",version="canary"\}', cm
        )
        # rollback: weight 0 -> everything on stable, all healthy
        state = routing(testbed_stack, canary_weight=0)
        assert state["canary_weight"] == 0
        after = [
            httpx.post(
                f"{gw}/v1/embeddings/text",
                json={"texts": ["x"]},
                headers={"X-User-Id": f"user-{i}"},
                timeout=30,
            )
            for i in range(40)
        ]
        assert {(r.headers["x-served-by"], r.status_code) for r in after} == {("stable", 200)}
        changes = wait_for_log(testbed_stack.gateway, lambda ln: ln["message"].startswith("routing changed"))
        assert changes and changes[-1]["after"]["canary_weight"] == 0
    finally:
        httpx.delete(f"{canary}/admin/faults", headers=AUTH, timeout=5)
        routing(testbed_stack, canary_weight=0, strategy="percentage")


def test_traffic_command(testbed_stack: Stack) -> None:
    routing(testbed_stack, canary_weight=30, strategy="percentage")
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "testbed",
                "traffic",
                "--gateway",
                testbed_stack.gateway.url,
                "--rate",
                "4",
                "--duration",
                "5",
                "--mix",
                "text=0.5,image=0.3,router=0.2",
                "--progress-every",
                "2",
                "--seed",
                "3",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        routing(testbed_stack, canary_weight=0)
    assert proc.returncode == 0, proc.stderr
    progress = [ln for ln in proc.stdout.splitlines() if ln.startswith("[traffic]")]
    assert len(progress) >= 2
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert 15 <= summary["sent"] <= 21
    assert summary["codes"].get("200", 0) == summary["done"] == summary["sent"]
    assert set(summary["served_by"]) <= {"stable", "canary"}
