"""The service app in-process (FastAPI TestClient) with fake models: routes, admin auth, traces,
metrics, logs, and every fault's visible effect and clean recovery.

Model outputs here are the fakes' (conftest.FakeBackends); what is tested is the service's own
behaviour around them. Real-model checks are in test_service_models.py.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import pytest

from diagnostics.pii import cn_id_valid, luhn_valid
from testbed import faults as F
from tests.testbed.conftest import AUTH, InProcess, b64, shape_png, sine_wav


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        lab = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if all(lab.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def set_fault(svc: InProcess, **body: Any) -> dict[str, Any]:
    r = svc.client.post("/admin/faults", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    return dict(r.json())


def clear(svc: InProcess, name: str | None = None) -> None:
    r = svc.client.delete("/admin/faults", params={"fault": name} if name else None, headers=AUTH)
    assert r.status_code == 200, r.text


def image_emb(svc: InProcess, **headers: str) -> np.ndarray:
    r = svc.client.post(
        "/v1/embeddings/image",
        json={"images": [shape_png("red", "circle"), shape_png("blue", "star")]},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["embeddings"], dtype=np.float32)


def text_emb(svc: InProcess) -> np.ndarray:
    r = svc.client.post("/v1/embeddings/text", json={"texts": ["a red circle", "a blue star"]})
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["embeddings"], dtype=np.float32)


def transcribe(svc: InProcess, seconds: float = 1.0, **headers: str) -> Any:
    return svc.client.post(
        "/v1/audio/transcriptions", json={"audio_b64": b64(sine_wav(seconds))}, headers=headers
    )


# --------------------------------------------------------------------------- routes


def test_health_reports_modules_models_and_checksums(service: InProcess) -> None:
    h = service.client.get("/v1/health").json()
    assert h["status"] == "ready" and h["version"] == "stable"
    assert h["modules"] == {m: "ready" for m in ("llm", "embedding", "multimodal_router", "audio_processor")}
    assert {m["name"] for m in h["models"]} == {"clip-shapes", "all-MiniLM-L6-v2", "whisper-base"}
    assert all(m["sha256"] and m["checksum_ok"] for m in h["models"])


def test_data_routes(service: InProcess) -> None:
    c = service.client
    r = c.post("/v1/embeddings/text", json={"texts": ["a red circle", "a star"]})
    assert r.status_code == 200 and r.json()["dim"] == 128 and len(r.json()["embeddings"]) == 2
    r = c.post("/v1/embeddings/rag", json={"texts": ["where is my order"]})
    assert r.status_code == 200 and r.json()["dim"] == 384
    emb = image_emb(service)
    assert emb.shape == (2, 128) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    r = c.post("/v1/chat", json={"message": "Where is my order?"})
    assert r.json()["matched_question"] == "Where is my order?" and not r.json()["fallback"]
    r = c.post("/v1/chat", json={"messages": [{"role": "user", "content": "zebra quantum banana"}]})
    assert r.status_code == 200 and r.json()["fallback"] is True
    r = transcribe(service)
    body = r.json()
    assert r.status_code == 200 and body["text"] == "is this product in stock"
    words = [w for s in body["segments"] for w in s["words"]]
    assert [w["word"] for w in words] == body["text"].split()
    assert body["intent"]["label"] == "stock_inquiry" and 0 < body["intent"]["confidence"] <= 1
    # multipart upload works too
    r = c.post(
        "/v1/audio/transcriptions",
        files={"file": ("q.wav", sine_wav(), "audio/wav")},
        data={"language": "en"},
    )
    assert r.status_code == 200 and r.json()["language"] == "en"


def test_router_dispatches_by_inputs(service: InProcess) -> None:
    c = service.client
    cases = [
        ({"text": "where is my order"}, ["llm"], "chat"),
        ({"text": "a red circle", "image_b64": shape_png()}, ["embedding"], "similarity"),
        ({"image_b64": shape_png()}, ["embedding"], "image_embedding_dim"),
        ({"audio_b64": b64(sine_wav())}, ["audio_processor"], "transcript"),
        (
            {"audio_b64": b64(sine_wav()), "image_b64": shape_png()},
            ["audio_processor", "embedding"],
            "similarity",
        ),
    ]
    for body, route, key in cases:
        r = c.post("/v1/router", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["route"] == route and key in r.json()["results"]
        assert [s["module"] for s in r.json()["stages"]] == route
    assert c.post("/v1/router", json={}).status_code == 400
    routed = [ln for ln in service.logs() if ln["message"].startswith("routed request")]
    assert len(routed) == len(cases) and all(ln["channel"] == "router" and ln["route"] for ln in routed)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings/image", {"images": ["not base64!!"]}),
        ("/v1/embeddings/image", {"images": [b64(b"not an image")]}),
        ("/v1/audio/transcriptions", {"audio_b64": b64(b"not audio at all")}),
        ("/v1/audio/transcriptions", {"audio": "x"}),
    ],
)
def test_bad_inputs_are_400(service: InProcess, path: str, body: dict[str, Any]) -> None:
    r = service.client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert "error" in r.json()


def test_batch_limit(make_service: Any) -> None:
    svc = make_service(max_batch=3)
    assert svc.client.post("/v1/embeddings/text", json={"texts": ["a"] * 4}).status_code == 400


# --------------------------------------------------------------------------- admin API


def test_admin_auth(service: InProcess, make_service: Any) -> None:
    c = service.client
    for method in ("get", "post", "delete"):
        kwargs: dict[str, Any] = {"json": {"fault": "cuda_oom"}} if method == "post" else {}
        assert getattr(c, method)("/admin/faults", **kwargs).status_code == 401
        assert (
            getattr(c, method)(
                "/admin/faults", headers={"Authorization": "Bearer wrong"}, **kwargs
            ).status_code
            == 401
        )
        assert (
            getattr(c, method)("/admin/faults", headers={"Authorization": "Basic x"}, **kwargs).status_code
            == 401
        )
    assert c.get("/admin/faults", headers=AUTH).status_code == 200
    unconfigured = make_service(version="canary", admin_token=None)
    r = unconfigured.client.get("/admin/faults", headers=AUTH)
    assert r.status_code == 503 and "admin token not configured" in r.text
    assert (
        unconfigured.client.post("/admin/faults", json={"fault": "cuda_oom"}, headers=AUTH).status_code == 503
    )


def test_unknown_fault_400_lists_names(service: InProcess) -> None:
    r = service.client.post("/admin/faults", json={"fault": "meltdown"}, headers=AUTH)
    assert r.status_code == 400
    assert set(r.json()["valid_faults"]) == set(F.FAULT_NAMES)
    for name in F.FAULT_NAMES:
        assert name in r.json()["error"]
    r = service.client.post("/admin/faults", content=b"{not json", headers=AUTH)
    assert r.status_code == 400 and "valid faults" in r.json()["error"]
    r = service.client.post("/admin/faults", json={"fault": "error_burst", "magnitude": 3}, headers=AUTH)
    assert r.status_code == 400 and "0..1" in r.json()["error"]
    r = service.client.delete("/admin/faults", params={"fault": "meltdown"}, headers=AUTH)
    assert r.status_code == 400


def test_list_clear_and_expiry(service: InProcess) -> None:
    set_fault(service, fault="cuda_oom", channel="image")
    set_fault(service, fault="latency_spike", magnitude=10, duration_s=0.3)
    body = service.client.get("/admin/faults", headers=AUTH).json()
    assert [f["fault"] for f in body["active"]] == ["cuda_oom", "latency_spike"]
    assert set(body["available"]) == set(F.FAULT_NAMES)
    time.sleep(0.4)
    assert [f["fault"] for f in service.client.get("/admin/faults", headers=AUTH).json()["active"]] == [
        "cuda_oom"
    ]
    clear(service, "cuda_oom")
    assert service.client.get("/admin/faults", headers=AUTH).json()["active"] == []


# --------------------------------------------------------------------------- traces, metrics, logs


def test_traceparent_propagates_to_logs_and_headers(service: InProcess) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    r = service.client.post(
        "/v1/router",
        json={"text": "where is my order"},
        headers={"traceparent": f"00-{trace_id}-{parent}-01"},
    )
    assert r.headers["x-trace-id"] == trace_id
    assert r.headers["traceparent"].startswith(f"00-{trace_id}-") and parent not in r.headers["traceparent"]
    lines = [ln for ln in service.logs() if ln.get("trace_id") == trace_id]
    assert {ln["message"].split(":")[0] for ln in lines} >= {"routed request", "request completed"}
    for ln in lines:
        assert ln["parent_span_id"] == parent and ln["version"] == "stable" and ln["channel"] == "router"
        assert {"ts", "level", "message", "span_id"} <= set(ln)
    # no or invalid traceparent: a fresh trace id, still in header and logs
    for hdr in ({}, {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, {"traceparent": "garbage"}):
        r = service.client.post("/v1/chat", json={"message": "hi"}, headers=hdr)
        tid = r.headers["x-trace-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", tid) and tid != "0" * 32
        assert any(ln.get("trace_id") == tid for ln in service.logs())


def test_metrics_names_labels_and_tenant_bound(make_service: Any) -> None:
    svc = make_service(max_tenants=3)
    for i in range(6):
        svc.client.post("/v1/chat", json={"message": "hi"}, headers={"X-Tenant": f"t{i}"})
    svc.client.post("/v1/chat", json={"message": "hi"})
    svc.client.post("/v1/embeddings/image", json={"images": ["bad"]}, headers={"X-Tenant": "bad tenant!"})
    text = svc.metrics()
    for name in (
        "testbed_request_duration_seconds_bucket",
        "testbed_requests_total",
        "testbed_request_errors_total",
        "testbed_model_loaded",
        "testbed_module_status",
        "testbed_inflight_requests",
        "testbed_model_inference_seconds_bucket",
        "process_resident_memory_bytes",
    ):
        assert name in text, name
    assert 'le="0.005"' in text and 'le="30.0"' in text
    tenants = set(re.findall(r'testbed_requests_total\{[^}]*tenant="([^"]+)"', text))
    # "default" holds a slot from the start (its series are pre-created); the 3rd+ named tenant and
    # malformed ones fold into "other".
    assert tenants == {"default", "t0", "t1", "other"}
    assert metric_value(text, "testbed_requests_total", channel="text", code="200", version="stable") == 7
    assert metric_value(text, "testbed_request_errors_total", channel="image", code="400") == 1
    assert metric_value(text, "testbed_model_loaded", model="clip-shapes") == 1


def test_logs_are_json_lines_with_required_fields(service: InProcess) -> None:
    service.client.post("/v1/embeddings/text", json={"texts": ["x"]}, headers={"X-Tenant": "acme"})
    line = [ln for ln in service.logs() if ln["message"] == "request completed"][-1]
    assert {"ts", "level", "version", "channel", "trace_id", "message"} <= set(line)
    assert line["channel"] == "text" and line["tenant"] == "acme" and line["status"] == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])


# --------------------------------------------------------------------------- faults, one by one


def test_embedding_dim_mismatch(service: InProcess) -> None:
    base = image_emb(service)
    set_fault(service, fault="embedding_dim_mismatch", magnitude=512)
    assert image_emb(service).shape == (2, 512)
    assert text_emb(service).shape == (2, 128)
    assert any(
        "embedding dimension mismatch" in ln["message"] and ln["level"] == "ERROR" for ln in service.logs()
    )
    r = service.client.post("/v1/router", json={"text": "a red circle", "image_b64": shape_png()})
    assert r.status_code == 500 and "embedding dimension mismatch" in r.json()["error"]
    clear(service)
    assert np.allclose(image_emb(service), base, atol=1e-6)


def test_image_text_misalignment(service: InProcess) -> None:
    base = image_emb(service)
    set_fault(service, fault="image_text_misalignment")
    moved = image_emb(service)
    assert moved.shape == base.shape
    assert float(np.mean(np.sum(moved * base, axis=1))) < 0.5
    assert np.allclose(text_emb(service), text_emb(service))  # text side untouched
    assert not [ln for ln in service.logs() if ln["level"] in ("ERROR", "WARNING")]
    clear(service)
    assert np.allclose(image_emb(service), base, atol=1e-6)


def test_audio_timeout(service: InProcess) -> None:
    set_fault(service, fault="audio_timeout", magnitude=0.4)
    t0 = time.perf_counter()
    r = transcribe(service)
    assert r.status_code == 504 and 0.35 < time.perf_counter() - t0 < 5
    r2 = service.client.post("/v1/router", json={"audio_b64": b64(sine_wav())})
    assert r2.status_code == 504
    timeouts = [ln for ln in service.logs() if "ffmpeg subprocess timeout" in ln["message"]]
    assert len(timeouts) == 2 and all(ln["level"] == "ERROR" for ln in timeouts)
    assert {ln["channel"] for ln in timeouts} == {"audio", "router"}
    assert metric_value(service.metrics(), "testbed_requests_total", channel="audio", code="504") == 1
    assert service.backends.calls.count("whisper") == 0
    clear(service)
    assert transcribe(service).status_code == 200


def test_asr_degraded_adds_noise_before_transcription(make_service: Any) -> None:
    from tests.testbed.conftest import FakeBackends

    seen: list[np.ndarray] = []

    class Recording(FakeBackends):
        def transcribe(self, audio: np.ndarray, language: str | None) -> dict[str, Any]:
            seen.append(audio.copy())
            return super().transcribe(audio, language)

    svc = make_service(backends=Recording())
    assert transcribe(svc).status_code == 200
    set_fault(svc, fault="asr_degraded", magnitude=0.0)
    assert transcribe(svc).status_code == 200
    clean, noisy = seen
    snr = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
    assert snr == pytest.approx(0.0, abs=1.0)
    clear(svc)
    assert transcribe(svc).status_code == 200
    assert np.array_equal(seen[2], clean)


def test_latency_spike_on_one_channel(service: InProcess) -> None:
    def timed(fn: Any) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    set_fault(service, fault="latency_spike", channel="image", magnitude=1200)
    assert timed(lambda: image_emb(service)) >= 1.2
    assert timed(lambda: text_emb(service)) < 0.5
    text = service.metrics()
    assert metric_value(text, "testbed_request_duration_seconds_sum", channel="image") >= 1.2
    # 1.2 s > the 1 s slow threshold of the image channel
    assert any(ln["message"].startswith("slow request") and ln["channel"] == "image" for ln in service.logs())
    clear(service)
    assert timed(lambda: image_emb(service)) < 0.5


def test_error_burst_share(service: InProcess) -> None:
    set_fault(service, fault="error_burst", channel="text", magnitude=0.5)
    codes = [service.client.post("/v1/chat", json={"message": "hi"}).status_code for _ in range(200)]
    assert set(codes) == {200, 500}
    assert 0.38 < codes.count(500) / 200 < 0.62
    assert image_emb(service).shape[0] == 2  # other channels untouched
    text = service.metrics()
    assert metric_value(text, "testbed_requests_total", channel="text", code="500") == codes.count(500)
    assert metric_value(text, "testbed_request_errors_total", channel="text", code="500") == codes.count(500)
    errs = [ln for ln in service.logs() if "HTTP 500 internal server error" in ln["message"]]
    assert len(errs) == codes.count(500)
    clear(service)
    assert all(service.client.post("/v1/chat", json={"message": "hi"}).status_code == 200 for _ in range(20))


def test_cuda_oom(service: InProcess) -> None:
    set_fault(service, fault="cuda_oom", channel="image")
    r = service.client.post("/v1/embeddings/image", json={"images": [shape_png()]})
    assert r.status_code == 500 and "CUDA out of memory" in r.json()["error"]
    # the image model fails on the router path too; text is untouched; health stays shallow-ready
    assert service.client.post("/v1/router", json={"text": "x", "image_b64": shape_png()}).status_code == 500
    assert text_emb(service).shape == (2, 128)
    assert service.client.get("/v1/health").json()["status"] == "ready"
    oom = [ln for ln in service.logs() if "CUDA out of memory" in ln["message"]]
    assert len(oom) == 2 and oom[0]["level"] == "ERROR" and "OutOfMemoryError" in oom[0]["message"]
    clear(service)
    assert image_emb(service).shape == (2, 128)


def test_router_degraded(service: InProcess) -> None:
    set_fault(service, fault="router_degraded", magnitude=0.5)
    h = service.client.get("/v1/health").json()
    assert h["status"] == "degraded" and h["modules"]["multimodal_router"] == "degraded"
    routes = [
        tuple(service.client.post("/v1/router", json={"text": "where is my order"}).json()["route"])
        for _ in range(120)
    ]
    wrong = sum(r != ("llm",) for r in routes) / len(routes)
    assert 0.3 < wrong < 0.7
    assert (
        metric_value(
            service.metrics(), "testbed_module_status", module="multimodal_router", status="degraded"
        )
        == 1
    )
    clear(service)
    assert service.client.get("/v1/health").json()["status"] == "ready"
    assert all(
        service.client.post("/v1/router", json={"text": "x"}).json()["route"] == ["llm"] for _ in range(20)
    )


@pytest.mark.parametrize(
    ("channel", "model", "module", "path", "body"),
    [
        ("image", "clip-shapes", "embedding", "/v1/embeddings/image", {"images": ["iVBORw0KGgo="]}),
        ("audio", "whisper-base", "audio_processor", "/v1/audio/transcriptions", {"audio_b64": "UklGRg=="}),
        ("text", "all-MiniLM-L6-v2", "llm", "/v1/chat", {"message": "hi"}),
    ],
)
def test_model_not_loaded(
    service: InProcess, channel: str, model: str, module: str, path: str, body: Any
) -> None:
    set_fault(service, fault="model_not_loaded", channel=channel)
    h = service.client.get("/v1/health").json()
    assert h["status"] == "error" and h["modules"][module] == "error"
    st = next(m for m in h["models"] if m["name"] == model)
    assert st["loaded"] is False and st["checksum_ok"] is False and "checksum mismatch" in st["error"]
    assert st["sha256"] != st["expected_sha256"]
    if path == "/v1/embeddings/image":
        body = {"images": [shape_png()]}
    if path == "/v1/audio/transcriptions":
        body = {"audio_b64": b64(sine_wav())}
    r = service.client.post(path, json=body)
    assert r.status_code == 503 and "model not loaded" in r.json()["error"]
    assert metric_value(service.metrics(), "testbed_model_loaded", model=model, module=module) == 0
    msgs = [ln["message"] for ln in service.logs() if ln["level"] == "ERROR"]
    assert any(m.startswith(f"failed to load model {model}: checksum mismatch") for m in msgs)
    clear(service)
    h = service.client.get("/v1/health").json()
    assert h["status"] == "ready"
    assert service.client.post(path, json=body).status_code == 200
    assert metric_value(service.metrics(), "testbed_model_loaded", model=model, module=module) == 1


def test_embedding_drift_grows_with_time(service: InProcess) -> None:
    base_img, base_txt = image_emb(service), text_emb(service)
    set_fault(service, fault="embedding_drift", magnitude=0.3)
    early = image_emb(service)
    fault = service.service.faults.get("embedding_drift")
    fault.started_mono -= 600  # ten minutes later
    late = image_emb(service)

    def sim(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.sum(a * b, axis=1)))

    assert 1 - 1e-4 > sim(early, base_img) > sim(late, base_img)
    assert sim(late, base_img) < 0.5
    assert sim(text_emb(service), base_txt) < 0.5  # text drifts too (no channel given)
    assert not [ln for ln in service.logs() if ln["level"] in ("ERROR", "WARNING")]
    clear(service)
    assert np.allclose(image_emb(service), base_img, atol=1e-6)


PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
CN_ID = re.compile(r"(?<!\d)\d{17}[\dX](?!\d)")
CARD = re.compile(r"(?<!\d)\d{16}(?!\d)")
EMAIL = re.compile(r"[\w.]+@[\w.]+\.\w+")


def test_pii_in_logs(service: InProcess) -> None:
    service.client.post("/v1/chat", json={"message": "hi"})
    assert not any(PHONE.search(ln["message"]) or EMAIL.search(ln["message"]) for ln in service.logs())
    set_fault(service, fault="pii_in_logs", channel="text")
    for _ in range(3):
        service.client.post("/v1/chat", json={"message": "hi"})
    leaked = [ln for ln in service.logs() if "caller profile" in ln["message"]]
    assert len(leaked) == 3
    for ln in leaked:
        msg = ln["message"]
        assert PHONE.search(msg) and EMAIL.search(msg)
        assert any(cn_id_valid(m) for m in CN_ID.findall(msg))
        assert any(luhn_valid(m) for m in CARD.findall(msg))
    clear(service)
    n = len(service.logs())
    service.client.post("/v1/chat", json={"message": "hi"})
    assert not any("caller profile" in ln["message"] for ln in service.logs()[n:])


def test_clock_skew(service: InProcess) -> None:
    def stamps() -> tuple[float, float, list[float]]:
        before = time.time()
        r = transcribe(service, seconds=1.0)
        words = [w["start"] for s in r.json()["segments"] for w in s["words"]]
        return before, float(r.json()["timestamp"]), words

    before, ts, words = stamps()
    assert abs(ts - before) < 2 and words[0] == 0.0
    set_fault(service, fault="clock_skew", magnitude=5000)
    before, ts, skewed = stamps()
    assert ts - before == pytest.approx(5.0, abs=1.5)
    assert skewed[0] == pytest.approx(5.0, abs=1e-3)
    assert np.allclose(np.array(skewed) - np.array(words), 5.0, atol=1e-3)
    r = service.client.post("/v1/chat", json={"message": "hi"})
    assert float(r.headers["x-server-time"]) - time.time() == pytest.approx(5.0, abs=1.5)
    from datetime import datetime

    last = service.logs()[-1]
    logged = datetime.fromisoformat(last["ts"].replace("Z", "+00:00")).timestamp()
    assert logged - time.time() == pytest.approx(5.0, abs=1.5)
    clear(service)
    _, ts, words2 = stamps()
    assert abs(ts - time.time()) < 2 and words2 == words
