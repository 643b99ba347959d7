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
from diagnostics.runbooks.schemas import ExpectedModel, HealthConfirmation, Target
from tests.conftest import free_port
from tests.support.http import Canned, canned_server

FIXTURES = Path(__file__).parents[1] / "fixtures"
READY = json.loads((FIXTURES / "testbed_health_ready.json").read_text())
MODEL_NOT_LOADED = json.loads((FIXTURES / "testbed_health_model_not_loaded.json").read_text())
GATEWAY = {"status": "ready", "gateway": "ready", "routing": {"canary_weight": 10}, "upstreams": {}}
# The runbook's retry shape with short pauses, so the tests stay fast: 3 tries 0.05 s then 0.1 s apart.
QUICK = HealthConfirmation(tries=3, window_s=2.0, backoff_s=0.05)


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


def test_timeouts_bad_json_and_refused_connections_without_a_second_signal_are_insufficient(
    books: Runbooks,
) -> None:
    # Every try fails, and there is no Prometheus to confirm it: no finding, insufficient evidence.
    dead = f"http://127.0.0.1:{free_port()}"
    with serve("<html>502 Bad Gateway</html>", status=502) as s, serve(READY, delay_s=1.5) as c:
        result = check_health(
            target_at(books, s.url, c.url, dead), books.priority_matrix, timeout_s=0.5, conf=QUICK
        )
        assert len(s.requests) == 3 and len(c.requests) == 3  # every failing endpoint retried
    by_name = {e.name: e for e in result.endpoints}
    assert by_name["stable"].reachable and by_name["stable"].error == "HTTP 502, body is not JSON"
    assert not by_name["canary"].reachable and "Timeout" in (by_name["canary"].error or "")
    assert not by_name["gateway"].reachable and "ConnectError" in (by_name["gateway"].error or "")
    assert {e.reachability for e in result.endpoints} == {"unconfirmed"}
    assert [e.tries for e in result.endpoints] == [3, 3, 3]
    assert by_name["stable"].try_errors == ["HTTP 502, body is not JSON"] * 3
    assert result.findings == []
    assert result.status == Status.INSUFFICIENT_EVIDENCE
    assert result.details["unconfirmed"] == ["stable", "canary", "gateway"]
    assert "stable: 3 tries in " in result.summary
    assert "HTTP 502, body is not JSON (×3)" in result.summary
    confirmation = by_name["canary"].confirmation
    assert confirmation is not None and not confirmation.confirmed
    assert [(r.signal, r.says) for r in confirmation.signals] == [
        ("prometheus_up", "unavailable"),
        ("gateway_upstream_errors", "unavailable"),
    ]
    assert "no Prometheus to ask" in confirmation.reason


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
    result = check_models(
        target_at(books, dead, dead, dead), books.priority_matrix, timeout_s=0.5, conf=QUICK
    )
    assert result.status == Status.INSUFFICIENT_EVIDENCE
    assert result.models == []


@pytest.mark.parametrize(
    ("reported", "verdict", "status"),
    [
        ([{"name": "m", "loaded": True, "sha256": "a" * 64}], "ok", Status.OK),
        ([{"name": "m", "loaded": True, "sha256": "A" * 64}], "ok", Status.OK),  # hex case does not matter
        ([{"name": "m", "loaded": True, "sha256": "b" * 64}], "checksum_mismatch", Status.FAILED),
        # the testbed's model_not_loaded fault: not loaded, and a different sha256
        ([{"name": "m", "loaded": False, "sha256": "b" * 64}], "checksum_mismatch", Status.FAILED),
        ([{"name": "m", "loaded": False, "sha256": "a" * 64}], "not_loaded", Status.FAILED),
        ([{"name": "m", "loaded": False, "sha256": ""}], "not_loaded", Status.FAILED),  # file missing
        # the health report does not say what was loaded: missing evidence, not a mismatch
        ([{"name": "m", "loaded": True}], "unverifiable", Status.INSUFFICIENT_EVIDENCE),
        ([{"name": "m", "loaded": True, "sha256": ""}], "unverifiable", Status.INSUFFICIENT_EVIDENCE),
        ([{"name": "m", "sha256": "a" * 64}], "unverifiable", Status.INSUFFICIENT_EVIDENCE),
        (
            [{"name": "other", "loaded": True, "sha256": "a" * 64}],
            "unverifiable",
            Status.INSUFFICIENT_EVIDENCE,
        ),
        ([], "unverifiable", Status.INSUFFICIENT_EVIDENCE),
    ],
)
def test_compare_verdicts(reported: list[dict[str, Any]], verdict: str, status: Status) -> None:
    expected = ExpectedModel(module="embedding", name="m", sha256="a" * 64)
    state = compare("canary", expected, reported)
    assert (state.verdict, state.status) == (verdict, status)


def test_an_unpinned_model_is_reported_but_not_a_finding() -> None:
    expected = ExpectedModel(module="llm", name="m", sha256=None)
    assert (
        compare("stable", expected, [{"name": "m", "loaded": True, "sha256": "c" * 64}]).verdict == "unpinned"
    )
