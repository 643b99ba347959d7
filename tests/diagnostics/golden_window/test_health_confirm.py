"""A failing health GET is retried and confirmed by a second signal before it is ``service_unreachable``.

Real HTTP servers on loopback: the service's health endpoints (testbed bodies) and a Prometheus HTTP
API answering real-shaped instant vectors. The decision is run on the stored shape of the result, so
"confirmed -> rolls back with no human, unconfirmed -> does not" is asserted end to end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from diagnostics.decision.inputs import inputs_from_results
from diagnostics.decision.policy import decide
from diagnostics.golden_window.health import HealthSnapshot, check_health, fetch_with_retries
from diagnostics.incident.results import Status
from diagnostics.incident.summary import summarize
from diagnostics.runbooks import Runbooks, load_runbooks
from diagnostics.runbooks.decision import Outcome
from diagnostics.runbooks.schemas import Endpoint, HealthConfirmation
from diagnostics.sources.prometheus import PrometheusReader
from tests.conftest import free_port
from tests.diagnostics.golden_window.test_health import GATEWAY, QUICK, READY, serve, target_at
from tests.support.http import Canned, CannedServer, Recorded, canned_server

UP_CANARY = 'up{job="testbed",version="canary"}'
ERRORS_CANARY = (
    'sum(increase(testbed_gateway_upstream_errors_total{job="testbed-gateway",version="canary"}[60s]))'
)


@pytest.fixture(scope="module")
def books() -> Runbooks:
    return load_runbooks()


def series(value: str, **labels: str) -> dict[str, Any]:
    """One sample of an instant vector, as Prometheus' /api/v1/query returns it."""
    return {"metric": labels, "value": [1735732800.0, value]}


def prometheus(answers: dict[str, list[dict[str, Any]]]) -> AbstractContextManager[CannedServer]:
    """A Prometheus HTTP API: each query is answered with the vector of the first pattern it
    contains (an empty vector when none matches)."""

    def answer(req: Recorded) -> Canned:
        query = parse_qs(urlsplit(req.path).query)["query"][0]
        result = next((r for pattern, r in answers.items() if pattern in query), [])
        return Canned(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    return canned_server({("GET", "/api/v1/query"): answer})


def queries(server: CannedServer) -> list[str]:
    return [parse_qs(urlsplit(r.path).query)["query"][0] for r in server.requests]


def flaky(first: Canned, then: Canned) -> Any:
    """A health route whose first answer is ``first`` and every later one ``then``."""
    seen: list[str] = []

    def route(req: Recorded) -> Canned:
        seen.append(req.path)
        return first if len(seen) == 1 else then

    return route


def decision_on(books: Runbooks, result: HealthSnapshot) -> Any:
    """The decision phase 1's summary of this one result leads to (no metrics: they are missing)."""
    summary = summarize("golden_window", [result]).model_dump(mode="json")
    inputs = inputs_from_results({"incident_id": "i-1", "target": "testbed"}, None, summary)
    return decide(inputs, books.decision)


@pytest.fixture
def healthy_stable_and_gateway() -> Iterator[tuple[CannedServer, CannedServer]]:
    with serve(READY) as s, serve(GATEWAY, path="/health") as g:
        yield s, g


def test_a_healthy_first_get_costs_no_retry_and_no_prometheus_query(books: Runbooks) -> None:
    with (
        prometheus({}) as prom,
        serve(READY) as s,
        serve({**READY, "version": "canary"}) as c,
        serve(GATEWAY, path="/health") as g,
    ):
        target = target_at(books, s.url, c.url, g.url)
        result = check_health(target, books.priority_matrix, conf=QUICK, reader=PrometheusReader(prom.url))
        assert [len(x.requests) for x in (s, c, g)] == [1, 1, 1]
        assert prom.requests == []
    assert result.status is Status.OK
    assert [(e.reachability, e.tries, e.try_errors) for e in result.endpoints] == [("answered", 1, [])] * 3


def test_a_timeout_or_bad_json_once_then_healthy_is_not_unreachable(books: Runbooks) -> None:
    timeout_once = flaky(Canned(200, READY, delay_s=1.0), Canned(200, READY))
    bad_json_once = flaky(Canned(200, "<html>starting</html>"), Canned(200, {**READY, "version": "canary"}))
    with (
        prometheus({}) as prom,
        canned_server({("GET", "/v1/health"): timeout_once}) as s,
        canned_server({("GET", "/v1/health"): bad_json_once}) as c,
        serve(GATEWAY, path="/health") as g,
    ):
        result = check_health(
            target_at(books, s.url, c.url, g.url),
            books.priority_matrix,
            timeout_s=0.4,
            conf=QUICK,
            reader=PrometheusReader(prom.url),
        )
        assert prom.requests == []  # a version that answered needs no second signal
    assert result.status is Status.OK, result.summary
    assert result.findings == []
    stable, canary, _ = result.endpoints
    assert (stable.reachability, stable.tries, stable.status) == ("recovered", 2, "ready")
    assert len(stable.try_errors) == 1 and "ReadTimeout" in stable.try_errors[0]
    assert (canary.reachability, canary.tries, canary.try_errors) == (
        "recovered",
        2,
        ["HTTP 200, body is not JSON"],
    )
    assert stable.elapsed_ms is not None and 400 <= stable.elapsed_ms < 2000  # one timeout + one pause
    assert result.summary == (
        "testbed: stable ready (after 2 tries), canary ready (after 2 tries), gateway ready"
    )


def test_a_canary_down_with_up_0_is_a_confirmed_critical_finding_that_rolls_back(
    books: Runbooks, healthy_stable_and_gateway: tuple[CannedServer, CannedServer]
) -> None:
    s, g = healthy_stable_and_gateway
    dead = f"http://127.0.0.1:{free_port()}"
    up = {UP_CANARY: [series("0", __name__="up", instance="127.0.0.1:8102", job="testbed", version="canary")]}
    with prometheus(up) as prom:
        result = check_health(
            target_at(books, s.url, dead, g.url),
            books.priority_matrix,
            conf=QUICK,
            reader=PrometheusReader(prom.url),
        )
        assert queries(prom) == [UP_CANARY, ERRORS_CANARY]  # one reading per signal, only for the canary
    assert result.status is Status.FAILED
    assert result.details["confirmed_down"] == ["canary"] and result.details["unconfirmed"] == []
    [finding] = result.findings
    assert (finding.problem, finding.severity, finding.version, finding.component) == (
        "service_unreachable",
        "critical",
        "canary",
        "infrastructure",
    )
    assert f"canary health at {dead}/v1/health does not answer after 3 tries in " in finding.evidence
    assert "ConnectError: [Errno 111] Connection refused (×3)" in finding.evidence
    assert f"confirmed by prometheus_up down: {UP_CANARY} = 0" in finding.evidence
    assert "gateway_upstream_errors silent: no gateway upstream errors to canary in 60 s" in finding.evidence
    canary = result.endpoints[1]
    assert canary.confirmation is not None and canary.confirmation.confirmed
    assert [(r.signal, r.says, r.value) for r in canary.confirmation.signals] == [
        ("prometheus_up", "down", 0.0),
        ("gateway_upstream_errors", "silent", None),
    ]
    decision = decision_on(books, result)
    assert (decision.outcome, decision.rule) == (Outcome.ROLLBACK, "critical_canary_finding")
    assert decision.rolls_back_without_human


def test_the_gateways_upstream_errors_confirm_when_up_has_no_series(
    books: Runbooks, healthy_stable_and_gateway: tuple[CannedServer, CannedServer]
) -> None:
    s, g = healthy_stable_and_gateway
    dead = f"http://127.0.0.1:{free_port()}"
    with prometheus({"upstream_errors": [series("7.2")]}) as prom:
        result = check_health(
            target_at(books, s.url, dead, g.url),
            books.priority_matrix,
            conf=QUICK,
            reader=PrometheusReader(prom.url),
        )
    [finding] = result.findings
    assert finding.severity == "critical" and finding.version == "canary"
    assert f"prometheus_up silent: {UP_CANARY}: no series" in finding.evidence
    assert "the gateway counted 7 upstream errors to canary in 60 s" in finding.evidence


def test_up_1_contradicts_a_failing_health_endpoint(books: Runbooks) -> None:
    # The process answers Prometheus' scrapes but its health answers garbage: not "unreachable".
    up = {UP_CANARY: [series("1", job="testbed", version="canary")], "upstream_errors": [series("3")]}
    with (
        prometheus(up) as prom,
        serve(READY) as s,
        serve("<html>oops</html>") as c,
        serve(GATEWAY, path="/health") as g,
    ):
        result = check_health(
            target_at(books, s.url, c.url, g.url),
            books.priority_matrix,
            conf=QUICK,
            reader=PrometheusReader(prom.url),
        )
    assert result.status is Status.INSUFFICIENT_EVIDENCE
    assert result.findings == []
    canary = result.endpoints[1]
    assert canary.reachability == "unconfirmed" and canary.tries == 3
    assert canary.confirmation is not None
    assert canary.confirmation.reason.startswith("not confirmed (contradicted): ")
    assert f"prometheus_up up: {UP_CANARY} = 1" in result.summary
    assert "canary: 3 tries in " in result.summary and "HTTP 200, body is not JSON (×3)" in result.summary
    decision = decision_on(books, result)
    assert decision.outcome is not Outcome.ROLLBACK
    assert not decision.acts_without_human


def test_always_failing_with_prometheus_unreachable_is_unconfirmed_insufficient_evidence(
    books: Runbooks, healthy_stable_and_gateway: tuple[CannedServer, CannedServer]
) -> None:
    s, g = healthy_stable_and_gateway
    dead, prom = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    result = check_health(
        target_at(books, s.url, dead, g.url),
        books.priority_matrix,
        conf=QUICK,
        reader=PrometheusReader(prom, timeout_s=1),
    )
    assert result.status is Status.INSUFFICIENT_EVIDENCE
    assert result.findings == []
    assert result.details["unconfirmed"] == ["canary"]
    canary = result.endpoints[1]
    assert (canary.reachability, canary.tries, canary.reachable) == ("unconfirmed", 3, False)
    assert canary.confirmation is not None
    assert [(r.signal, r.says) for r in canary.confirmation.signals] == [
        ("prometheus_up", "unavailable"),
        ("gateway_upstream_errors", "unavailable"),
    ]
    assert result.summary.startswith(
        "testbed: stable ready, canary failing (unconfirmed), gateway ready; unconfirmed, insufficient "
        "evidence - canary: 3 tries in "
    )
    assert "ConnectError: [Errno 111] Connection refused (×3)" in result.summary
    assert f"Prometheus unavailable: cannot reach Prometheus at {prom}" in result.summary
    decision = decision_on(books, result)
    assert decision.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert any("health_snapshot" in r for r in decision.reasons)
    assert not decision.acts_without_human


def test_retries_stop_at_the_window() -> None:
    # Pauses 0.2 s then 0.4 s: the third try would start 0.6 s after the first, past the 0.3 s window.
    conf = HealthConfirmation(tries=10, window_s=0.3, backoff_s=0.2)
    endpoint = Endpoint.model_validate({"base_url": f"http://127.0.0.1:{free_port()}"})
    started = time.monotonic()
    with httpx.Client(timeout=0.5) as client:
        ep = fetch_with_retries("canary", endpoint, client, conf)
    assert (ep.tries, ep.reachability, len(ep.try_errors)) == (2, "unconfirmed", 2)
    assert time.monotonic() - started < 1.0
    assert ep.elapsed_ms is not None and ep.elapsed_ms >= 200


def test_the_runbook_sets_three_tries_within_six_seconds(books: Runbooks) -> None:
    conf = books.thresholds.health_confirmation
    assert (conf.tries, conf.window_s, conf.backoff_s, conf.signal_window_s) == (3, 6.0, 0.5, 60.0)
    target = books.targets.get("testbed")
    assert target.gateway_prometheus_selector == {"job": "testbed-gateway"}
    assert target.metrics.gateway_upstream_errors_total == "testbed_gateway_upstream_errors_total"


def test_pauses_double_from_backoff_and_the_tries_stop_at_the_count() -> None:
    conf = HealthConfirmation(tries=4, window_s=60.0, backoff_s=0.5)
    endpoint = Endpoint.model_validate({"base_url": f"http://127.0.0.1:{free_port()}"})
    pauses: list[float] = []
    with httpx.Client(timeout=0.5) as client:
        ep = fetch_with_retries("canary", endpoint, client, conf, sleep=pauses.append)
    assert pauses == [0.5, 1.0, 2.0]  # before tries 2, 3 and 4; none after the last
    assert (ep.tries, ep.reachability, len(ep.try_errors)) == (4, "unconfirmed", 4)
    assert all(e.startswith("ConnectError") for e in ep.try_errors)


def test_a_try_that_answers_ends_the_retries() -> None:
    route = flaky(Canned(503, {"status": "error"}), Canned(200, READY))
    conf = HealthConfirmation(tries=5, window_s=60.0, backoff_s=0.25)
    pauses: list[float] = []
    with canned_server({("GET", "/v1/health"): route}) as s, httpx.Client(timeout=1) as client:
        endpoint = Endpoint.model_validate({"base_url": s.url})
        ep = fetch_with_retries("stable", endpoint, client, conf, sleep=pauses.append)
        assert len(s.requests) == 2
    assert pauses == [0.25]
    assert (ep.tries, ep.reachability, ep.status, ep.try_errors) == (2, "recovered", "ready", ["HTTP 503"])
