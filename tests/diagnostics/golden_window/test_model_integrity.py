"""model_integrity: a model the health report cannot vouch for is insufficient evidence, not a mismatch.

Real HTTP servers answer recorded testbed health bodies (edited where a service reports less); the
decision is run on the result so "critical -> rollback, unverifiable -> a human decides" is end to end.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from diagnostics.decision.inputs import inputs_from_results
from diagnostics.decision.policy import decide
from diagnostics.golden_window.model_integrity import ModelIntegrityResult, check_models
from diagnostics.incident.results import Status
from diagnostics.incident.summary import summarize
from diagnostics.runbooks import Runbooks, load_runbooks
from diagnostics.runbooks.decision import Outcome
from tests.conftest import free_port
from tests.diagnostics.golden_window.test_health import MODEL_NOT_LOADED, QUICK, READY, serve, target_at


@pytest.fixture(scope="module")
def books() -> Runbooks:
    return load_runbooks()


def without(body: dict[str, Any], model: str, *keys: str) -> dict[str, Any]:
    """``body`` with ``keys`` dropped from ``model``'s entry (a service that reports less)."""
    out = copy.deepcopy(body)
    for entry in out["models"]:
        if entry["name"] == model:
            for key in keys:
                entry.pop(key)
    return out


def decision_on(books: Runbooks, result: ModelIntegrityResult) -> Any:
    summary = summarize("golden_window", [result]).model_dump(mode="json")
    return decide(
        inputs_from_results({"incident_id": "i-1", "target": "testbed"}, None, summary), books.decision
    )


def test_a_model_without_a_reported_sha256_is_unverifiable_not_a_finding(books: Runbooks) -> None:
    canary = without(READY, "clip-shapes", "sha256", "checksum_ok")
    with serve(READY) as s, serve(canary) as c:
        result = check_models(target_at(books, s.url, c.url, s.url), books.priority_matrix, conf=QUICK)
    assert result.status is Status.INSUFFICIENT_EVIDENCE
    assert result.findings == []
    state = next(m for m in result.models if (m.version, m.name) == ("canary", "clip-shapes"))
    assert (state.verdict, state.status, state.loaded, state.reported_sha256) == (
        "unverifiable",
        Status.INSUFFICIENT_EVIDENCE,
        True,
        None,
    )
    assert state.reason == "loaded, but the health report gives no sha256 to compare with the pin"
    assert result.details["unverifiable"] == ["canary/clip-shapes"]
    assert result.summary == (
        "5/6 models verified on canary, stable; 1 unverifiable: canary clip-shapes "
        "(loaded, but the health report gives no sha256 to compare with the pin)"
    )
    decision = decision_on(books, result)
    assert decision.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert any("model_integrity" in r for r in decision.reasons)
    assert not decision.acts_without_human


def test_a_health_report_without_models_names_what_it_lacked(books: Runbooks) -> None:
    canary = {k: v for k, v in READY.items() if k != "models"}
    with serve(READY) as s, serve(canary) as c:
        result = check_models(target_at(books, s.url, c.url, s.url), books.priority_matrix, conf=QUICK)
    assert result.status is Status.INSUFFICIENT_EVIDENCE and result.findings == []
    reasons = [m.reason for m in result.models if m.version == "canary"]
    assert reasons == [
        f"the health report lists no model {name!r} (it lists no models at all)"
        for name in ("clip-shapes", "all-MiniLM-L6-v2", "whisper-base")
    ]


def test_the_testbed_fault_is_still_critical_and_rolls_back(books: Runbooks) -> None:
    # model_not_loaded on the testbed: loaded false and a different sha256 (a mismatch), while
    # another model on the same canary is unverifiable: the real problem wins.
    canary = without(MODEL_NOT_LOADED, "whisper-base", "sha256")
    with serve(READY) as s, serve(canary) as c:
        result = check_models(target_at(books, s.url, c.url, s.url), books.priority_matrix, conf=QUICK)
    assert result.status is Status.FAILED
    [finding] = result.findings
    assert (finding.problem, finding.severity, finding.version, finding.component) == (
        "model_not_loaded",
        "critical",
        "canary",
        "embedding",
    )
    assert finding.evidence.startswith(
        "canary clip-shapes (embedding): sha256 5f1c0a9e3b7d… ≠ pinned 9bdaad55e6ff…"
    )
    assert "; service says: checksum mismatch (expected 9bdaad55" in finding.evidence
    verdicts = {(m.version, m.name): m.verdict for m in result.models}
    assert verdicts[("canary", "clip-shapes")] == "checksum_mismatch"
    assert verdicts[("canary", "whisper-base")] == "unverifiable"
    assert (
        "1 wrong: canary clip-shapes checksum_mismatch; 1 unverifiable: canary whisper-base" in result.summary
    )
    decision = decision_on(books, result)
    assert (decision.outcome, decision.rule) == (Outcome.ROLLBACK, "critical_canary_finding")
    assert decision.rolls_back_without_human


def test_a_model_reported_not_loaded_is_critical(books: Runbooks) -> None:
    canary = copy.deepcopy(READY)
    entry = next(m for m in canary["models"] if m["name"] == "whisper-base")
    entry.update(loaded=False, status="error", error="CUDA out of memory while loading")
    with serve(READY) as s, serve(canary) as c:
        result = check_models(target_at(books, s.url, c.url, s.url), books.priority_matrix, conf=QUICK)
    [finding] = result.findings
    assert (finding.severity, finding.component) == ("critical", "audio_processor")
    assert finding.evidence == (
        "canary whisper-base (audio_processor): the service reports it not loaded; "
        "service says: CUDA out of memory while loading"
    )


def test_a_version_that_did_not_answer_leaves_its_models_unverified(books: Runbooks) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with serve(READY) as s:
        result = check_models(
            target_at(books, s.url, dead, s.url), books.priority_matrix, timeout_s=0.5, conf=QUICK
        )
    assert result.status is Status.INSUFFICIENT_EVIDENCE
    assert result.summary.startswith("3/3 models verified on stable; not checked: canary (ConnectError")
    assert result.details["unanswered"] == [result.summary.split("not checked: ")[1]]
