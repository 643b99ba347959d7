"""Drift (phase 2): two-sample KS and Wasserstein per feature, current window vs a stored reference.
Pure: numpy, scipy and pydantic only (no Airflow, no I/O), so it also runs outside the project's
environment (benchmarks/drift.py runs it next to Evidently).

    result = latency_drift(reference_ms, current_ms, books.thresholds.drift)
    result = embedding_drift(reference, current, books.thresholds.drift, projection="pca", seed=0)
"""

from diagnostics.drift.check import (
    CHECK,
    DriftCounts,
    DriftResult,
    FeatureDrift,
    ProjectionInfo,
    composite_score,
    correct_pvalues,
    drift_levels,
    embedding_drift,
    latency_drift,
    normalised_wasserstein,
)
from diagnostics.drift.projection import Projection, fit_projection, pca_projection, random_projection
from diagnostics.drift.stats import (
    ColumnStats,
    KsResult,
    SortedColumns,
    bh_adjust,
    bonferroni_adjust,
    column_stats,
    column_std,
    ks_pvalue,
    ks_statistic,
    ks_test,
    sort_columns,
    wasserstein_distance,
)

__all__ = [
    "CHECK",
    "ColumnStats",
    "DriftCounts",
    "DriftResult",
    "FeatureDrift",
    "KsResult",
    "Projection",
    "ProjectionInfo",
    "SortedColumns",
    "bh_adjust",
    "bonferroni_adjust",
    "column_stats",
    "column_std",
    "composite_score",
    "correct_pvalues",
    "drift_levels",
    "embedding_drift",
    "fit_projection",
    "ks_pvalue",
    "ks_statistic",
    "ks_test",
    "latency_drift",
    "normalised_wasserstein",
    "pca_projection",
    "random_projection",
    "sort_columns",
    "wasserstein_distance",
]
