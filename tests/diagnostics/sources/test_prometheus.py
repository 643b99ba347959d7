"""PromQL building and escaping, and every way Prometheus can fail becoming insufficient evidence."""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from diagnostics.golden_window.canary_gate import GateVerdict
from diagnostics.golden_window.metrics_sla import check_metrics_sla
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import MetricNames, Target
from diagnostics.sources.prometheus import (
    InvalidSelector,
    PrometheusQueryError,
    PrometheusReader,
    PrometheusTimeout,
    PrometheusUnavailable,
    PromQL,
    Sample,
    duration,
    increase_total,
    matchers,
    quantile_label,
    quote,
    range_frame,
    scrape_up,
)
from tests.conftest import free_port
from tests.support.http import Canned, Recorded, canned_server

AT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _target(**update: object) -> Target:
    return load_runbooks().targets.get("testbed").model_copy(update=update)


# --- PromQL -----------------------------------------------------------------------------------------


def test_quote_escapes_backslash_quote_and_newline() -> None:
    assert quote("plain") == '"plain"'
    # a"b\c<newline> -> "a\"b\\c\n"
    assert quote('a"b\\c\n') == '"a\\"b\\\\c\\n"'


def test_matchers_escape_values_and_reject_bad_label_names() -> None:
    sel = matchers({"job": 'we"ird'}, equal={"x": "1"}, one_of={"version": ["stable", "can.ary"]})
    assert sel == '{job="we\\"ird",x="1",version=~"stable|can\\\\.ary"}'
    with pytest.raises(InvalidSelector, match="label name"):
        matchers({"bad-name": "x"})


def test_duration_formats() -> None:
    assert duration(300) == "300s"
    assert duration(7.5) == "7500ms"
    with pytest.raises(InvalidSelector):
        duration(0)


def test_queries_for_the_testbed() -> None:
    q = PromQL.for_target(_target())
    sel = '{job="testbed",version=~"canary|stable"}'
    assert q.selector == sel
    assert q.requests(300) == f"sum by (version, channel) (increase(testbed_requests_total{sel}[300s]))"
    assert q.errors(60) == f"sum by (version, channel) (increase(testbed_request_errors_total{sel}[60s]))"
    assert q.errors_5xx(300) == (
        "sum by (version, channel) (increase(testbed_requests_total"
        '{job="testbed",version=~"canary|stable",code=~"5.."}[300s]))'
    )
    assert q.quantile(0.99, 300) == (
        "histogram_quantile(0.99, sum by (version, channel, le) "
        f"(rate(testbed_request_duration_seconds_bucket{sel}[300s])))"
    )
    assert q.buckets(30) == (
        f"sum by (version, channel, le) (increase(testbed_request_duration_seconds_bucket{sel}[30s]))"
    )
    assert q.gpu_memory(300) == (
        f"max by (version, device, kind) (max_over_time(testbed_gpu_memory_bytes{sel}[300s]))"
    )


def test_metric_names_are_data() -> None:
    names = MetricNames(
        request_duration_histogram="http_latency_seconds",
        requests_total="http_requests_total",
        errors_total="http_errors_total",
        gpu_memory_bytes=None,
        version_label="track",
        channel_label="modality",
        code_label="status",
    )
    q = PromQL.for_target(_target(metrics=names, prometheus_selector={"namespace": "prod"}))
    assert q.errors_5xx(60) == (
        'sum by (track, modality) (increase(http_requests_total{namespace="prod",'
        'track=~"canary|stable",status=~"5.."}[60s]))'
    )
    assert q.gpu_memory(60) is None


class _Recording:
    """A reader that records each query and answers a fixed vector."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples, self.queries = samples, []  # type: list[Sample], list[str]

    def query(self, promql: str, at: datetime) -> list[Sample]:
        self.queries.append(promql)
        return self.samples


def test_the_health_checks_second_signals() -> None:
    two_pods = _Recording([Sample({"instance": "a"}, 0.0), Sample({"instance": "b"}, 1.0)])
    assert scrape_up(two_pods, {"job": "testbed", "version": "canary"}, AT) == (
        'up{job="testbed",version="canary"}',
        [0.0, 1.0],
    )
    with pytest.raises(InvalidSelector, match="every job's up"):
        scrape_up(two_pods, {}, AT)
    errors = _Recording([Sample({}, 7.2)])
    assert increase_total(errors, "gw_upstream_errors_total", {"job": "gw", "version": "canary"}, 60, AT) == (
        'sum(increase(gw_upstream_errors_total{job="gw",version="canary"}[60s]))',
        7.2,
    )
    # sum() over no series is an empty vector: no data, not zero
    assert increase_total(_Recording([]), "gw_upstream_errors_total", {}, 90, AT) == (
        "sum(increase(gw_upstream_errors_total[90s]))",
        None,
    )


def test_quantile_labels() -> None:
    assert [quantile_label(q) for q in (0.5, 0.99, 0.999, 0.9999)] == ["p50", "p99", "p99.9", "p99.99"]


# --- failures -----------------------------------------------------------------------------------------


class _Canned(BaseHTTPRequestHandler):
    status = 200
    body = b""
    delay_s = 0.0
    seen: list[str] = []  # noqa: RUF012 - set per server below

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.seen.append(self.headers.get("Authorization", ""))
        time.sleep(self.delay_s)
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[tuple[ThreadingHTTPServer, type[_Canned]]]:
    handler = type("Handler", (_Canned,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _answer(handler: type[_Canned], status: int, body: bytes, delay_s: float = 0.0) -> None:
    handler.status, handler.body, handler.delay_s = status, body, delay_s


def test_a_vector_is_parsed_and_nan_is_no_data(canned: tuple[ThreadingHTTPServer, type[_Canned]]) -> None:
    server, handler = canned
    result = [
        {"metric": {"version": "stable", "channel": "text"}, "value": [1.0, "12.5"]},
        {"metric": {"version": "canary", "channel": "text"}, "value": [1.0, "NaN"]},
        {"metric": {"version": "canary", "channel": "image"}, "value": [1.0, "+Inf"]},
    ]
    _answer(
        handler,
        200,
        json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode(),
    )
    reader = PrometheusReader(_url(server), bearer_token="s3cret")
    samples = reader.query("up", AT)
    assert [s.value for s in samples] == [12.5, None, None]
    assert samples[0].labels == {"version": "stable", "channel": "text"}
    query = parse_qs(urlsplit(handler.seen[0]).query)
    assert query["query"] == ["up"]
    assert float(query["time"][0]) == AT.timestamp()
    assert handler.seen[1] == "Bearer s3cret"
    assert "s3cret" not in repr(reader)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, b"internal error", "HTTP 500"),
        (200, b"<html>not json</html>", "not JSON"),
        (200, b'{"status":"error"}', "status 'error'"),
        (400, b'{"status":"error","errorType":"bad_data","error":"parse error at char 5"}', "parse error"),
        (200, b'{"status":"success","data":{"resultType":"scalar","result":[1, "2"]}}', "instant vector"),
    ],
)
def test_bad_answers_are_query_errors(
    canned: tuple[ThreadingHTTPServer, type[_Canned]], status: int, body: bytes, reason: str
) -> None:
    server, handler = canned
    _answer(handler, status, body)
    with pytest.raises(PrometheusQueryError, match=reason):
        PrometheusReader(_url(server)).query("up", AT)


@pytest.mark.parametrize(
    "body", [b"internal error", b'{"status":"error"}', b"not json"], ids=["500", "status-error", "bad-json"]
)
def test_the_check_turns_bad_answers_into_insufficient_evidence(
    canned: tuple[ThreadingHTTPServer, type[_Canned]], body: bytes
) -> None:
    server, handler = canned
    _answer(handler, 500 if body == b"internal error" else 200, body)
    books = load_runbooks()
    result = check_metrics_sla(
        PrometheusReader(_url(server)),
        books.targets.get("testbed"),
        books.thresholds,
        None,
        window_end=AT,
        window_s=300,
    )
    assert result.status is Status.INSUFFICIENT_EVIDENCE
    assert result.gate.verdict is GateVerdict.INSUFFICIENT_EVIDENCE
    assert "no metrics" in result.summary
    json.dumps(result.model_dump(mode="json"))


def test_nothing_listening_is_insufficient_evidence_within_seconds() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusUnavailable, match="cannot reach"):
        PrometheusReader(url).query("up", AT)
    books = load_runbooks()
    started = time.monotonic()
    result = check_metrics_sla(
        PrometheusReader(url, timeout_s=2),
        books.targets.get("testbed"),
        books.thresholds,
        None,
        window_end=AT,
        window_s=300,
    )
    assert time.monotonic() - started < 3
    assert result.status is Status.INSUFFICIENT_EVIDENCE
    assert url.split("//")[1] in result.summary
    assert result.gate_summary().verdict is GateVerdict.INSUFFICIENT_EVIDENCE


def test_a_slow_prometheus_times_out(canned: tuple[ThreadingHTTPServer, type[_Canned]]) -> None:
    server, handler = canned
    _answer(handler, 200, b'{"status":"success","data":{"resultType":"vector","result":[]}}', delay_s=2)
    started = time.monotonic()
    with pytest.raises(PrometheusUnavailable, match=r"did not answer within 0\.5 s"):
        PrometheusReader(_url(server), timeout_s=0.5).query("up", AT)
    assert time.monotonic() - started < 1.5  # a timeout is not retried


def test_credentials_in_the_url_stay_out_of_messages() -> None:
    url = f"http://user:pa55@127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusUnavailable) as info:
        PrometheusReader(url).query("up", AT)
    assert "pa55" not in info.value.reason


# --- retries (tenacity): connection errors, 5xx, 429 with Retry-After, a deadline ----------------------

VECTOR = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [{"metric": {"version": "stable", "channel": "text"}, "value": [1735732800.0, "42"]}],
    },
}
UNAVAILABLE = {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}


def _sequence(*answers: Canned) -> Callable[[Recorded], Canned]:
    """A route answering ``answers`` in order, then the last one again."""
    seen: list[str] = []

    def route(req: Recorded) -> Canned:
        seen.append(req.path)
        return answers[min(len(seen), len(answers)) - 1]

    return route


def _recording(reader: PrometheusReader) -> list[float]:
    pauses: list[float] = []
    reader.sleep = pauses.append
    return pauses


def test_a_5xx_is_retried_with_a_doubling_backoff_until_prometheus_answers() -> None:
    route = _sequence(Canned(503, UNAVAILABLE), Canned(502, "bad gateway"), Canned(200, VECTOR))
    with canned_server({("GET", "/api/v1/query"): route}) as prom:
        reader = PrometheusReader(prom.url)
        pauses = _recording(reader)
        samples = reader.query("up", AT)
    assert [s.value for s in samples] == [42.0]
    assert len(prom.requests) == 3
    assert pauses == [0.2, 0.4]


def test_a_429_waits_what_its_retry_after_asks() -> None:
    route = _sequence(Canned(429, "slow down", headers={"Retry-After": "3"}), Canned(200, VECTOR))
    with canned_server({("GET", "/api/v1/query"): route}) as prom:
        reader = PrometheusReader(prom.url)
        pauses = _recording(reader)
        assert [s.value for s in reader.query("up", AT)] == [42.0]
    assert pauses == [3.0]  # not the 0.2 s backoff
    assert len(prom.requests) == 2


def test_a_retry_after_past_the_deadline_is_not_waited() -> None:
    route = _sequence(Canned(429, "slow down", headers={"Retry-After": "30"}), Canned(200, VECTOR))
    with canned_server({("GET", "/api/v1/query"): route}) as prom:
        reader = PrometheusReader(prom.url, timeout_s=5)
        pauses = _recording(reader)
        with pytest.raises(PrometheusQueryError) as info:
            reader.query("up", AT)
    assert (info.value.status, info.value.attempts, pauses, len(prom.requests)) == (429, 1, [], 1)
    assert info.value.reason.startswith("HTTP 429 from http://127.0.0.1:")
    assert info.value.reason.endswith("(no retry past the 5 s deadline, Retry-After 30 s)")


def test_a_prometheus_that_keeps_failing_is_given_up_after_the_retries_with_the_attempts_named() -> None:
    with canned_server({("GET", "/api/v1/query"): Canned(500, "internal error")}) as prom:
        reader = PrometheusReader(prom.url, retries=3)
        pauses = _recording(reader)
        with pytest.raises(PrometheusQueryError, match=r"HTTP 500 .* \(4 attempts in \d+\.\d s\)$") as info:
            reader.query("up", AT)
    assert (info.value.attempts, len(prom.requests)) == (4, 4)
    assert pauses == [0.2, 0.4, 0.8]


def test_a_bad_query_is_not_retried() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}
    with canned_server({("GET", "/api/v1/query"): Canned(400, body)}) as prom:
        reader = PrometheusReader(prom.url)
        pauses = _recording(reader)
        with pytest.raises(PrometheusQueryError, match="parse error") as info:
            reader.query("up(", AT)
    assert (info.value.attempts, len(prom.requests), pauses) == (1, 1, [])


def test_a_refused_connection_is_retried_and_counted() -> None:
    reader = PrometheusReader(f"http://127.0.0.1:{free_port()}")
    pauses = _recording(reader)
    with pytest.raises(PrometheusUnavailable, match=r"cannot reach .* \(3 attempts in ") as info:
        reader.query("up", AT)
    assert (info.value.attempts, pauses) == (3, [0.2, 0.4])


def test_a_timeout_is_a_single_attempt(canned: tuple[ThreadingHTTPServer, type[_Canned]]) -> None:
    server, handler = canned
    _answer(handler, 200, json.dumps(VECTOR).encode(), delay_s=1)
    reader = PrometheusReader(_url(server), timeout_s=0.3, retries=5)
    pauses = _recording(reader)
    with pytest.raises(PrometheusTimeout, match=r"did not answer within 0\.3 s$") as info:
        reader.query("up", AT)
    assert (info.value.attempts, pauses, len(handler.seen) // 2) == (1, [], 1)


def test_the_deadline_stops_retries_that_would_start_after_it() -> None:
    # 0.2 s then 0.4 s pauses: the third attempt would start ~0.6 s after the first, past 0.5 s.
    with canned_server({("GET", "/api/v1/query"): Canned(503, UNAVAILABLE)}) as prom:
        reader = PrometheusReader(prom.url, retries=5, deadline_s=0.5)
        started = time.monotonic()
        with pytest.raises(PrometheusQueryError, match=r"no retry past the 0\.5 s deadline\)$") as info:
            reader.query("up", AT)
    assert (info.value.attempts, len(prom.requests)) == (2, 2)
    assert 0.2 <= time.monotonic() - started < 1.0


# --- range queries and their frame --------------------------------------------------------------------

MATRIX = [
    {
        "metric": {"version": "stable", "channel": "text"},
        "values": [[1735732800, "12.5"], [1735732815.5, "NaN"]],
    },
    {"metric": {"version": "canary"}, "values": [[1735732800, "+Inf"], [1735732815, "-Inf"]]},
]


def _range_answer(result: list[dict[str, object]]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def test_a_range_query_sends_the_span_and_returns_the_matrix_as_it_came() -> None:
    route = _sequence(Canned(503, UNAVAILABLE), Canned(200, _range_answer(MATRIX)))
    with canned_server({("GET", "/api/v1/query_range"): route}) as prom:
        reader = PrometheusReader(prom.url, bearer_token="s3cret")
        pauses = _recording(reader)
        matrix = reader.query_range("up", AT, datetime(2025, 1, 1, 12, 10), 7.5)
    assert matrix == MATRIX
    assert pauses == [0.2]  # retried like an instant query
    query = parse_qs(urlsplit(prom.requests[-1].path).query)
    assert {k: v[0] for k, v in query.items()} == {
        "query": "up",
        "start": "1735732800",
        "end": "1735733400",  # a naive end is UTC
        "step": "7.5",
    }
    assert prom.requests[-1].headers["Authorization"] == "Bearer s3cret"


@pytest.mark.parametrize(
    "result",
    [
        [{"metric": {}, "value": [1, "2"]}],  # an instant vector
        [{"metric": {}, "values": [[1, "2", "3"]]}],
        [{"values": [[1, "2"]]}],
        {"a": 1},
    ],
    ids=["vector", "triple", "no-metric", "object"],
)
def test_a_range_answer_that_is_not_a_matrix_is_a_query_error(result: object) -> None:
    answer = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    with (
        canned_server({("GET", "/api/v1/query_range"): Canned(200, answer)}) as prom,
        pytest.raises(PrometheusQueryError, match="did not return a range matrix"),
    ):
        PrometheusReader(prom.url).query_range("up", AT, AT, 15)
    with pytest.raises(ValueError, match="step > 0"):
        PrometheusReader("http://127.0.0.1:1").query_range("up", AT, AT, 0)


def test_the_frame_of_a_matrix_keeps_nan_and_inf_as_floats() -> None:
    frame = range_frame(MATRIX)
    assert sorted(frame.columns) == ["channel", "value", "version"]
    assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"
    assert frame.index[1].isoformat() == "2025-01-01T12:00:15.500000+00:00"
    values = frame["value"].tolist()
    assert values[0] == 12.5 and math.isnan(values[1]) and values[2:] == [math.inf, -math.inf]
    assert frame["version"].tolist() == ["stable", "stable", "canary", "canary"]
    assert frame["channel"].isna().tolist() == [False, False, True, True]  # a label a series lacks


def test_an_empty_matrix_is_an_empty_frame_of_the_same_shape() -> None:
    for matrix in ([], [{"metric": {"version": "stable"}, "values": []}]):
        frame = range_frame(matrix)
        assert frame.empty and "value" in frame.columns and str(frame.index.tz) == "UTC"
        assert frame["value"].dtype == float
    assert list(range_frame([{"metric": {"version": "stable"}, "values": []}]).columns) == [
        "version",
        "value",
    ]


def test_a_value_that_is_not_a_number_is_a_query_error() -> None:
    with pytest.raises(PrometheusQueryError, match="not a number"):
        range_frame([{"metric": {}, "values": [[1735732800, "fast"]]}])
    with pytest.raises(PrometheusQueryError, match="not a range matrix"):
        range_frame([{"metric": {}, "value": [1735732800, "1"], "values": [[1, "1"]]}])
