"""Phase 3's regression suite and the scheduled regression watch (pure: no Airflow import)."""

from diagnostics.verified_delivery.regression.suite import (
    CHECK,
    Case,
    CaseResult,
    Observation,
    RegressionResult,
    append_history,
    build_cases,
    judge_case,
    load_baseline,
    record_baseline,
    run_suite,
)

__all__ = [
    "CHECK",
    "Case",
    "CaseResult",
    "Observation",
    "RegressionResult",
    "append_history",
    "build_cases",
    "judge_case",
    "load_baseline",
    "record_baseline",
    "run_suite",
]
