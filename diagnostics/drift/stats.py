"""Two-sample drift statistics per column, vectorised across columns: the Kolmogorov-Smirnov statistic
and p-value, the 1-D Wasserstein distance, and the multiple-testing corrections.

Every statistic equals scipy's per-column result (``scipy.stats.ks_2samp(ref[:, j], cur[:, j])`` with
its defaults, ``scipy.stats.wasserstein_distance(ref[:, j], cur[:, j])``, tested to 1e-12), but one
call covers all columns: 100k × 512 float32 takes ~5 s on 2 cores, against ~35 s for a loop of scipy
calls (``benchmarks/drift.py``; most of it is the sorts an exact KS needs):

- each column is sorted once (the reference can be sorted once and stored: :class:`SortedColumns`);
- **KS statistic**: ``D = max(D+, D-)``. ``F_ref - F_cur`` is a right-continuous step function whose
  largest and smallest values are both found at the reference values (its value there and its left
  limit), so one ``searchsorted`` per column (how many current values lie below each reference value)
  gives both; columns with ties between the samples are searched a second time. The CDF values are
  formed exactly as scipy forms them (``count / n``), so the statistic is the same float;
- **KS p-value**: scipy's own distributions with scipy's ``method="auto"`` rule: exact when both samples
  have at most 10 000 values (scipy's exact routine, called once per distinct statistic), else the
  asymptotic ``kstwo.sf(D, round(n·m/(n+m)))``;
- **Wasserstein-1**: the area between the two CDFs equals the area between the two quantile functions,
  ``∫₀¹ |F_ref⁻¹(t) - F_cur⁻¹(t)| dt``. On sorted columns the quantile functions are steps at
  ``i/n_ref`` and ``j/n_cur`` — the same breakpoints for every column — so the integral is one gather
  and one weighted sum for all columns;
- **Benjamini-Hochberg** and **Bonferroni** adjusted p-values over a family of features.

Columns are processed in chunks (bounded memory; optionally on threads: numpy's sort and search release
the GIL). Inputs must be finite: missing values are the caller's to drop (see ``diagnostics.drift.check``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

try:  # the exact routine ks_2samp itself calls; see ks_pvalue for what happens without it
    from scipy.stats._stats_py import _attempt_exact_2kssamp as _scipy_exact_2kssamp
except ImportError:  # pragma: no cover - depends on the installed scipy
    _scipy_exact_2kssamp = None

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
IntArray: TypeAlias = npt.NDArray[np.intp]

MAX_EXACT_N = 10_000  # ks_2samp(method="auto"): exact p-values while both samples are at most this large
DEFAULT_CHUNK_COLUMNS = 16  # 16 columns × 100k rows × 8 B = 12.8 MB per working array


@dataclass(frozen=True)
class SortedColumns:
    """A sample with every column sorted, stored column-major: ``values[j]`` is column ``j`` ascending.

    Every statistic here reads samples in this form. A stored reference is kept sorted so that a
    comparison sorts only the current window (half the work of the benchmark's 100k × 512 case).
    """

    values: npt.NDArray[np.floating[Any]]  # (d, n)

    @property
    def n(self) -> int:
        return int(self.values.shape[1])

    @property
    def d(self) -> int:
        return int(self.values.shape[0])


Sample: TypeAlias = "npt.ArrayLike | SortedColumns"


class KsResult(NamedTuple):
    """Per column: the statistic as ``ks_2samp`` reports it, its p-value, and whether it is exact."""

    statistic: FloatArray
    pvalue: FloatArray
    exact: BoolArray


@dataclass(frozen=True)
class ColumnStats:
    """KS and Wasserstein per column of one reference/current pair, from one pass over sorted columns."""

    ks_statistic: FloatArray
    ks_pvalue: FloatArray
    ks_exact: BoolArray
    wasserstein: FloatArray
    n_reference: int
    n_current: int


# --- inputs ---------------------------------------------------------------------------------------


def _as_matrix(sample: npt.ArrayLike, name: str) -> npt.NDArray[np.floating[Any]]:
    """An (n, d) floating matrix; a 1-D sample is one column. float32 stays float32 (it sorts twice as
    fast, and the statistics are computed in float64 from it, as scipy does)."""
    arr = np.asarray(sample)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 1-D or 2-D (rows × columns) array, got {arr.ndim}-D")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: no rows")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values; drop them before comparing")
    return arr


def sort_columns(sample: Sample) -> SortedColumns:
    """``sample`` (rows × columns) with every column sorted, stored column-major."""
    if isinstance(sample, SortedColumns):
        return sample
    values = np.array(_as_matrix(sample, "sample").T, order="C")
    values.sort(axis=1)
    return SortedColumns(values)


def column_std(sample: Sample) -> FloatArray:
    """Population standard deviation (ddof 0) of every column, accumulated in float64."""
    if isinstance(sample, SortedColumns):
        return np.asarray(np.std(sample.values, axis=1, dtype=np.float64), dtype=np.float64)
    return np.asarray(np.std(_as_matrix(sample, "sample"), axis=0, dtype=np.float64), dtype=np.float64)


def _sorted_block(
    sample: SortedColumns | npt.NDArray[np.floating[Any]], start: int, stop: int
) -> npt.NDArray[np.floating[Any]]:
    if isinstance(sample, SortedColumns):
        return sample.values[start:stop]
    block = np.array(sample[:, start:stop].T, order="C")
    block.sort(axis=1)
    return block


def _prepare(sample: Sample, name: str) -> SortedColumns | npt.NDArray[np.floating[Any]]:
    return sample if isinstance(sample, SortedColumns) else _as_matrix(sample, name)


def _shape(sample: SortedColumns | npt.NDArray[np.floating[Any]]) -> tuple[int, int]:
    if isinstance(sample, SortedColumns):
        return sample.n, sample.d
    return int(sample.shape[0]), int(sample.shape[1])


# --- kernels on sorted blocks (c columns × n values) ----------------------------------------------


def _ks_sup(a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """``sup |F_a - F_b|`` per row of the sorted blocks ``a`` (c × n1) and ``b`` (c × n2), from the
    values of ``a`` alone:

    - ``D+ = max (F_a - F_b)`` is reached at a value of ``a`` (between two of them ``F_a`` is flat and
      ``F_b`` only grows): ``max_i ((i + 1) / n1 - #{b <= a_i} / n2)``;
    - ``D- = max (F_b - F_a)`` is the left limit at a value of ``a`` (on ``[a_(i-1), a_i)`` ``F_a`` is
      ``i / n1`` and ``F_b`` grows up to ``#{b < a_i} / n2``): ``max_i (#{b < a_i} / n2 - i / n1)``.

    For a repeated value only its last (for ``D+``) or first (for ``D-``) copy gives the true CDF, and
    the other copies give smaller differences, so no masking is needed. Each difference is the one scipy
    computes at some data point, with the same integers and divisions: the same float.
    """
    c, n1 = a.shape
    n2 = b.shape[1]
    below = np.empty((c, n1), dtype=np.intp)  # below[k, i] = #{b[k] < a[k, i]}
    for k in range(c):
        below[k] = np.searchsorted(b[k], a[k], side="left")
    # D+ needs #{b[k] <= a[k, i]}: the same count, except where a value of b equals a[k, i] (a tie
    # between the samples); only rows with such a tie are searched again. (Where below = n2, b's last
    # value is smaller than a[k, i], so the clipped lookup cannot report a tie there.)
    nearest = np.take_along_axis(b, np.minimum(below, n2 - 1), axis=1)
    tied = (nearest == a).any(axis=1)
    del nearest

    cdf_b_below = np.divide(below, n2)  # F_b just left of a_i
    work = np.subtract(cdf_b_below, np.arange(n1) / n1)
    d_minus = np.maximum(work.max(axis=1), 0.0)
    if tied.any():
        for row in np.flatnonzero(tied).tolist():
            cdf_b_below[row] = np.searchsorted(b[row], a[row], side="right") / n2  # now F_b at a_i
    np.subtract(np.arange(1, n1 + 1) / n1, cdf_b_below, out=work)
    d_plus = work.max(axis=1)
    return np.asarray(np.maximum(d_plus, d_minus), dtype=np.float64)


@dataclass(frozen=True)
class _QuantilePlan:
    """Where the two quantile functions step, shared by every column: on ``(t[k-1], t[k]]`` the
    reference's quantile is its sorted value ``ref_index[k]`` and the current's ``cur_index[k]``."""

    weights: FloatArray
    ref_index: IntArray | None  # None: equal sizes, the identity
    cur_index: IntArray | None


def _quantile_plan(n1: int, n2: int) -> _QuantilePlan:
    if n1 == n2:
        return _QuantilePlan(np.full(n1, 1.0 / n1), None, None)
    # Breakpoints in units of 1 / (n1·n2), as integers so that shared breakpoints coincide exactly.
    t = np.union1d(np.arange(1, n1 + 1, dtype=np.int64) * n2, np.arange(1, n2 + 1, dtype=np.int64) * n1)
    weights = np.diff(t, prepend=0) / (n1 * n2)
    ref_index = ((t + n2 - 1) // n2 - 1).astype(np.intp)
    cur_index = ((t + n1 - 1) // n1 - 1).astype(np.intp)
    return _QuantilePlan(weights, ref_index, cur_index)


def _wasserstein_sorted(
    a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]], plan: _QuantilePlan
) -> FloatArray:
    """``∫ |F_a⁻¹ - F_b⁻¹|`` per row of the sorted blocks, in float64 (as scipy computes it)."""
    if plan.ref_index is not None and plan.cur_index is not None:
        # np.take keeps the rows C-contiguous (fancy indexing would not), so each row's sum below is
        # numpy's pairwise sum, whatever the chunk.
        a, b = np.take(a, plan.ref_index, axis=1), np.take(b, plan.cur_index, axis=1)
    gap = np.subtract(a, b, dtype=np.float64)  # float32 values are widened before subtracting
    np.abs(gap, out=gap)
    # A row-wise (pairwise) sum rather than a matrix-vector product: the result of a column must not
    # depend on which other columns share its chunk (BLAS blocks the sum by the matrix's shape).
    np.multiply(gap, plan.weights, out=gap)
    return np.asarray(gap.sum(axis=1), dtype=np.float64)


# --- the chunk loop -------------------------------------------------------------------------------


def _over_chunks(
    reference: Sample,
    current: Sample,
    kernel: Callable[[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]], tuple[FloatArray, ...]],
    outputs: int,
    *,
    workers: int,
    chunk_columns: int,
) -> tuple[tuple[FloatArray, ...], int, int]:
    """Run ``kernel`` on sorted column blocks of both samples; the outputs per column, and n_ref, n_cur."""
    ref = _prepare(reference, "reference")
    cur = _prepare(current, "current")
    (n1, d1), (n2, d2) = _shape(ref), _shape(cur)
    if d1 != d2:
        raise ValueError(f"reference has {d1} columns and current {d2}: they must describe the same features")
    if chunk_columns < 1 or workers < 1:
        raise ValueError("chunk_columns and workers must be at least 1")
    starts = range(0, d1, chunk_columns)
    out = tuple(np.empty(d1, dtype=np.float64) for _ in range(outputs))

    def run(start: int) -> None:
        stop = min(start + chunk_columns, d1)
        a, b = _sorted_block(ref, start, stop), _sorted_block(cur, start, stop)
        if a.dtype != b.dtype:  # compare in the wider type, exactly as numpy's searchsorted would
            common = np.result_type(a, b)
            a, b = a.astype(common), b.astype(common)
        for dest, values in zip(out, kernel(a, b), strict=True):
            dest[start:stop] = values

    if workers == 1 or len(starts) == 1:
        for start in starts:
            run(start)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, starts))
    return out, n1, n2


# --- one function per statistic -------------------------------------------------------------------


def ks_statistic(
    reference: Sample, current: Sample, *, workers: int = 1, chunk_columns: int = DEFAULT_CHUNK_COLUMNS
) -> FloatArray:
    """The two-sided two-sample KS statistic ``sup |F_ref - F_cur|`` of every column (scipy's float;
    ``ks_2samp`` reports it rounded to the lattice ``h / lcm(n_ref, n_cur)`` when its p-value is exact,
    which :func:`ks_pvalue` does too)."""
    (d,), _, _ = _over_chunks(
        reference, current, lambda a, b: (_ks_sup(a, b),), 1, workers=workers, chunk_columns=chunk_columns
    )
    return d


def ks_pvalue(statistic: npt.ArrayLike, n_reference: int, n_current: int) -> KsResult:
    """Two-sided p-values of KS statistics for samples of ``n_reference`` and ``n_current`` values, by
    ``ks_2samp``'s own rule for ``method="auto"``:

    - both sizes at most 10 000: exact. The statistic is rounded to ``h / lcm`` and the probability is
      scipy's exact routine (the one ``ks_2samp`` calls), evaluated once per distinct ``h``. Where that
      routine fails numerically, scipy falls back to the asymptotic value with a warning; so does this
      function, silently, and marks the column ``exact=False``;
    - otherwise asymptotic: ``kstwo.sf(D, round(n·m / (n + m)))``.

    The exact routine is private to scipy; if a scipy release removes it, every p-value here becomes
    asymptotic (``exact=False``) instead of failing, and the test pinning its presence fails.

    Cost: the asymptotic p-value is cheap except for ``2.2 <= n·D² < 370`` (p between ~1e-321 and
    0.025), where ``kstwo.sf`` sums the exact Smirnov series: ~70 ms per column at n = 50 000, the
    same as ``ks_2samp`` pays.
    """
    d = np.asarray(statistic, dtype=np.float64).reshape(-1)
    n1, n2 = int(n_reference), int(n_current)
    if min(n1, n2) < 1:
        raise ValueError("both samples need at least one value")
    if max(n1, n2) > MAX_EXACT_N or _scipy_exact_2kssamp is None:
        return KsResult(d, _ks_pvalue_asymptotic(d, n1, n2), np.zeros(d.shape, dtype=bool))
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = np.round(d * lcm).astype(np.int64)
    lattice = h / lcm
    values, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    prob_of = np.empty(values.size, dtype=np.float64)
    exact_of = np.ones(values.size, dtype=bool)
    for u, (h_value, i) in enumerate(zip(values.tolist(), first.tolist(), strict=True)):
        success, _, p = _scipy_exact_2kssamp(n1, n2, g, float(d[i]), "two-sided")
        if success:
            prob_of[u] = p
        else:
            prob_of[u] = _ks_pvalue_asymptotic(np.array([h_value / lcm]), n1, n2)[0]
            exact_of[u] = False
    inverse = inverse.reshape(-1)
    prob, exact = prob_of[inverse], exact_of[inverse]
    return KsResult(lattice, np.clip(prob, 0.0, 1.0), exact)


def _ks_pvalue_asymptotic(d: FloatArray, n1: int, n2: int) -> FloatArray:
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    p = scipy_stats.kstwo.sf(d, np.round(en))
    return np.asarray(np.clip(p, 0.0, 1.0), dtype=np.float64)


def ks_test(
    reference: Sample, current: Sample, *, workers: int = 1, chunk_columns: int = DEFAULT_CHUNK_COLUMNS
) -> KsResult:
    """``ks_2samp(reference[:, j], current[:, j])`` for every column ``j``: statistic and p-value."""
    (d,), n1, n2 = _over_chunks(
        reference, current, lambda a, b: (_ks_sup(a, b),), 1, workers=workers, chunk_columns=chunk_columns
    )
    return ks_pvalue(d, n1, n2)


def wasserstein_distance(
    reference: Sample, current: Sample, *, workers: int = 1, chunk_columns: int = DEFAULT_CHUNK_COLUMNS
) -> FloatArray:
    """The 1-D Wasserstein-1 distance of every column, in the columns' units (``wasserstein_distance``)."""
    plan = _plan_for(reference, current)
    (w,), _, _ = _over_chunks(
        reference,
        current,
        lambda a, b: (_wasserstein_sorted(a, b, plan),),
        1,
        workers=workers,
        chunk_columns=chunk_columns,
    )
    return w


def column_stats(
    reference: Sample, current: Sample, *, workers: int = 1, chunk_columns: int = DEFAULT_CHUNK_COLUMNS
) -> ColumnStats:
    """KS (statistic, p-value) and Wasserstein of every column in one pass: each column sorted once."""
    plan = _plan_for(reference, current)
    (d, w), n1, n2 = _over_chunks(
        reference,
        current,
        lambda a, b: (_ks_sup(a, b), _wasserstein_sorted(a, b, plan)),
        2,
        workers=workers,
        chunk_columns=chunk_columns,
    )
    ks = ks_pvalue(d, n1, n2)
    return ColumnStats(
        ks_statistic=ks.statistic,
        ks_pvalue=ks.pvalue,
        ks_exact=ks.exact,
        wasserstein=w,
        n_reference=n1,
        n_current=n2,
    )


def _plan_for(reference: Sample, current: Sample) -> _QuantilePlan:
    n1 = reference.n if isinstance(reference, SortedColumns) else _rows(reference, "reference")
    n2 = current.n if isinstance(current, SortedColumns) else _rows(current, "current")
    return _quantile_plan(n1, n2)


def _rows(sample: npt.ArrayLike, name: str) -> int:
    shape = np.shape(sample)
    if not shape or shape[0] == 0:
        raise ValueError(f"{name}: no rows")
    return int(shape[0])


# --- multiple testing -----------------------------------------------------------------------------


def bonferroni_adjust(pvalues: npt.ArrayLike) -> FloatArray:
    """Bonferroni: ``min(1, m·p)``. Controls the chance of any false alarm among ``m`` features."""
    p = np.asarray(pvalues, dtype=np.float64)
    return np.asarray(np.minimum(1.0, p * p.size), dtype=np.float64)


def bh_adjust(pvalues: npt.ArrayLike) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values: ``min over j >= i of m·p_(j) / j`` in sorted order, capped
    at 1; ``adjusted < q`` is BH's rejection at false-discovery rate ``q``. Less strict than Bonferroni
    when many features drift together (the embedding case), still few false alarms under no drift."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    return adjusted.reshape(p.shape)
