"""FileLogSource over real testbed log files: streaming, malformed lines, filters, truncation."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from diagnostics.sources.logs.files import FileLogSource
from diagnostics.sources.logs.records import LogQuery, SourceUnavailable
from tests.diagnostics.sources.logs.testbed_logs import T0, Testbed


def _read(source: FileLogSource, query: LogQuery) -> tuple[list[str], object]:
    read = source.read(query)
    messages = [r.message for r in read]
    return messages, read.stats


def test_reads_every_testbed_file_and_counts_malformed(testbed: Testbed, window: LogQuery) -> None:
    testbed.healthy_traffic(8)  # 8 service lines + 8 gateway lines + 1 "routed request" line
    testbed.close()
    canary = testbed.folder / "testbed-canary.jsonl"
    with canary.open("a", encoding="utf-8") as fh:
        fh.write("not json at all\n")
        fh.write('{"truncated": \n')
        fh.write("[1, 2, 3]\n")
        fh.write('{"level": "ERROR", "message": "no timestamp"}\n')
        fh.write("\n")  # blank lines are not lines
    source = FileLogSource([str(testbed.folder / "testbed-*.jsonl")])
    read = source.read(window)
    records = list(read)
    assert len(records) == 17
    assert read.stats.malformed == 4
    assert read.stats.scanned == 21
    assert read.stats.returned == 17 and not read.stats.truncated
    assert sorted(Path(p).name for p in read.stats.inputs) == [
        "testbed-canary.jsonl",
        "testbed-gateway.jsonl",
        "testbed-stable.jsonl",
    ]
    assert {r.version for r in records} == {"stable", "canary", "gateway"}


def test_time_window_version_and_level_filters(testbed: Testbed) -> None:
    for _ in range(6):  # one request every ~540 ms
        testbed.request("stable", "/v1/chat")
    testbed.request("canary", "/v1/chat", status=500)
    testbed.close()
    source = FileLogSource(["testbed-*.jsonl"], base_dir=testbed.folder)
    # only the first two requests: [T0, T0 + 1 s)
    early = LogQuery(start=T0, end=T0 + timedelta(seconds=1))
    msgs, _ = _read(source, early)
    assert msgs.count("request completed") == 2
    assert len(msgs) == 4  # plus their two gateway lines
    canary = LogQuery(start=T0, end=T0 + timedelta(hours=1), versions=frozenset({"canary"}))
    msgs, _ = _read(source, canary)
    assert msgs == ["request failed: HTTP 500"]
    errors = LogQuery(start=T0, end=T0 + timedelta(hours=1), min_level="ERROR")
    msgs, _ = _read(source, errors)
    assert msgs == ["request failed: HTTP 500", "proxied POST /v1/chat -> canary HTTP 500 in 41.5 ms"]


def test_truncates_at_max_records(testbed: Testbed, window: LogQuery) -> None:
    testbed.healthy_traffic(10)
    testbed.close()
    source = FileLogSource([str(testbed.folder / "*.jsonl")])
    read = source.read(window.model_copy(update={"max_records": 5}))
    assert len(list(read)) == 5
    assert read.stats.truncated and read.stats.returned == 5
    # exactly as many as match: not truncated
    total = len(list(source.read(window)))
    read = source.read(window.model_copy(update={"max_records": total}))
    assert len(list(read)) == total and not read.stats.truncated


def test_streams_without_reading_whole_files(tmp_path: Path, window: LogQuery) -> None:
    # A 2 000-line file read with max_records=3 stops after a handful of lines.
    path = tmp_path / "big.jsonl"
    line = {"ts": "2025-01-01T12:00:00.000Z", "level": "INFO", "version": "stable", "message": "x"}
    path.write_text("".join(json.dumps(line) + "\n" for _ in range(2000)), encoding="utf-8")
    read = FileLogSource([str(path)]).read(window.model_copy(update={"max_records": 3}))
    assert len(list(read)) == 3
    assert read.stats.scanned == 4 and read.stats.truncated


def test_no_matching_files_is_unavailable(tmp_path: Path, window: LogQuery) -> None:
    source = FileLogSource([str(tmp_path / "nothing-*.jsonl")])
    with pytest.raises(SourceUnavailable, match="no log files match") as err:
        source.read(window)
    assert str(tmp_path) in err.value.reason
    (tmp_path / "nothing-dir.jsonl").mkdir()  # directories are not log files
    with pytest.raises(SourceUnavailable):
        source.read(window)
