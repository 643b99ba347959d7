"""Priority-matrix classification of real testbed log lines, one scenario per fault, and trace paths."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import timedelta

import pytest

from diagnostics.golden_window.log_classify import LogClassification, classify_logs, headline
from diagnostics.runbooks.schemas import PriorityMatrix
from diagnostics.sources.logs.files import FileLogSource
from diagnostics.sources.logs.records import LogQuery
from testbed.faults import make_pii
from testbed.logs import fields
from tests.diagnostics.sources.logs.testbed_logs import (
    AUDIO_TIMEOUT,
    CHECKSUM,
    CUDA_OOM,
    DIM_MISMATCH_ENCODER,
    DIM_MISMATCH_ROUTER,
    ERROR_BURST,
    MODEL_NOT_LOADED,
    T0,
    Testbed,
)


def classify(tb: Testbed, matrix: PriorityMatrix, query: LogQuery) -> LogClassification:
    tb.close()
    read = FileLogSource([str(tb.folder / "testbed-*.jsonl")]).read(query)
    return classify_logs(read, matrix)


# --- one scenario per fault, with the exact lines testbed/service.py writes ---------------------------


def embedding_dim_mismatch(tb: Testbed) -> None:
    for _ in range(3):  # router image+text requests on the canary fail 500
        tb.request(
            "canary",
            "/v1/router",
            status=500,
            route="embedding",
            inputs="text+image",
            errors=((DIM_MISMATCH_ENCODER, {}), (DIM_MISMATCH_ROUTER, {})),
        )


def audio_timeout(tb: Testbed) -> None:
    for _ in range(2):
        tb.request(
            "canary",
            "/v1/audio/transcriptions",
            status=504,
            latency_ms=2010,
            errors=((AUDIO_TIMEOUT, {"module": "audio_processor"}),),
        )


def cuda_oom(tb: Testbed) -> None:
    for _ in range(2):
        tb.request(
            "canary", "/v1/audio/transcriptions", status=500, errors=((CUDA_OOM, {"model": "whisper-base"}),)
        )


def model_not_loaded(tb: Testbed) -> None:
    tb.w["canary"].log(logging.ERROR, f"failed to load model clip-shapes: {CHECKSUM}", event="model_load")
    for _ in range(2):
        tb.request(
            "canary",
            "/v1/embeddings/image",
            status=503,
            errors=((MODEL_NOT_LOADED, {"model": "clip-shapes"}),),
        )


def error_burst(tb: Testbed) -> None:
    for _ in range(4):
        tb.request(
            "canary",
            "/v1/embeddings/text",
            status=500,
            errors=((ERROR_BURST.format(module="embedding"), {"module": "embedding"}),),
        )


def latency_spike(tb: Testbed) -> None:
    for _ in range(3):
        tb.request("canary", "/v1/embeddings/image", latency_ms=1620.4, slow_threshold_ms=1000)


SCENARIOS: dict[str, tuple[Callable[[Testbed], None], str, str, str, set[str]]] = {
    # fault: (writer, expected top problem, its severity, its first component, every problem found)
    "embedding_dim_mismatch": (
        embedding_dim_mismatch,
        "embedding_dim_mismatch",
        "critical",
        "multimodal_router",
        {"embedding_dim_mismatch", "http_5xx_burst"},
    ),
    "audio_timeout": (
        audio_timeout,
        "audio_timeout",
        "high",
        "audio_processor",
        {"audio_timeout", "http_5xx_burst"},
    ),
    "cuda_oom": (cuda_oom, "cuda_oom", "critical", "audio_processor", {"cuda_oom", "http_5xx_burst"}),
    "model_not_loaded": (
        model_not_loaded,
        "model_not_loaded",
        "critical",
        "embedding",
        {"model_not_loaded", "http_5xx_burst"},
    ),
    # The 500s are logged by the embedding module: it, not the matrix's first component (gateway), is
    # where the burst happens.
    "error_burst": (error_burst, "http_5xx_burst", "high", "embedding", {"http_5xx_burst"}),
    "latency_spike": (
        latency_spike,
        "latency_sla_breach",
        "medium",
        "multimodal_router",
        {"latency_sla_breach"},
    ),
}


@pytest.mark.parametrize("fault", list(SCENARIOS))
def test_each_fault_is_classified(
    fault: str, testbed: Testbed, matrix: PriorityMatrix, window: LogQuery
) -> None:
    write, top, severity, component, found = SCENARIOS[fault]
    testbed.healthy_traffic(12)
    write(testbed)
    testbed.healthy_traffic(4)
    result = classify(testbed, matrix, window)
    assert {p.id for p in result.problems} == found
    first = result.problems[0]
    blamed = first.logged_by() or first.first_component  # what the finding names (test_check.py)
    assert (first.id, first.severity.value, blamed.value) == (top, severity, component)
    assert first.versions.keys() <= {"canary", "gateway"}
    assert first.samples and all(s.startswith("12:00:") for s in first.samples)
    assert result.unclassified.count == 0


def test_counts_times_and_where(testbed: Testbed, matrix: PriorityMatrix, window: LogQuery) -> None:
    testbed.healthy_traffic(5)
    embedding_dim_mismatch(testbed)
    result = classify(testbed, matrix, window)
    dim = next(p for p in result.problems if p.id == "embedding_dim_mismatch")
    assert dim.count == 6  # two ERROR lines per request, three requests
    assert dim.where == {"canary/router": 6}
    assert dim.action == matrix.get("embedding_dim_mismatch").action  # type: ignore[union-attr]
    assert dim.runbook == "embedding_dim_mismatch.md"
    # Distinct samples: the encoder's line and the router's line, not three copies.
    assert [s.split(" ERROR ")[1] for s in dim.samples] == [DIM_MISMATCH_ENCODER, DIM_MISMATCH_ROUTER]
    assert dim.first_seen < dim.last_seen
    burst = next(p for p in result.problems if p.id == "http_5xx_burst")
    assert burst.count == 6  # "request failed: HTTP 500" + the gateway's "proxied … HTTP 500" per request
    assert burst.versions == {"canary": 3, "gateway": 3}
    assert burst.served_by == {"canary": 6}  # the gateway's lines name the upstream that failed
    assert result.error_lines == 12 and result.lines == 5 * 2 + 3 * 5 + 1  # one routed line in healthy
    assert result.failing_traces == 3


def test_healthy_logs_have_no_findings(testbed: Testbed, matrix: PriorityMatrix, window: LogQuery) -> None:
    testbed.healthy_traffic(20)
    testbed.w["gateway"].log(
        logging.WARNING, "routing changed: canary_weight 10 -> 0, strategy percentage -> percentage"
    )
    testbed.w["stable"].log(logging.INFO, "model loaded: clip-shapes in 1.20 s (sha256 %s)", "c" * 64)
    # INFO lines are not classified even when their text has a keyword (e.g. a user's question)
    testbed.w["stable"].log(logging.INFO, "chat matched: why is my upload so slow request timeout")
    result = classify(testbed, matrix, window)
    assert result.problems == [] and result.unclassified.count == 0
    assert result.failing_traces == 0 and result.trace_paths == []
    assert result.lines == 20 * 2 + 4 + 3
    assert result.levels == {"INFO": 46, "WARNING": 1}


def test_unclassified_errors_are_counted(testbed: Testbed, matrix: PriorityMatrix, window: LogQuery) -> None:
    testbed.healthy_traffic(3)
    for i in range(3):
        testbed.w["canary"].log(logging.ERROR, "unhandled error: KeyError('tenant_%d')", i, module="llm")
    result = classify(testbed, matrix, window)
    assert result.problems == []
    assert result.unclassified.count == 3
    assert result.unclassified.versions == {"canary": 3}
    # the three lines differ only in a number: one sample, not three copies
    assert result.unclassified.samples == [
        "12:00:01.624 canary/- ERROR unhandled error: KeyError('tenant_0')"
    ]


def test_trace_path_of_a_router_failure(testbed: Testbed, matrix: PriorityMatrix, window: LogQuery) -> None:
    testbed.healthy_traffic(6)
    embedding_dim_mismatch(testbed)
    error_burst(testbed)
    # an audio+image router request that times out in the audio stage never reaches the embedding
    testbed.request(
        "stable",
        "/v1/router",
        status=504,
        route="audio_processor->embedding",
        inputs="audio+image",
        errors=((AUDIO_TIMEOUT, {"module": "audio_processor"}),),
    )
    result = classify(testbed, matrix, window)
    assert result.failing_traces == 8
    paths = {p.path: p for p in result.trace_paths}
    assert list(paths) == [
        "gateway -> canary:/v1/embeddings/text -> embedding (HTTP 500: internal server error in embedding)",
        "gateway -> canary:/v1/router -> multimodal_router -> embedding "
        "(HTTP 500: embedding dimension mismatch)",
        "gateway -> stable:/v1/router -> multimodal_router -> audio_processor "
        "(HTTP 504: ffmpeg subprocess timeout after 2.0 s)",
    ]
    router = paths[list(paths)[1]]
    assert router.count == 3 and router.status == 500 and router.failing_module == "embedding"
    assert router.versions == {"canary": 3} and router.example_trace_id
    assert result.failing_modules == {"canary": {"embedding": 7}, "stable": {"audio_processor": 1}}
    assert result.top_failing_module == {"canary": "embedding", "stable": "audio_processor"}


def test_trace_paths_top_n(testbed: Testbed, matrix: PriorityMatrix, window: LogQuery) -> None:
    for path in ("/v1/chat", "/v1/embeddings/text", "/v1/embeddings/image", "/v1/audio/transcriptions"):
        testbed.request("canary", path, status=500)
    testbed.close()
    read = FileLogSource([str(testbed.folder / "*.jsonl")]).read(window)
    result = classify_logs(read, matrix, top_paths=2)
    assert result.failing_traces == 4 and len(result.trace_paths) == 2
    assert (
        result.trace_paths[0].path
        == "gateway -> canary:/v1/audio/transcriptions -> audio_processor (HTTP 500)"
    )


def test_gateway_only_trace_when_upstream_is_down(
    testbed: Testbed, matrix: PriorityMatrix, window: LogQuery
) -> None:
    from tests.diagnostics.sources.logs.testbed_logs import traced

    with traced("f" * 32, "1" * 16):
        testbed.w["gateway"].log(
            logging.ERROR,
            "upstream error: POST /v1/chat on canary: ConnectError: [Errno 111] Connection refused",
        )
        testbed.w["gateway"].log(
            logging.ERROR, "proxied POST /v1/chat -> canary HTTP 502 in 3.1 ms", upstream="canary", status=502
        )
    result = classify(testbed, matrix, window)
    assert {p.id for p in result.problems} == {"http_5xx_burst", "service_unreachable"}
    assert [p.path for p in result.trace_paths] == ["gateway -> canary:/v1/chat (HTTP 502: upstream error)"]
    assert result.top_failing_module == {"canary": "unknown"}


def test_pii_never_appears_in_samples_or_paths(
    testbed: Testbed, matrix: PriorityMatrix, window: LogQuery
) -> None:
    rng = random.Random(5)
    leaked = []
    for _ in range(5):
        pii = make_pii(rng)
        leaked += [pii.cn_phone, pii.intl_phone, pii.cn_id, pii.email, pii.card]
        tb_trace = testbed.request("canary", "/v1/chat", status=500, leak=pii.as_text())
        assert tb_trace
        testbed.w["canary"].log(logging.ERROR, f"{pii.email}: {ERROR_BURST.format(module='llm')} {pii.card}")
    result = classify(testbed, matrix, window)
    text = result.model_dump_json()
    assert result.problems and result.trace_paths
    for value in leaked:
        assert value not in text
    assert "[phone]" in text and "[email]" in text and "[card]" in text and "[id_card]" in text


def test_headline() -> None:
    assert headline(DIM_MISMATCH_ENCODER) == "embedding dimension mismatch"
    assert headline(CUDA_OOM) == "torch.OutOfMemoryError"
    assert headline(MODEL_NOT_LOADED) == "model not loaded"
    assert headline(ERROR_BURST.format(module="llm")) == "internal server error in llm"
    assert headline("x" * 200).endswith("…") and len(headline("x" * 200)) == 80
    assert headline("mail a.b@example.com failed") == "mail [email] failed"


def test_lines_outside_window_and_without_trace_are_handled(testbed: Testbed, matrix: PriorityMatrix) -> None:
    testbed.w["canary"].logger.error("CUDA out of memory in background job", extra=fields(module="llm"))
    testbed.clock.advance(3_600_000)
    cuda_oom(testbed)
    later = LogQuery(start=T0 + timedelta(minutes=30), end=T0 + timedelta(hours=2))
    result = classify(testbed, matrix, later)
    oom = next(p for p in result.problems if p.id == "cuda_oom")
    assert oom.count == 2  # the first line is outside the window
    assert result.failing_traces == 2
