"""Phase-1 log check: log sources (JSON-lines files, Elasticsearch), priority-matrix classification,
failing request paths by trace id. Pure library: no Airflow import.

``diagnostics.logs.elasticsearch`` (elasticsearch-py) is imported only where that source is used.
"""

from diagnostics.logs.check import (
    CHECK,
    LogCheckResult,
    UnconfiguredSource,
    check_logs,
    source_for,
    source_for_target_logs,
    unavailable_result,
)
from diagnostics.logs.classify import (
    LogClassification,
    ProblemHits,
    TracePath,
    UnclassifiedErrors,
    classify_logs,
)
from diagnostics.logs.files import FileLogSource
from diagnostics.logs.records import (
    LogQuery,
    LogRead,
    LogRecord,
    LogSource,
    MalformedRecord,
    ReadStats,
    SourceUnavailable,
)

__all__ = [
    "CHECK",
    "FileLogSource",
    "LogCheckResult",
    "LogClassification",
    "LogQuery",
    "LogRead",
    "LogRecord",
    "LogSource",
    "MalformedRecord",
    "ProblemHits",
    "ReadStats",
    "SourceUnavailable",
    "TracePath",
    "UnclassifiedErrors",
    "UnconfiguredSource",
    "check_logs",
    "classify_logs",
    "source_for",
    "source_for_target_logs",
    "unavailable_result",
]
