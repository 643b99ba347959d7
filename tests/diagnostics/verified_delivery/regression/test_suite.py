"""Regression cases judged against their baseline, the scheduled watch's alert, the episodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from diagnostics.verified_delivery.regression.suite import Case, Observation, build_cases, judge_case
from diagnostics.verified_delivery.regression.watch import (
    alert_payload,
    end_episodes,
    episode_start,
    regressions,
)


@pytest.fixture(scope="module")
def cfg():  # type: ignore[no-untyped-def]
    return load_runbooks().regression


def _statuses(rows: list) -> list[tuple[str, Status]]:  # type: ignore[type-arg]
    return [(r.metric, r.status) for r in rows]


def test_the_suite_covers_every_channel_from_the_golden_set(cfg) -> None:  # type: ignore[no-untyped-def]
    from testbed.golden import load_golden

    cases = build_cases(load_golden(), cfg)
    by = {ch: sum(1 for c in cases if c.channel == ch) for ch in ("text", "image", "audio", "router")}
    assert by == {"text": 12 + 16, "image": 16, "audio": 3, "router": 2 + 2 + 1}
    assert len({c.id for c in cases}) == len(cases)  # ids key the baseline


def test_a_chat_case_fails_when_another_question_matches(cfg) -> None:  # type: ignore[no-untyped-def]
    case = Case(id="chat:x", channel="text", kind="chat", text="where is my order")
    base = Observation(id="chat:x", ok=True, latency_ms=30, matched_question="Where is my order?", score=0.8)
    same = base.model_copy(update={"score": 0.78, "latency_ms": 40})
    assert _statuses(judge_case(case, "canary", same, base, cfg)) == [
        ("chat_score", Status.OK),
        ("latency_ms", Status.OK),
    ]
    other = base.model_copy(update={"matched_question": "How do I return an item?"})
    rows = judge_case(case, "canary", other, base, cfg)
    assert rows[0].status is Status.FAILED and "How do I return an item?" in rows[0].detail


def test_an_embedding_case_compares_the_vector_with_the_baseline(cfg) -> None:  # type: ignore[no-untyped-def]
    case = Case(id="image_embedding:i", channel="image", kind="image_embedding", image="x.png")
    base = Observation(id=case.id, ok=True, latency_ms=10, vector=[1.0, 0.0, 0.0])
    near = base.model_copy(update={"vector": [0.999, 0.04, 0.0]})
    far = base.model_copy(update={"vector": [0.0, 1.0, 0.0]})
    wider = base.model_copy(update={"vector": [1.0, 0.0, 0.0, 0.0]})
    assert judge_case(case, "canary", near, base, cfg)[0].status is Status.OK
    rotated = judge_case(case, "canary", far, base, cfg)[0]
    assert rotated.status is Status.FAILED and rotated.value == 0.0
    dim = judge_case(case, "canary", wider, base, cfg)[0]
    assert (dim.metric, dim.status, dim.value, dim.baseline) == ("dimension", Status.FAILED, 4, 3)


def test_failed_requests_fail_slow_ones_degrade_and_missing_baselines_are_not_a_pass(cfg) -> None:  # type: ignore[no-untyped-def]
    case = Case(id="transcription:a", channel="audio", kind="transcription", audio="a.wav", language="en")
    base = Observation(id=case.id, ok=True, latency_ms=2000, error_rate=0.0)
    err = Observation(id=case.id, ok=False, error="HTTP 503: model not loaded")
    assert _statuses(judge_case(case, "canary", err, base, cfg)) == [("request", Status.FAILED)]
    slow = base.model_copy(update={"latency_ms": 2000 * 3 + 251})
    assert _statuses(judge_case(case, "canary", slow, base, cfg)) == [
        ("wer", Status.OK),
        ("latency_ms", Status.DEGRADED),
    ]
    worse = base.model_copy(update={"error_rate": 0.5})
    assert judge_case(case, "canary", worse, base, cfg)[0].status is Status.FAILED
    assert _statuses(judge_case(case, "canary", base, None, cfg)) == [
        ("baseline", Status.INSUFFICIENT_EVIDENCE)
    ]


def test_a_router_case_fails_when_it_dispatches_elsewhere(cfg) -> None:  # type: ignore[no-untyped-def]
    case = Case(id="router_image_text:i", channel="router", kind="router", text="a red circle", image="x.png")
    base = Observation(id=case.id, ok=True, route=["embedding"], similarity=0.93)
    assert (
        judge_case(case, "canary", base.model_copy(update={"route": ["llm"]}), base, cfg)[0].metric == "route"
    )
    low = judge_case(case, "canary", base.model_copy(update={"similarity": 0.2}), base, cfg)[0]
    assert (low.metric, low.status) == ("similarity", Status.FAILED)


def test_only_a_failing_canary_channel_or_level_2_drift_is_a_regression() -> None:
    assert regressions({"channels": {"text": "ok", "image": "degraded"}}, {"text": 1}) == {}
    why = regressions(
        {"channels": {"image": "failed"}, "failing": ["image_embedding:img-000"]}, {"text": 2, "audio": None}
    )
    assert why == {"image": "golden regression failing (image_embedding:img-000)", "text": "drift level 2"}


def test_the_alert_is_a_valid_alertmanager_payload_graded_by_its_severity() -> None:
    import json

    from diagnostics.intake.payload import parse

    payload = alert_payload(
        "testbed",
        "canary",
        {"image": "golden regression failing"},
        starts_at=datetime.now(UTC),
        severity="warning",
    )
    parsed = parse(json.dumps(payload).encode(), "application/json", 1 << 20)
    assert parsed.label("target") == "testbed" and len(parsed.firing) == 1
    again = alert_payload(
        "testbed", "canary", {"image": "still failing"}, starts_at=datetime.now(UTC), severity="warning"
    )
    assert again["alerts"][0]["fingerprint"] == payload["alerts"][0]["fingerprint"]  # same alert: dedup


def test_an_episode_keeps_its_start_until_a_healthy_run_ends_it(tmp_path: Path) -> None:
    t0 = datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert episode_start(tmp_path, "testbed:canary", t0) == t0
    assert episode_start(tmp_path, "testbed:canary", t0 + timedelta(hours=6)) == t0  # the same episode
    assert end_episodes(tmp_path, "testbed") == ["testbed:canary"]
    assert episode_start(tmp_path, "testbed:canary", t0 + timedelta(hours=12)) == t0 + timedelta(hours=12)


# --- a version still loading its models -------------------------------------------------------------


def _health(*statuses: str) -> dict:  # type: ignore[type-arg]
    """A testbed-shaped health body whose models (clip, whisper-base, ...) are in ``statuses``."""
    names = ["clip-shapes", "all-MiniLM-L6-v2", "whisper-base"]
    models = [
        {"key": n, "name": n, "status": s, "loaded": s == "loaded"}
        for n, s in zip(names, statuses, strict=True)
    ]
    overall = "ready" if all(s == "loaded" for s in statuses) else "degraded"
    return {"status": overall, "version": "stable", "modules": {}, "models": models}


def _target_at(url: str):  # type: ignore[no-untyped-def]
    from diagnostics.runbooks.schemas import Endpoint

    target = load_runbooks().targets.get("testbed")
    return target.model_copy(update={"versions": {"stable": Endpoint(base_url=url)}})  # type: ignore[arg-type]


def test_the_wait_ends_as_soon_as_the_models_are_loaded() -> None:
    from diagnostics.verified_delivery.regression.suite import wait_for_models
    from tests.support.http import Canned, canned_server

    answers = iter([_health("loaded", "loaded", "loading"), _health("loaded", "loaded", "loading")])

    def health(_):  # type: ignore[no-untyped-def]
        return Canned(200, next(answers, _health("loaded", "loaded", "loaded")))

    with canned_server({("GET", "/v1/health"): health}) as srv:
        assert wait_for_models(_target_at(srv.url), "stable", 30, poll_s=0.05) == []
        assert len(srv.requests) == 3  # loading, loading, loaded


def test_a_version_still_loading_after_the_wait_is_insufficient_evidence_and_gets_no_requests(
    tmp_path: Path,
) -> None:
    from diagnostics.verified_delivery.regression.suite import run_suite
    from testbed.golden import load_golden
    from tests.support.http import Canned, canned_server

    history = tmp_path / "history.jsonl"
    with canned_server({("GET", "/v1/health"): Canned(200, _health("loaded", "loaded", "loading"))}) as srv:
        result = run_suite(
            load_runbooks(),
            _target_at(srv.url),
            load_golden(),
            "stable",
            trigger="schedule",
            history=history,
            ready_wait_s=0.3,
        )
        assert {r.method for r in srv.requests} == {"GET"}  # no case was sent to a version starting up
    assert result.status is Status.INSUFFICIENT_EVIDENCE and result.cases == []
    assert "still loading whisper-base after 0.3 s" in result.summary
    import json

    (line,) = [json.loads(x) for x in history.read_text().splitlines()]
    assert line["status"] == "insufficient_evidence" and line["trigger"] == "schedule"


def test_a_health_endpoint_that_reports_no_models_is_asked_once_not_waited_for() -> None:
    from diagnostics.verified_delivery.regression.suite import wait_for_models
    from tests.support.http import Canned, canned_server

    with canned_server({("GET", "/v1/health"): Canned(503, {"error": "upstream down"})}) as srv:
        assert wait_for_models(_target_at(srv.url), "stable", 30, poll_s=0.05) == []
        assert len(srv.requests) == 1  # the suite's own requests find out what is wrong
    assert wait_for_models(_target_at("http://127.0.0.1:9"), "stable", 30, poll_s=0.05) == []
