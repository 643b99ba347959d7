"""ElasticsearchLogSource against a real HTTP server answering with recorded Elasticsearch responses
(tests/diagnostics/sources/logs/fixtures), and, opt-in, against a real Elasticsearch."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from diagnostics.golden_window.logs_check import check_logs
from diagnostics.incident.results import Status
from diagnostics.runbooks.schemas import PriorityMatrix
from diagnostics.sources.logs.elasticsearch import ElasticsearchLogSource, FieldNames
from diagnostics.sources.logs.records import LogQuery, SourceUnavailable
from tests.conftest import free_port

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
INDEX = "testbed-logs"
START = datetime(2025, 1, 1, 11, 55, tzinfo=UTC)
END = datetime(2025, 1, 1, 13, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


PAGES = [fixture(f"search_page_{n}.json") for n in (1, 2, 3)]


class FakeElasticsearch:
    """Answers like Elasticsearch 9 (content type, X-Elastic-Product) and records every request."""

    def __init__(self, mode: str = "ok", product_header: bool = True, delay_s: float = 0.0) -> None:
        self.mode = mode
        self.product_header = product_header
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.elasticsearch+json;compatible-with=9")
                self.send_header("Content-Length", str(len(raw)))
                if fake.product_header:
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                url = urlsplit(self.path)
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "params": {k: v[0] for k, v in parse_qs(url.query).items()},
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fake.mode == "401":
                    self._answer(
                        401, fixture("error_401.json"), {"WWW-Authenticate": 'ApiKey, Basic realm="security"'}
                    )
                elif fake.mode == "403":
                    self._answer(403, fixture("error_403.json"))
                elif self.command == "POST" and url.path == f"/{INDEX}/_pit":
                    self._answer(200, fixture("open_pit.json"))
                elif self.command == "POST" and url.path.endswith("/_pit"):
                    self._answer(404, fixture("error_404.json"))
                elif self.command == "POST" and url.path == "/_search":
                    after = body.get("search_after") if body else None
                    for i, page in enumerate(PAGES):
                        prev = PAGES[i - 1]["hits"]["hits"][-1]["sort"] if i else None
                        if after == prev:
                            size = body["size"] if body else 10
                            self._answer(
                                200, {**page, "hits": {**page["hits"], "hits": page["hits"]["hits"][:size]}}
                            )
                            return
                    self._answer(
                        400, {"error": {"type": "illegal_argument_exception", "reason": "bad search_after"}}
                    )
                elif self.command == "DELETE" and url.path == "/_pit":
                    self._answer(200, fixture("close_pit.json"))
                else:
                    self._answer(405, {"error": "unexpected request", "status": 405})

            do_POST = do_DELETE = do_GET = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def source(self, index: str = INDEX, **kwargs: Any) -> ElasticsearchLogSource:
        kwargs.setdefault("page_size", 2)
        kwargs.setdefault("request_timeout", 5.0)
        return ElasticsearchLogSource(index, hosts=self.url, api_key=API_KEY, **kwargs)

    def calls(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests]


@pytest.fixture
def fake_es() -> Iterator[FakeElasticsearch]:
    fake = FakeElasticsearch()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _start(fake: FakeElasticsearch) -> FakeElasticsearch:
    fake.thread.start()
    return fake


def test_pages_through_a_point_in_time(fake_es: FakeElasticsearch) -> None:
    query = LogQuery(start=START, end=END, versions=frozenset({"canary", "gateway"}), min_level="INFO")
    read = fake_es.source().read(query)
    records = list(read)
    assert [r.message for r in records] == [
        "routed request: inputs=text+image route=embedding",
        "embedding dimension mismatch: image encoder returned 512-d vectors but the text encoder returns "
        "128-d (router embedding_dim=128)",
        "embedding dimension mismatch: cannot compare image (512-d) and text (128-d) embeddings",
        "request failed: HTTP 500",
        "proxied POST /v1/router -> canary HTTP 500 in 41.5 ms",
    ]
    assert read.stats.scanned == 5 and read.stats.returned == 5
    assert not read.stats.truncated and read.stats.malformed == 0
    assert fake_es.calls() == [
        ("POST", f"/{INDEX}/_pit"),
        ("POST", "/_search"),
        ("POST", "/_search"),
        ("POST", "/_search"),
        ("DELETE", "/_pit"),
    ]
    opened, s1, s2, s3, closed = fake_es.requests
    assert opened["params"] == {"keep_alive": "1m"}
    assert opened["headers"]["authorization"] == f"ApiKey {API_KEY}"
    assert "compatible-with=9" in opened["headers"]["accept"]
    # the filter the server runs: time range, versions, levels; sort for search_after
    assert s1["body"] == {
        "pit": {"id": fixture("open_pit.json")["id"], "keep_alive": "1m"},
        "query": {
            "bool": {
                "filter": [
                    {
                        "range": {
                            "@timestamp": {
                                "gte": "2025-01-01T11:55:00.000Z",
                                "lt": "2025-01-01T13:00:00.000Z",
                                "format": "strict_date_optional_time",
                            }
                        }
                    },
                    {"terms": {"version": ["canary", "gateway"]}},
                    {
                        "terms": {
                            "level": [
                                "INFO",
                                "info",
                                "NOTICE",
                                "notice",
                                "WARNING",
                                "warning",
                                "WARN",
                                "warn",
                                "ERROR",
                                "error",
                                "ERR",
                                "err",
                                "CRITICAL",
                                "critical",
                                "FATAL",
                                "fatal",
                            ]
                        }
                    },
                ]
            }
        },
        "sort": [{"@timestamp": "asc"}, {"_shard_doc": "asc"}],
        "size": 2,
        "track_total_hits": False,
    }
    assert "search_after" not in s1["body"]
    # search_after carries the last hit's sort values; the newest pit id is used and closed
    assert s2["body"]["search_after"] == PAGES[0]["hits"]["hits"][-1]["sort"]
    assert s3["body"]["search_after"] == PAGES[1]["hits"]["hits"][-1]["sort"]
    assert s3["body"]["pit"]["id"] == PAGES[1]["pit_id"] != fixture("open_pit.json")["id"]
    assert closed["body"] == {"id": PAGES[2]["pit_id"]}


def test_truncates_at_max_records_and_closes(fake_es: FakeElasticsearch) -> None:
    query = LogQuery(start=START, end=END, max_records=3)
    read = fake_es.source().read(query)
    assert len(list(read)) == 3
    assert read.stats.truncated and read.stats.returned == 3 and read.stats.scanned == 4
    assert fake_es.calls()[-1] == ("DELETE", "/_pit")
    assert [r["body"]["size"] for r in fake_es.requests if r["path"] == "/_search"] == [2, 2]
    assert "terms" not in json.dumps(fake_es.requests[1]["body"]["query"])  # no version/level filter


def test_pit_closed_when_the_reader_stops_early(fake_es: FakeElasticsearch) -> None:
    read = fake_es.source().read(LogQuery(start=START, end=END))
    next(iter(read))
    read.close()
    assert fake_es.calls() == [("POST", f"/{INDEX}/_pit"), ("POST", "/_search"), ("DELETE", "/_pit")]
    read.close()  # closing twice sends nothing more
    assert len(fake_es.requests) == 3


def test_pit_closed_when_not_iterated_at_all(fake_es: FakeElasticsearch) -> None:
    read = fake_es.source().read(LogQuery(start=START, end=END))
    read.close()
    assert fake_es.calls() == [("POST", f"/{INDEX}/_pit"), ("DELETE", "/_pit")]


def test_check_logs_classifies_elasticsearch_lines(
    fake_es: FakeElasticsearch, matrix: PriorityMatrix
) -> None:
    result = check_logs(fake_es.source(), LogQuery(start=START, end=END), matrix)
    assert result.status == Status.FAILED
    assert [f.problem for f in result.findings] == ["embedding_dim_mismatch", "http_5xx_burst"]
    assert result.source == f"elasticsearch {fake_es.url} index {INDEX}"
    assert result.classification is not None
    assert [p.path for p in result.classification.trace_paths] == [
        "gateway -> canary:/v1/router -> multimodal_router -> embedding "
        "(HTTP 500: embedding dimension mismatch)"
    ]


def test_ecs_field_names_in_the_query(fake_es: FakeElasticsearch) -> None:
    names = FieldNames(version="service.version", level="log.level", service="service.name")
    query = LogQuery(
        start=START, end=END, versions=frozenset({"canary"}), service="testbed", min_level="ERROR"
    )
    list(fake_es.source(field_names=names).read(query))
    filters = fake_es.requests[1]["body"]["query"]["bool"]["filter"]
    assert filters[1:] == [
        {"terms": {"service.version": ["canary"]}},
        {"term": {"service.name": "testbed"}},
        {"terms": {"log.level": ["ERROR", "error", "ERR", "err", "CRITICAL", "critical", "FATAL", "fatal"]}},
    ]


@pytest.mark.parametrize(
    ("mode", "index", "reason"),
    [
        (
            "401",
            INDEX,
            "authentication failed (HTTP 401) at http://127.0.0.1:{port}: "
            "the API key or user/password was rejected",
        ),
        (
            "403",
            INDEX,
            "not authorised (HTTP 403) to read index testbed-logs: "
            "the credentials need the read and view_index_metadata privileges on it",
        ),
        ("ok", "missing-logs", "index missing-logs not found (HTTP 404)"),
    ],
)
def test_api_errors_are_unavailable_with_a_reason(
    mode: str, index: str, reason: str, matrix: PriorityMatrix
) -> None:
    fake = _start(FakeElasticsearch(mode=mode))
    try:
        source = fake.source(index)
        with pytest.raises(SourceUnavailable) as err:
            source.read(LogQuery(start=START, end=END))
        assert err.value.reason == reason.format(port=fake.port)
        assert API_KEY not in str(err.value)
        result = check_logs(source, LogQuery(start=START, end=END), matrix)
        assert result.status == Status.INSUFFICIENT_EVIDENCE
        assert result.summary == f"logs unavailable: {reason.format(port=fake.port)}"
        assert API_KEY not in result.model_dump_json()
        assert all(r["method"] == "POST" for r in fake.requests)  # no PIT was opened, none to close
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_connection_refused(matrix: PriorityMatrix) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    source = ElasticsearchLogSource(INDEX, hosts=url, basic_auth=("triage24", "s3cret-pass"), max_retries=0)
    result = check_logs(source, LogQuery(start=START, end=END), matrix)
    assert result.status == Status.INSUFFICIENT_EVIDENCE
    assert result.summary.startswith(f"logs unavailable: cannot connect to {url}")
    assert "s3cret-pass" not in result.model_dump_json()


def test_timeout_is_unavailable() -> None:
    fake = _start(FakeElasticsearch(delay_s=1.5))
    try:
        source = fake.source(request_timeout=0.3, max_retries=0)
        with pytest.raises(SourceUnavailable, match=r"timed out after 0.3 s talking to http://127.0.0.1"):
            source.read(LogQuery(start=START, end=END))
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_a_server_that_is_not_elasticsearch() -> None:
    fake = _start(FakeElasticsearch(product_header=False))
    try:
        with pytest.raises(SourceUnavailable, match="is not Elasticsearch"):
            fake.source().read(LogQuery(start=START, end=END))
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_credentials_in_the_url_are_never_shown() -> None:
    source = ElasticsearchLogSource(INDEX, hosts="https://elastic:hunter2@es.example.com:9200")
    assert source.describe() == "elasticsearch https://es.example.com:9200 index testbed-logs"


@pytest.mark.filterwarnings("ignore::elastic_transport.SecurityWarning")  # verify_certs=False on purpose
def test_from_connection_and_from_env() -> None:
    src = ElasticsearchLogSource.from_connection(
        INDEX, host="es.internal", port=9200, login="triage24", password="pw", extra={"verify_certs": "false"}
    )
    assert src.describe() == "elasticsearch https://es.internal:9200 index testbed-logs"
    node = src.client.transport.node_pool.all()[0]
    assert node.config.scheme == "https" and node.config.verify_certs is False
    assert src.client._headers["authorization"].startswith("Basic ")  # login/password -> basic auth
    keyed = ElasticsearchLogSource.from_connection(
        INDEX, host="http://es.internal:9201", login="ignored", extra={"api_key": API_KEY}
    )
    assert keyed.client._headers["authorization"] == f"ApiKey {API_KEY}"
    env = ElasticsearchLogSource.from_env(INDEX, {"TRIAGE24_ELASTICSEARCH_URL": "http://localhost:9200"})
    assert "authorization" not in env.client._headers
    with pytest.raises(SourceUnavailable, match="TRIAGE24_ELASTICSEARCH_URL is not set"):
        ElasticsearchLogSource.from_env(INDEX, {})


# --- opt-in: a real Elasticsearch ---------------------------------------------------------------------


@pytest.mark.elasticsearch
@pytest.mark.skipif(
    not os.environ.get("TRIAGE24_ELASTICSEARCH_URL"),
    reason="set TRIAGE24_ELASTICSEARCH_URL (and TRIAGE24_ELASTICSEARCH_API_KEY if secured) to run",
)
def test_against_a_real_elasticsearch(matrix: PriorityMatrix) -> None:
    index = f"triage24-test-{uuid.uuid4().hex[:12]}"
    source = ElasticsearchLogSource.from_env(index, page_size=2)
    es = source.client
    es.indices.create(
        index=index,
        mappings={
            "properties": {
                "@timestamp": {"type": "date"},
                "version": {"type": "keyword"},
                "level": {"type": "keyword"},
                "service": {"type": "keyword"},
                "message": {"type": "text"},
            }
        },
    )
    try:
        for n, page in enumerate(PAGES):
            for i, hit in enumerate(page["hits"]["hits"]):
                es.index(index=index, id=f"{n}-{i}", document=hit["_source"])
        es.indices.refresh(index=index)
        extra = {**PAGES[0]["hits"]["hits"][0]["_source"], "@timestamp": "2025-01-02T12:00:00.000Z"}
        es.index(index=index, id="outside", document=extra, refresh=True)
        read = source.read(LogQuery(start=START, end=END, versions=frozenset({"canary"}), min_level="ERROR"))
        assert [r.message for r in read] == [
            PAGES[0]["hits"]["hits"][1]["_source"]["message"],
            PAGES[1]["hits"]["hits"][0]["_source"]["message"],
            "request failed: HTTP 500",
        ]
        result = check_logs(source, LogQuery(start=START, end=END), matrix)
        assert result.status == Status.FAILED and result.lines == 5
        missing = ElasticsearchLogSource.from_env(index + "-missing")
        with pytest.raises(SourceUnavailable, match="not found"):
            missing.read(LogQuery(start=START, end=END))
    finally:
        es.indices.delete(index=index)
        assert not es.indices.exists(index=index)


def test_window_far_from_fixture_data_still_sends_the_range(fake_es: FakeElasticsearch) -> None:
    # The fake server does not filter; the client re-applies the window, so nothing is returned.
    later = LogQuery(start=END + timedelta(days=1), end=END + timedelta(days=2))
    read = fake_es.source().read(later)
    assert list(read) == [] and read.stats.scanned == 5 and read.stats.returned == 0
