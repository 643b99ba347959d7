"""check_logs: statuses, findings, evidence, insufficient evidence, and the JSON the DAG passes on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from diagnostics.golden_window.logs_check import CHECK, check_logs, source_for_target_logs
from diagnostics.incident.results import Status
from diagnostics.runbooks.schemas import ElasticsearchLogs, FileLogs, PriorityMatrix
from diagnostics.sources.logs.files import FileLogSource
from diagnostics.sources.logs.records import (
    LogQuery,
    LogRead,
    LogRecord,
    LogSource,
    ReadStats,
    SourceUnavailable,
)
from tests.diagnostics.golden_window.test_log_classify import CUDA_OOM, SCENARIOS
from tests.diagnostics.sources.logs.testbed_logs import T0, Testbed


def _source(tb: Testbed) -> FileLogSource:
    tb.close()
    return FileLogSource(["testbed-*.jsonl"], base_dir=tb.folder)


EXPECTED_STATUS = {
    "embedding_dim_mismatch": Status.FAILED,
    "audio_timeout": Status.DEGRADED,
    "cuda_oom": Status.FAILED,
    "model_not_loaded": Status.FAILED,
    "error_burst": Status.DEGRADED,
    "latency_spike": Status.DEGRADED,
}


@pytest.mark.parametrize("fault", list(SCENARIOS))
def test_status_and_first_finding_per_fault(
    fault: str, testbed: Testbed, matrix: PriorityMatrix, window: LogQuery
) -> None:
    write, top, severity, component, found = SCENARIOS[fault]
    testbed.healthy_traffic(6)
    write(testbed)
    result = check_logs(_source(testbed), window, matrix)
    assert result.check == CHECK == "log_classification"
    assert result.status == EXPECTED_STATUS[fault]
    assert result.findings[0].problem == top
    assert {f.problem for f in result.findings} == found
    first = result.findings[0]
    problem = matrix.get(top)
    assert problem is not None
    assert (first.severity.value, first.component) == (severity, component)
    assert (first.action, first.runbook, first.title) == (problem.action, problem.runbook, problem.title)
    assert first.version == "canary"  # only the canary served the failing requests
    assert result.summary.startswith(f"{result.lines} lines: {top} (")
    # what the DAG passes on between tasks
    dumped = result.model_dump(mode="json")
    assert json.loads(json.dumps(dumped)) == dumped
    assert dumped["details"]["problems"][top] == result.classification.problems[0].count  # type: ignore[union-attr]


def test_evidence_names_count_window_and_where(
    testbed: Testbed, matrix: PriorityMatrix, window: LogQuery
) -> None:
    testbed.healthy_traffic(4)
    for _ in range(37):  # ~2.12 s apart
        testbed.request("canary", "/v1/embeddings/image", latency_ms=1620.4, slow_threshold_ms=1000)
    result = check_logs(_source(testbed), window, matrix)
    (finding,) = result.findings
    assert finding.problem == "latency_sla_breach" and finding.channel == "image"
    assert finding.evidence == (
        "37 lines 12:00:03–12:01:20 UTC on canary/image, "
        "e.g. 12:00:03.786 canary/image WARNING slow request: 1620 ms on image (threshold 1000 ms)"
    )
    assert result.status == Status.DEGRADED


def test_healthy_logs_are_ok(testbed: Testbed, matrix: PriorityMatrix, window: LogQuery) -> None:
    testbed.healthy_traffic(12)
    result = check_logs(_source(testbed), window, matrix)
    assert result.status == Status.OK and result.findings == []
    # 12 service lines, 12 gateway lines, 2 "routed request" lines
    assert result.summary == "26 lines, no priority-matrix problem"
    assert result.details["lines"] == 26 and result.details["truncated"] is False
    assert result.details["malformed"] == 0


def test_no_lines_in_window_is_ok_and_says_so(testbed: Testbed, matrix: PriorityMatrix) -> None:
    testbed.healthy_traffic(3)
    later = LogQuery(start=T0 + timedelta(hours=3), end=T0 + timedelta(hours=4))
    result = check_logs(_source(testbed), later, matrix)
    assert result.status == Status.OK
    assert "no log lines in the window" in result.summary
    assert result.details["lines"] == 0 and result.lines == 0


def test_missing_files_are_insufficient_evidence(
    tmp_path: Path, matrix: PriorityMatrix, window: LogQuery
) -> None:
    result = check_logs(FileLogSource([str(tmp_path / "*.jsonl")]), window, matrix)
    assert result.status == Status.INSUFFICIENT_EVIDENCE
    assert result.summary.startswith("logs unavailable: no log files match")
    assert result.findings == [] and result.classification is None
    assert result.details["reason"] == result.summary.removeprefix("logs unavailable: ")


def test_truncated_and_malformed_are_reported(
    testbed: Testbed, matrix: PriorityMatrix, window: LogQuery
) -> None:
    testbed.healthy_traffic(10)
    testbed.close()
    # files are read in name order: canary, gateway, stable; the reading stops inside gateway
    with (testbed.folder / "testbed-canary.jsonl").open("a") as fh:
        fh.write("garbage\n{}\n")
    result = check_logs(_source(testbed), window.model_copy(update={"max_records": 7}), matrix)
    assert result.truncated and result.lines == 7 and result.malformed == 2
    assert result.summary == "7 lines (truncated at 7 lines), no priority-matrix problem"
    assert result.details["truncated"] is True and result.details["malformed"] == 2


class FailingMidway:
    """A source whose second page fails (as Elasticsearch can): partial data is no evidence."""

    def __init__(self, records: list[LogRecord]) -> None:
        self.records = records
        self.closed = False

    def describe(self) -> str:
        return "flaky"

    def read(self, query: LogQuery) -> LogRead:
        stats = ReadStats(source="flaky")

        def gen() -> Iterator[LogRecord]:
            for r in self.records:
                stats.returned += 1
                yield r
            raise SourceUnavailable("flaky", "timed out after 10 s talking to es")

        def close() -> None:
            self.closed = True

        return LogRead(stats=stats, records=gen(), on_close=close)


def test_source_failing_midway_is_insufficient_evidence(matrix: PriorityMatrix, window: LogQuery) -> None:
    rec = LogRecord.from_json(
        {"ts": "2025-01-01T12:00:00Z", "level": "ERROR", "message": "CUDA out of memory"}
    )
    source = FailingMidway([rec, rec])
    assert isinstance(source, LogSource)
    result = check_logs(source, window, matrix)
    assert result.status == Status.INSUFFICIENT_EVIDENCE
    assert result.summary == "logs unavailable: timed out after 10 s talking to es"
    assert result.lines == 2 and source.closed


def test_source_for_target_logs(tmp_path: Path) -> None:
    files = source_for_target_logs(FileLogs(source="files", paths=["logs/*.jsonl"]), base_dir=tmp_path)
    assert isinstance(files, FileLogSource)
    assert files.describe() == f"files {tmp_path}/logs/*.jsonl"
    es = ElasticsearchLogs(source="elasticsearch", index="testbed-logs")
    with pytest.raises(SourceUnavailable, match="TRIAGE24_ELASTICSEARCH_URL is not set"):
        source_for_target_logs(es, environ={})
    built = source_for_target_logs(
        es,
        environ={
            "TRIAGE24_ELASTICSEARCH_URL": "http://127.0.0.1:9",
            "TRIAGE24_ELASTICSEARCH_API_KEY": "k" * 20,
        },
    )
    assert built.describe() == "elasticsearch http://127.0.0.1:9 index testbed-logs"


def test_source_for_a_target(tmp_path: Path, matrix: PriorityMatrix, window: LogQuery) -> None:
    from diagnostics.golden_window.logs_check import UnconfiguredSource, source_for
    from diagnostics.runbooks import load_runbooks

    testbed_target = load_runbooks().targets.get("testbed")
    files = source_for(testbed_target, base_dir=tmp_path)
    assert isinstance(files, FileLogSource) and files.describe().startswith(f"files {tmp_path}/")
    es_target = testbed_target.model_copy(
        update={"logs": ElasticsearchLogs(source="elasticsearch", index="testbed-logs")}
    )
    unconfigured = source_for(es_target, None, environ={})
    assert isinstance(unconfigured, UnconfiguredSource)
    result = check_logs(unconfigured, window, matrix)
    assert result.status == Status.INSUFFICIENT_EVIDENCE
    assert result.summary == "logs unavailable: TRIAGE24_ELASTICSEARCH_URL is not set"
    configured = source_for(es_target, {"hosts": ["http://127.0.0.1:9"], "basic_auth": ["u", "p"]})
    assert configured.describe() == "elasticsearch http://127.0.0.1:9 index testbed-logs"


def test_keyword_form_of_check_logs(testbed: Testbed, matrix: PriorityMatrix) -> None:
    testbed.healthy_traffic(3)
    SCENARIOS["cuda_oom"][0](testbed)
    source = _source(testbed)
    by_query = check_logs(source, LogQuery(start=T0, end=T0 + timedelta(hours=1)), matrix)
    by_window = check_logs(source, matrix, start=T0, end=T0 + timedelta(hours=1))
    assert by_window.status == by_query.status == Status.FAILED
    assert by_window.model_dump() == by_query.model_dump()
    with pytest.raises(TypeError):
        check_logs(source, matrix)  # type: ignore[call-overload]


def test_a_problem_is_blamed_on_the_module_that_logged_it_else_the_matrix_first_component(
    testbed: Testbed, matrix: PriorityMatrix, window: LogQuery
) -> None:
    # A CUDA OOM logged by the image encoder's module is the encoder's, though the matrix says to look
    # at the audio processor first; a line without a module (or with a split vote) keeps the matrix's.
    for module in ("embedding", "embedding", "embedding", "audio_processor"):
        testbed.request(
            "canary", "/v1/embeddings/image", status=500, errors=((CUDA_OOM, {"module": module}),)
        )
    oom = next(f for f in check_logs(_source(testbed), window, matrix).findings if f.problem == "cuda_oom")
    assert oom.component == "embedding"
    assert matrix.get("cuda_oom").first_component.value == "audio_processor"  # type: ignore[union-attr]


@pytest.mark.parametrize("modules", [(), ("embedding", "audio_processor"), ("not_a_component",)])
def test_without_a_clear_logging_module_the_matrix_first_component_stands(
    modules: tuple[str, ...], testbed: Testbed, matrix: PriorityMatrix, window: LogQuery
) -> None:
    for module in modules or (None,):
        extra = {"module": module} if module else {"model": "clip-shapes"}
        testbed.request("canary", "/v1/embeddings/image", status=500, errors=((CUDA_OOM, extra),))
    oom = next(f for f in check_logs(_source(testbed), window, matrix).findings if f.problem == "cuda_oom")
    assert oom.component == "audio_processor"
