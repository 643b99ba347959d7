"""health_snapshot and model_integrity against real HTTP servers answering recorded testbed bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from diagnostics.golden_window.health import check_health
from diagnostics.golden_window.model_integrity import check_models, compare
from diagnostics.incident.results import Status
from diagnostics.runbooks import Runbooks, load_runbooks
from diagnostics.runbooks.schemas import ExpectedModel, Target
from tests.conftest import free_port
from tests.support.http import Canned, canned_server

FIXTURES = Path(__file__).parents[1] / "fixtures"
READY = json.loads((FIXTURES / "testbed_health_ready.json").read_text())
MODEL_NOT_LOADED = json.loads((FIXTURES / "testbed_health_model_not_loaded.json").read_text())
GATEWAY = {"status": "ready", "gateway": "ready", "routing": {"canary_weight": 10}, "upstreams": {}}


@pytest.fixture(scope="module")
def books() -> Runbooks:
    return load_runbooks()


def target_at(books: Runbooks, stable: str, canary: str, gateway: str) -> Target:
    data = books.targets.get("testbed").model_dump(mode="json")
    data["versions"]["stable"]["base_url"] = stable
    data["versions"]["canary"]["base_url"] = canary
    data["gateway"]["base_url"] = gateway
    return Target.model_validate(data)


def serve(body: Any, status: int = 200, delay_s: float = 0.0, path: str = "/v1/health") -> Any:
    return canned_server({("GET", path): Canned(status, body, delay_s=delay_s)})


def test_all_ready_is_ok_with_every_module_and_latency(books: Runbooks) -> None:
    with serve(READY) as s, serve({**READY, "version": "canary"}) as c, serve(GATEWAY, path="/health") as g:
        result = check_health(target_at(books, s.url, c.url, g.url), books.priority_matrix)
    assert result.status == Status.OK, result.summary
    assert [e.name for e in result.endpoints] == ["stable", "canary", "gateway"]
    assert result.endpoints[0].modules == {
        k: "ready" for k in ("llm", "embedding", "multimodal_router", "audio_processor")
    }
    assert all(e.latency_ms is not None and e.latency_ms >= 0 for e in result.endpoints)
    assert result.findings == []
    assert result.summary == "testbed: stable ready, canary ready, gateway ready"


def test_a_module_in_error_is_a_finding_on_that_module_and_version(books: Runbooks) -> None:
    with serve(READY) as s, serve(MODEL_NOT_LOADED) as c, serve(GATEWAY, path="/health") as g:
        result = check_health(target_at(books, s.url, c.url, g.url), books.priority_matrix)
    assert result.status == Status.FAILED
    [finding] = result.findings
    assert (finding.problem, finding.component, finding.version) == (
        "module_unhealthy",
        "embedding",
        "canary",
    )
    assert finding.severity == "high"
    assert "checksum mismatch" in finding.evidence


def test_timeouts_bad_json_and_refused_connections_are_findings_not_crashes(books: Runbooks) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with serve("<html>502 Bad Gateway</html>", status=502) as s, serve(READY, delay_s=1.5) as c:
        result = check_health(target_at(books, s.url, c.url, dead), books.priority_matrix, timeout_s=0.5)
    by_name = {e.name: e for e in result.endpoints}
    assert by_name["stable"].reachable and by_name["stable"].error == "HTTP 502, body is not JSON"
    assert not by_name["canary"].reachable and "Timeout" in (by_name["canary"].error or "")
    assert not by_name["gateway"].reachable and "ConnectError" in (by_name["gateway"].error or "")
    assert {f.problem for f in result.findings} == {"service_unreachable"}
    assert len(result.findings) == 3
    assert result.status == Status.FAILED  # stable answered (badly): that is evidence


def test_nothing_answering_is_insufficient_evidence(books: Runbooks) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    result = check_health(target_at(books, *dead), books.priority_matrix, timeout_s=0.5)
    assert result.status == Status.INSUFFICIENT_EVIDENCE
    assert result.summary.startswith("no health endpoint of testbed answered")


def test_model_integrity_ok_when_every_pin_matches(books: Runbooks) -> None:
    with serve(READY) as s, serve(READY) as c:
        result = check_models(target_at(books, s.url, c.url, s.url), books.priority_matrix)
    assert result.status == Status.OK
    assert [(m.version, m.name, m.verdict) for m in result.models] == [
        (v, n, "ok")
        for v in ("stable", "canary")
        for n in ("clip-shapes", "all-MiniLM-L6-v2", "whisper-base")
    ]
    assert result.summary == "6/6 models verified on canary, stable"


def test_model_integrity_names_the_mismatched_model_with_both_checksums(books: Runbooks) -> None:
    with serve(READY) as s, serve(MODEL_NOT_LOADED) as c:
        result = check_models(target_at(books, s.url, c.url, s.url), books.priority_matrix)
    assert result.status == Status.FAILED
    [finding] = result.findings
    assert (finding.problem, finding.component, finding.version) == (
        "model_not_loaded",
        "embedding",
        "canary",
    )
    assert "sha256 5f1c0a9e3b7d… ≠ pinned 9bdaad55e6ff…" in finding.evidence
    assert finding.action.startswith("Compare the loaded model's SHA-256")


def test_model_integrity_without_answers_is_insufficient_evidence(books: Runbooks) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = check_models(target_at(books, dead, dead, dead), books.priority_matrix, timeout_s=0.5)
    assert result.status == Status.INSUFFICIENT_EVIDENCE
    assert result.models == []


@pytest.mark.parametrize(
    ("reported", "verdict"),
    [
        ([{"name": "m", "loaded": True, "sha256": "a" * 64}], "ok"),
        ([{"name": "m", "loaded": True, "sha256": "A" * 64}], "ok"),  # hex case does not matter
        ([{"name": "m", "loaded": True, "sha256": "b" * 64}], "checksum_mismatch"),
        ([{"name": "m", "loaded": False, "sha256": "a" * 64}], "not_loaded"),
        ([{"name": "m", "loaded": True}], "missing"),  # loaded, but unverifiable
        ([{"name": "other", "loaded": True, "sha256": "a" * 64}], "missing"),
        ([], "missing"),
    ],
)
def test_compare_verdicts(reported: list[dict[str, Any]], verdict: str) -> None:
    expected = ExpectedModel(module="embedding", name="m", sha256="a" * 64)
    assert compare("canary", expected, reported).verdict == verdict


def test_an_unpinned_model_is_reported_but_not_a_finding() -> None:
    expected = ExpectedModel(module="llm", name="m", sha256=None)
    assert (
        compare("stable", expected, [{"name": "m", "loaded": True, "sha256": "c" * 64}]).verdict == "unpinned"
    )
