"""LogRecord parsing (testbed and ECS names) and LogQuery validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from diagnostics.sources.logs.records import LogQuery, LogRecord, MalformedRecord

TESTBED_LINE = {
    "ts": "2025-01-01T12:00:00.123Z",
    "level": "WARNING",
    "service": "testbed",
    "version": "canary",
    "channel": "image",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "parent_span_id": "00f067aa0ba902b6",
    "message": "slow request: 1620 ms on image (threshold 1000 ms)",
    "latency_ms": 1620.4,
    "path": "/v1/embeddings/image",
}


def test_testbed_line() -> None:
    rec = LogRecord.from_json(TESTBED_LINE)
    assert rec.ts == datetime(2025, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert (rec.level, rec.service, rec.version, rec.channel) == ("WARNING", "testbed", "canary", "image")
    assert rec.trace_id == TESTBED_LINE["trace_id"] and rec.parent_span_id == "00f067aa0ba902b6"
    assert rec.fields == {"latency_ms": 1620.4, "path": "/v1/embeddings/image"}
    assert rec.path == "/v1/embeddings/image" and rec.status is None and rec.level_no == 30


def test_ecs_document_nested_and_dotted() -> None:
    nested = {
        "@timestamp": "2025-01-01T20:00:00.5+08:00",
        "log": {"level": "error"},
        "service": {"name": "testbed", "version": "canary"},
        "labels": {"channel": "audio"},
        "trace": {"id": "abc"},
        "span": {"id": "def"},
        "message": "ffmpeg subprocess timeout after 2.0 s",
        "http": {"response": {"status_code": 504}},
        "url": {"path": "/v1/audio/transcriptions"},
        "error": {"message": "AudioTimeout"},
    }
    rec = LogRecord.from_json(nested)
    assert rec.ts == datetime(2025, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert (rec.level, rec.service, rec.version, rec.channel) == ("ERROR", "testbed", "canary", "audio")
    assert (rec.trace_id, rec.span_id) == ("abc", "def")
    assert rec.status == 504 and rec.path == "/v1/audio/transcriptions"
    assert "AudioTimeout" in rec.text()
    dotted = {"@timestamp": 1735732800123, "log.level": "WARN", "trace.id": "abc", "message": "m"}
    rec2 = LogRecord.from_json(dotted)
    assert rec2.ts == datetime(2025, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert rec2.level == "WARNING" and rec2.trace_id == "abc"


def test_naive_timestamp_is_utc_and_missing_fields_default() -> None:
    rec = LogRecord.from_json({"ts": "2025-01-01T12:00:00"})
    assert rec.ts.tzinfo is UTC and rec.level == "INFO" and rec.message == "" and rec.version is None


@pytest.mark.parametrize("obj", [{}, {"message": "x"}, {"ts": "yesterday"}, {"ts": True}, {"ts": None}])
def test_malformed(obj: dict[str, object]) -> None:
    with pytest.raises(MalformedRecord):
        LogRecord.from_json(obj)


def test_query_validation() -> None:
    t = datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=8)))
    q = LogQuery(start=t, end=t + timedelta(hours=1), min_level="warn", keywords="timeout")
    assert q.start == datetime(2025, 1, 1, 4, tzinfo=UTC)
    assert q.min_level == "WARNING" and q.levels() == ["WARNING", "ERROR", "CRITICAL"]
    assert q.keywords == ("timeout",)
    with pytest.raises(ValidationError, match="after start"):
        LogQuery(start=t, end=t)
    with pytest.raises(ValidationError, match="unknown level"):
        LogQuery(start=t, end=t + timedelta(1), min_level="LOUD")
    with pytest.raises(ValidationError, match="regular expression"):
        LogQuery(start=t, end=t + timedelta(1), keywords=["(unclosed"])


def test_query_matcher() -> None:
    rec = LogRecord.from_json(TESTBED_LINE)
    start = datetime(2025, 1, 1, 12, tzinfo=UTC)
    base = {"start": start, "end": start + timedelta(minutes=1)}
    assert LogQuery(**base).matcher()(rec)
    assert not LogQuery(start=start, end=rec.ts).matcher()(rec)  # end is exclusive
    assert LogQuery(start=rec.ts, end=rec.ts + timedelta(1)).matcher()(rec)  # start inclusive
    assert LogQuery(**base, versions=frozenset({"canary"})).matcher()(rec)
    assert not LogQuery(**base, versions=frozenset({"stable"})).matcher()(rec)
    assert LogQuery(**base, min_level="WARNING").matcher()(rec)
    assert not LogQuery(**base, min_level="ERROR").matcher()(rec)
    assert LogQuery(**base, keywords=["SLOW REQUEST"]).matcher()(rec)
    assert not LogQuery(**base, keywords=["oom"]).matcher()(rec)
    assert not LogQuery(**base, service="other").matcher()(rec)
