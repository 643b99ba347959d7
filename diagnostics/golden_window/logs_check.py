"""The Phase-1 log check: pull the window's lines, classify them with the priority matrix."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, overload

from diagnostics.golden_window.log_classify import LogClassification, ProblemHits, classify_logs
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.runbooks.schemas import ElasticsearchLogs, FileLogs, PriorityMatrix, Severity, Target
from diagnostics.sources.logs.files import FileLogSource
from diagnostics.sources.logs.records import LogQuery, LogRead, LogSource, ReadStats, SourceUnavailable

__all__ = [
    "CHECK",
    "LogCheckResult",
    "UnconfiguredSource",
    "check_logs",
    "source_for",
    "source_for_target_logs",
    "unavailable_result",
]

CHECK = "log_classification"


class LogCheckResult(CheckResult):
    """``details`` holds the headline numbers (JSON-friendly); ``classification`` the full picture."""

    source: str
    lines: int = 0
    malformed: int = 0
    truncated: bool = False
    classification: LogClassification | None = None


class UnconfiguredSource:
    """A source that cannot be built (e.g. no Elasticsearch settings): reading it is unavailable.

    Lets the caller run the check anyway and get ``insufficient_evidence`` with the reason.
    """

    def __init__(self, description: str, reason: str) -> None:
        self.description = description
        self.reason = reason

    def describe(self) -> str:
        return self.description

    def read(self, query: LogQuery) -> LogRead:
        raise SourceUnavailable(self.description, self.reason)


_ES_SETTINGS = (
    "hosts",
    "api_key",
    "basic_auth",
    "request_timeout",
    "verify_certs",
    "ca_certs",
    "max_retries",
)


def source_for(
    target: Target,
    elasticsearch: Mapping[str, Any] | None = None,
    *,
    base_dir: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> LogSource:
    """The log source of ``target``: its files, or its Elasticsearch index. Never raises.

    ``elasticsearch`` holds the client settings (``hosts`` and ``api_key`` or ``basic_auth``, plus
    optionally ``request_timeout``, ``verify_certs``, ``ca_certs``) — from the Airflow Connection
    named by ``target.logs.connection_id`` in the DAG, from the environment in the CLI; without it
    ``TRIAGE24_ELASTICSEARCH_URL``/``_API_KEY`` are read. Relative file globs are taken from
    ``base_dir`` (default: the working directory).
    """
    logs = target.logs
    if isinstance(logs, FileLogs):
        return FileLogSource(logs.paths, base_dir=base_dir)
    from diagnostics.sources.logs.elasticsearch import ElasticsearchLogSource

    description = f"elasticsearch index {logs.index}"
    try:
        if elasticsearch:
            kwargs = {k: v for k, v in elasticsearch.items() if k in _ES_SETTINGS}
            if isinstance(kwargs.get("basic_auth"), list):
                kwargs["basic_auth"] = tuple(kwargs["basic_auth"])
            return ElasticsearchLogSource(logs.index, **kwargs)
        return ElasticsearchLogSource.from_env(logs.index, environ)
    except SourceUnavailable as exc:
        return UnconfiguredSource(description, exc.reason)
    except (TypeError, ValueError) as exc:
        return UnconfiguredSource(description, f"bad Elasticsearch settings: {exc}")


def source_for_target_logs(
    logs: FileLogs | ElasticsearchLogs,
    *,
    base_dir: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> LogSource:
    """The CLI's way from ``Target.logs`` to a source: files as configured, Elasticsearch from env.

    Raises ``SourceUnavailable`` when Elasticsearch is not configured (``source_for`` does not).
    """
    if isinstance(logs, FileLogs):
        return FileLogSource(logs.paths, base_dir=base_dir)
    # imported here: elasticsearch-py is only needed (and only worth its import time) for this source
    from diagnostics.sources.logs.elasticsearch import ElasticsearchLogSource

    return ElasticsearchLogSource.from_env(logs.index, environ)


def unavailable_result(source: str, reason: str, *, lines: int = 0, malformed: int = 0) -> LogCheckResult:
    """The result when the logs cannot be read: insufficient evidence, never a pass or a rollback.

    Also for callers whose source cannot even be built (``SourceUnavailable`` from
    ``source_for_target_logs`` / ``ElasticsearchLogSource.from_env``).
    """
    return LogCheckResult(
        check=CHECK,
        status=Status.INSUFFICIENT_EVIDENCE,
        summary=f"logs unavailable: {reason}",
        details={"source": source, "reason": reason, "lines": lines, "malformed": malformed},
        source=source,
        lines=lines,
        malformed=malformed,
    )


def _clock(ts: datetime, span_days: bool) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S") if span_days else ts.strftime("%H:%M:%S")


def _evidence(hit: ProblemHits) -> str:
    span_days = hit.first_seen.date() != hit.last_seen.date()
    where = list(hit.where.items())
    on = ", ".join(f"{w} ({n})" for w, n in where[:3]) if len(where) > 1 else where[0][0]
    if len(where) > 3:
        on += f" and {len(where) - 3} more"
    noun = "line" if hit.count == 1 else "lines"
    span = _clock(hit.first_seen, span_days)
    if _clock(hit.last_seen, span_days) != span:
        span += f"–{_clock(hit.last_seen, span_days)}"
    text = f"{hit.count} {noun} {span} UTC on {on}"
    if hit.samples:
        text += f", e.g. {hit.samples[0]}"
    return text


def _logged_by(hit: ProblemHits) -> str | None:
    component = hit.logged_by()
    return component.value if component is not None else None


def _only(counts: dict[str, int]) -> str | None:
    """The one key of ``counts`` ('-' = unknown ignored), or None when there are several or none."""
    keys = [k for k in counts if k != "-"]
    return keys[0] if len(keys) == 1 else None


def _query_and_matrix(
    query_or_matrix: LogQuery | PriorityMatrix,
    matrix: PriorityMatrix | None,
    start: datetime | None,
    end: datetime | None,
    versions: frozenset[str] | None,
    max_records: int,
) -> tuple[LogQuery, PriorityMatrix]:
    """The query and matrix of either calling form of :func:`check_logs`."""
    if isinstance(query_or_matrix, LogQuery):
        if matrix is None:
            raise TypeError("check_logs(source, query, matrix): the priority matrix is missing")
        return query_or_matrix, matrix
    if start is None or end is None:
        raise TypeError("check_logs(source, matrix, start=..., end=...): start and end are required")
    return LogQuery(start=start, end=end, versions=versions, max_records=max_records), query_or_matrix


def _findings(classification: LogClassification, matrix: PriorityMatrix) -> list[Finding]:
    """One finding per matrix problem seen, plus one (low) for the unclassified error lines."""
    findings = [
        Finding.from_problem(
            problem,
            CHECK,
            _evidence(hit),
            version=_only(hit.served_by),
            channel=_only(hit.channels),
            component=_logged_by(hit),
        )
        for hit in classification.problems
        if (problem := matrix.get(hit.id)) is not None
    ]
    unc = classification.unclassified
    if unc.count:
        findings.append(
            Finding(
                check=CHECK,
                problem="unclassified_errors",
                severity=Severity.LOW,
                component="infrastructure",
                title="Error lines that match no priority-matrix problem",
                evidence=f"{unc.count} error lines on "
                + ", ".join(f"{v} ({n})" for v, n in unc.versions.items())
                + (f", e.g. {unc.samples[0]}" if unc.samples else ""),
                action="Read the samples; add the pattern to runbooks/priority_matrix.yaml if it recurs.",
            )
        )
    findings.sort(key=Finding.rank_key)
    return findings


def _status(classification: LogClassification) -> Status:
    severities = {hit.severity for hit in classification.problems}
    if Severity.CRITICAL in severities:
        return Status.FAILED
    if severities & {Severity.HIGH, Severity.MEDIUM}:
        return Status.DEGRADED
    return Status.OK


def _summary(classification: LogClassification, stats: ReadStats, query: LogQuery, described: str) -> str:
    lines = classification.lines
    unc = classification.unclassified
    trunc = f" (truncated at {query.max_records} lines)" if stats.truncated else ""
    if lines == 0:
        summary = f"no log lines in the window from {described}"
        if stats.malformed:
            summary += f" ({stats.malformed} malformed lines skipped)"
    elif not classification.problems:
        summary = f"{lines} lines{trunc}, no priority-matrix problem"
        if unc.count:
            summary += f"; {unc.count} unclassified error lines"
    else:
        listed = ", ".join(f"{h.id} ({h.count})" for h in classification.problems[:4])
        more = len(classification.problems) - 4
        summary = f"{lines} lines{trunc}: {listed}" + (f" and {more} more" if more > 0 else "")
        if classification.trace_paths:
            top = classification.trace_paths[0]
            summary += f"; top failing path: {top.path} ×{top.count}"
    return summary


def _details(
    classification: LogClassification, stats: ReadStats, query: LogQuery, described: str
) -> dict[str, object]:
    """The headline numbers, JSON-friendly."""
    return {
        "source": described,
        "inputs": list(stats.inputs),
        "window": {"start": query.start.isoformat(), "end": query.end.isoformat()},
        "lines": classification.lines,
        "scanned": stats.scanned,
        "malformed": stats.malformed,
        "truncated": stats.truncated,
        "max_records": query.max_records,
        "error_lines": classification.error_lines,
        "warning_lines": classification.warning_lines,
        "versions": classification.versions,
        "problems": {h.id: h.count for h in classification.problems},
        "unclassified_errors": classification.unclassified.count,
        "failing_traces": classification.failing_traces,
        "trace_paths": [{"path": p.path, "count": p.count} for p in classification.trace_paths],
        "top_failing_module": classification.top_failing_module,
    }


@overload
def check_logs(
    source: LogSource,
    query: LogQuery,
    matrix: PriorityMatrix,
    /,
    *,
    top_paths: int = ...,
    samples: int = ...,
) -> LogCheckResult: ...


@overload
def check_logs(
    source: LogSource,
    matrix: PriorityMatrix,
    /,
    *,
    start: datetime,
    end: datetime,
    versions: frozenset[str] | None = ...,
    max_records: int = ...,
    top_paths: int = ...,
    samples: int = ...,
) -> LogCheckResult: ...


def check_logs(
    source: LogSource,
    query_or_matrix: LogQuery | PriorityMatrix,
    matrix: PriorityMatrix | None = None,
    /,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    versions: frozenset[str] | None = None,
    max_records: int = 100_000,
    top_paths: int = 5,
    samples: int = 3,
) -> LogCheckResult:
    """Read the window from ``source`` and classify it; never raises for an unreadable source.

    Call it as ``check_logs(source, LogQuery(...), matrix)`` or, for the whole window at every
    level, ``check_logs(source, matrix, start=..., end=...)``.

    Status: a critical problem → failed; a high or medium one → degraded; none → ok (also with no
    lines in the window, which the summary says); source unavailable → insufficient_evidence.
    """
    query, matrix = _query_and_matrix(query_or_matrix, matrix, start, end, versions, max_records)
    described = source.describe()
    stats: ReadStats | None = None
    classification: LogClassification | None = None
    try:
        read = source.read(query)
        stats = read.stats
        try:
            classification = classify_logs(read, matrix, top_paths=top_paths, samples=samples)
        finally:
            read.close()
    except SourceUnavailable as exc:
        lines = stats.returned if stats else 0
        return unavailable_result(
            described, exc.reason, lines=lines, malformed=stats.malformed if stats else 0
        )

    assert stats is not None and classification is not None  # set when no SourceUnavailable was raised
    return LogCheckResult(
        check=CHECK,
        status=_status(classification),
        summary=_summary(classification, stats, query, described),
        details=_details(classification, stats, query, described),
        findings=_findings(classification, matrix),
        source=described,
        lines=classification.lines,
        malformed=stats.malformed,
        truncated=stats.truncated,
        classification=classification,
    )
