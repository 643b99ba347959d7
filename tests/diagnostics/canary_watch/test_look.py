"""One look at Prometheus: four instant queries per target, the recorded answers of a real Prometheus
parsed into each (channel, test)'s counters, and everything missing - a version, a NaN, a bucket, a
whole Prometheus - a pause with its reason, never a number."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import httpx
import pytest

from diagnostics.canary_watch import Counters, CountTestParams, CountWatch, WatchStatus
from diagnostics.canary_watch.look import LookError, build_looks, le_spellings, parse_vector, read_answers
from diagnostics.canary_watch.session import WatchSpec
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.canary_watch import load_canary_watch
from tests.conftest import REPO

HERE = REPO / "tests" / "diagnostics" / "canary_watch"
RECORDED = json.loads((HERE / "data" / "prometheus_look.json").read_text())
SPEC = WatchSpec.from_runbook(
    load_canary_watch(REPO / "runbooks" / "canary_watch.yaml"), load_runbooks().targets.get("testbed")
)
KEYS = [(t.channel, t.test) for t in SPEC.tests]
SEL = 'job="testbed",version=~"canary|stable",channel=~"audio|image|router|text"'


def _answers(edit: Any = None) -> dict[str, Any]:
    """The recorded bodies (edited by ``edit(kind, body)``), parsed."""
    bodies = copy.deepcopy(RECORDED["answers"])
    if edit:
        for kind, body in bodies.items():
            edit(kind, body)
    return {kind: parse_vector(body) for kind, body in bodies.items()}


def _drop(kind: str, version: str, channel: str, le: str | None = None) -> Any:
    def edit(k: str, body: dict[str, Any]) -> None:
        if k == kind:
            body["data"]["result"] = [
                s
                for s in body["data"]["result"]
                if (s["metric"]["version"], s["metric"]["channel"], s["metric"].get("le"))
                != (version, channel, le)
            ]

    return edit


def test_four_instant_queries_read_every_channel_version_and_test_of_a_target() -> None:
    assert SPEC.look.queries == {
        "requests": f"sum by (version, channel) (testbed_requests_total{{{SEL}}})",
        "errors": f"sum by (version, channel) (testbed_request_errors_total{{{SEL}}})",
        "errors_5xx": 'sum by (version, channel) (testbed_requests_total{job="testbed",code=~"5..",'
        'version=~"canary|stable",channel=~"audio|image|router|text"})',
        # the testbed's SLA bounds: 200 ms (text, image), 6 s (audio, router: its CPU override)
        "latency": f"sum by (version, channel, le) (testbed_request_duration_seconds_bucket{{{SEL},"
        f'le=~"0\\\\.2|6|6\\\\.0|\\\\+Inf"}})',
    }
    assert SPEC.look.slow_above_s == {"text": 0.2, "image": 0.2, "router": 6.0, "audio": 6.0}
    assert len(KEYS) == 12


@pytest.mark.parametrize(("bound", "spelled"), [(0.2, ["0.2"]), (6.0, ["6", "6.0"]), (0.35, ["0.35"])])
def test_a_bucket_bound_is_matched_as_go_and_python_exporters_spell_it(
    bound: float, spelled: list[str]
) -> None:
    assert le_spellings(bound) == spelled


def test_the_recorded_answers_give_each_versions_cumulative_counters() -> None:
    looks = build_looks(SPEC.look, KEYS, _answers())
    assert looks[("text", "errors")].canary == Counters(requests=20, events=7)
    assert looks[("text", "errors")].stable == Counters(requests=100, events=2)
    assert looks[("text", "errors_5xx")].canary == Counters(requests=20, events=5)
    assert looks[("text", "sla_slow")].canary == Counters(requests=20, events=4)  # le=0.2 of 20
    assert looks[("text", "sla_slow")].stable == Counters(requests=100, events=3)
    assert looks[("audio", "sla_slow")].canary == Counters(requests=3, events=3)  # le="6.0" read as 6 s
    assert all(look.reason is None for look in looks.values())


def test_a_missing_version_leaves_that_side_empty_with_the_reason() -> None:
    looks = build_looks(SPEC.look, KEYS, _answers(_drop("requests", "canary", "text")))
    look = looks[("text", "errors")]
    assert look.canary is None and look.stable == Counters(requests=100, events=2)
    assert look.reason == "no canary text requests series"
    assert looks[("text", "sla_slow")].canary is not None  # the histogram still answers
    # and the test pauses on it: the look adds no evidence
    watch = CountWatch("errors", "text", "errors", CountTestParams(alpha=0.001))
    step = watch.observe(watch.start(), look)
    assert step.result.status is WatchStatus.PAUSED
    assert step.result.reason == "no canary series: no canary text requests series"


def test_a_nan_value_is_no_number() -> None:
    def nan(kind: str, body: dict[str, Any]) -> None:
        for s in body["data"]["result"]:
            if kind == "requests" and s["metric"] == {"channel": "text", "version": "stable"}:
                s["value"][1] = "NaN"
            if kind == "latency" and s["metric"] == {"channel": "text", "version": "canary", "le": "+Inf"}:
                s["value"][1] = "+Inf"

    looks = build_looks(SPEC.look, KEYS, _answers(nan))
    assert looks[("text", "errors")].stable is None
    assert looks[("text", "errors")].reason == "no stable text requests series (NaN)"
    assert looks[("text", "sla_slow")].canary is None
    assert looks[("text", "sla_slow")].reason == "no canary text latency histogram (+Inf bucket) (NaN)"


def test_an_absent_events_series_counts_zero_but_an_absent_sla_bucket_pauses() -> None:
    looks = build_looks(SPEC.look, KEYS, _answers(_drop("errors", "canary", "text")))
    assert looks[("text", "errors")].canary == Counters(requests=20, events=0)  # no error yet
    looks = build_looks(SPEC.look, KEYS, _answers(_drop("latency", "canary", "text", "0.2")))
    assert looks[("text", "sla_slow")].canary is None
    assert looks[("text", "sla_slow")].reason == (
        "no canary text bucket le=0.2 s: the SLA bound must be a bucket bound"
    )


def test_an_unsummed_answer_pauses_instead_of_counting_one_series() -> None:
    def twice(kind: str, body: dict[str, Any]) -> None:
        if kind == "requests":
            body["data"]["result"].append(copy.deepcopy(body["data"]["result"][0]))

    looks = build_looks(SPEC.look, KEYS, _answers(twice))
    assert looks[("audio", "errors")].canary is None
    assert looks[("audio", "errors")].reason is not None
    assert "two series for canary/audio" in looks[("audio", "errors")].reason


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error at char 7"}, "parse error"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "'matrix'"),
        ([], "not a JSON object"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "2"]}]}}, "labels"),
        (
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": 3}]}},
            "value",
        ),
    ],
)
def test_a_body_that_is_not_an_instant_vector_is_a_look_error(body: Any, words: str) -> None:
    with pytest.raises(LookError, match=words):
        parse_vector(body)


def _mock(handler: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await read_answers(client, "http://prom:9090/", SPEC.look, 1_700_000_000.25, timeout_s=2.0)

    return asyncio.run(go())


def test_the_reader_asks_the_four_queries_at_one_time_and_parses_them() -> None:
    seen: list[httpx.Request] = []
    by_query = {q: RECORDED["answers"][k] for k, q in SPEC.look.queries.items()}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=by_query[request.url.params["query"]])

    answers = _mock(handler)
    assert {r.url.path for r in seen} == {"/api/v1/query"}
    assert {r.url.params["time"] for r in seen} == {"1700000000.250"}
    assert sorted(r.url.params["query"] for r in seen) == sorted(SPEC.look.queries.values())
    assert build_looks(SPEC.look, KEYS, answers) == build_looks(SPEC.look, KEYS, _answers())


def test_every_failure_of_prometheus_is_an_answer_never_an_exception() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        if query == SPEC.look.queries["requests"]:
            raise httpx.ReadTimeout("slow", request=request)
        if query == SPEC.look.queries["errors"]:
            return httpx.Response(503, text="<html>unavailable</html>")
        if query == SPEC.look.queries["errors_5xx"]:
            return httpx.Response(400, json={"status": "error", "error": "bad_data: parse error"})
        raise httpx.ConnectError("refused", request=request)

    assert _mock(handler) == {
        "requests": "Prometheus did not answer within 2 s",
        "errors": "HTTP 503, not JSON",
        "errors_5xx": "HTTP 400: Prometheus answered 'bad_data: parse error'",
        "latency": "Prometheus unreachable (ConnectError)",
    }
