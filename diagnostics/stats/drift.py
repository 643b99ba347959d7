"""Two-sample drift statistics per column, vectorised across columns: the Kolmogorov-Smirnov statistic
and p-value and the 1-D Wasserstein distance, from one merged sort per column.

Every statistic equals scipy's per-column result (``scipy.stats.ks_2samp(ref[:, j], cur[:, j])`` with
its defaults, ``scipy.stats.wasserstein_distance(ref[:, j], cur[:, j])``, tested to 1e-12), but one
call covers all columns: 100k × 512 float32 takes ~1.3-1.7 s on 2 (shared) cores, ~2.3 s on one, against
~37 s for Evidently and ~40 s for a loop of scipy calls (``benchmarks/drift.py``, ``benchmarks/RESULTS.md``;
~4.3 ms of one core per column, ~40 % of it the two radix passes). Per column:

- **one merged sort**: both samples are put side by side and their values, as order-preserving integer
  keys, are radix-sorted together (numpy's stable argsort of 16-bit digits is a radix sort: two passes
  for float32, four for float64, a digit that is the same for every value is skipped). The merged
  order tells, at each position, how many values of each sample lie at or below it; nothing is sorted
  twice and nothing is searched;
- **KS statistic** from that pass: ``s_i = n_cur·#ref - n_ref·#cur`` over the first ``i`` merged values
  is ``n_ref·n_cur·(F_ref - F_cur)`` in exact integers (one cumulative sum); ``D = max(max s, -min s)``
  over the last copy of every distinct value (ties), and the float is formed at the extreme positions
  exactly as scipy forms it (``count / n``), so the statistic is the same float;
- **Wasserstein-1** from the same pass: ``∫|F_ref - F_cur| = Σ |s_i|·(x_(i+1) - x_(i)) / (n_ref·n_cur)``,
  in float64 (scipy's formula, with the CDF gap held as an exact integer);
- **KS p-value**: scipy's distributions with ``ks_2samp``'s ``method="auto"`` rule: exact when both
  samples have at most 10 000 values (scipy's exact routine, called once per distinct statistic), else
  the asymptotic ``kstwo.sf(D, round(n·m/(n+m)))``. Its costly branch (``2.2 <= n·D² < 370``, where
  scipy sums the Smirnov series in C at ~60 ms a column, holding the GIL) is summed here with numpy
  in ~8 ms and agrees with scipy to ~1e-14 relative (:mod:`diagnostics.stats.ks_pvalues`).

The corrections over a family of features (Benjamini-Hochberg, Bonferroni) are in
:mod:`diagnostics.stats.multiple_testing`.

Columns are processed in blocks (``chunk_columns``; bounded memory, every buffer reused from block to
block), optionally on threads: numpy's sorts, gathers and ufuncs release the GIL. Inputs must be
finite: missing values are the caller's to drop (see ``diagnostics.deep_diagnosis.drift_judge``).
"""

from __future__ import annotations

import math
import queue
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from diagnostics.stats.arrays import BoolArray, FloatArray, IntArray
from diagnostics.stats.ks_pvalues import KsResult, exact_available, ks_pvalue, ks_pvalue_asymptotic

DEFAULT_CHUNK_COLUMNS = 32  # columns per block: 32 × 200k float32 values = 25.6 MB per block buffer


@dataclass(frozen=True)
class SortedColumns:
    """A sample with every column sorted, stored column-major: ``values[j]`` is column ``j`` ascending.

    The statistics accept it wherever they accept a matrix (a stored reference window kept in this
    form needs no transposition; the merged sort does not need the order).
    """

    values: npt.NDArray[np.floating[Any]]  # (d, n)

    @property
    def n(self) -> int:
        return int(self.values.shape[1])

    @property
    def d(self) -> int:
        return int(self.values.shape[0])


Sample: TypeAlias = "npt.ArrayLike | SortedColumns"


@dataclass(frozen=True)
class ColumnStats:
    """KS and Wasserstein per column of one reference/current pair, from one merged pass per column."""

    ks_statistic: FloatArray
    ks_pvalue: FloatArray
    ks_exact: BoolArray
    wasserstein: FloatArray
    n_reference: int
    n_current: int


# --- inputs ---------------------------------------------------------------------------------------


def _as_matrix(
    sample: npt.ArrayLike, name: str, *, check_finite: bool = True
) -> npt.NDArray[np.floating[Any]]:
    """An (n, d) floating matrix; a 1-D sample is one column. float32 stays float32 (it sorts in half
    the passes, and the statistics are computed in float64 from it, as scipy does)."""
    arr = np.asarray(sample)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 1-D or 2-D (rows × columns) array, got {arr.ndim}-D")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: no rows")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if check_finite and not np.isfinite(arr).all():
        raise _not_finite(name)
    return arr


def _not_finite(name: str) -> ValueError:
    return ValueError(f"{name}: contains NaN or infinite values; drop them before comparing")


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


def _prepare(sample: Sample, name: str) -> SortedColumns | npt.NDArray[np.floating[Any]]:
    # Finiteness is checked on the merged sort instead (NaN and ±inf sort to the ends): a full pass
    # over both windows less.
    return sample if isinstance(sample, SortedColumns) else _as_matrix(sample, name, check_finite=False)


def _shape(sample: SortedColumns | npt.NDArray[np.floating[Any]]) -> tuple[int, int]:
    if isinstance(sample, SortedColumns):
        return sample.n, sample.d
    return int(sample.shape[0]), int(sample.shape[1])


def _dtype(sample: SortedColumns | npt.NDArray[np.floating[Any]]) -> np.dtype[Any]:
    return sample.values.dtype if isinstance(sample, SortedColumns) else sample.dtype


# --- the merged pass over one block of columns ----------------------------------------------------

# Exact integers s = n_cur·#ref - n_ref·#cur: two positions with different s have CDF gaps at least
# 1 / (n_ref·n_cur) apart, far more than the rounding of ``count / n`` (a few 1e-16), while n_ref·n_cur
# stays below this; above it, near-extreme positions are also evaluated (see _extreme_gap).
_EXACT_GAP_LIMIT = 2**49
_ROW_CHUNK = 4096  # rows per step of the block transposition (stays in the L1/L2 caches)


class _Scratch:
    """One worker's buffers for blocks of ``c`` columns of ``n1 + n2`` merged values, reused."""

    def __init__(self, c: int, n1: int, n2: int, dtype: np.dtype[Any], transposed: bool) -> None:
        n = n1 + n2
        key_type = np.int32 if dtype == np.float32 else np.int64
        self.block = np.empty((c, n), dtype=dtype)  # row j: reference values of the column, then current
        self.rows = np.empty((max(n1, n2), c), dtype=dtype) if transposed else None
        self.key = np.empty(n, dtype=key_type)
        self.digit = np.empty(n, dtype=np.uint16)
        self.gathered = np.empty(n, dtype=np.uint16)
        self.perm = (np.empty(n, dtype=np.intp), np.empty(n, dtype=np.intp))
        self.values = np.empty(n, dtype=dtype)
        weight_type = np.int32 if max(n1, n2) < 2**31 else np.int64
        self.weights = np.empty(n, dtype=weight_type)
        self.gap = np.empty(n, dtype=np.int64)
        self.masked = np.empty(n, dtype=np.int64)
        self.tie = np.empty(n - 1, dtype=np.bool_)
        self.delta = np.empty(n - 1, dtype=np.float64)
        # +n_cur for a reference value, -n_ref for a current one: the cumulative sum is s
        self.step = np.empty(n, dtype=weight_type)
        self.step[:n1] = n2
        self.step[n1:] = -n1


def _fill(
    dest: npt.NDArray[np.floating[Any]],
    sample: SortedColumns | npt.NDArray[np.floating[Any]],
    start: int,
    stop: int,
    rows: npt.NDArray[np.floating[Any]] | None,
) -> None:
    """Columns ``start:stop`` of ``sample``, one per row of ``dest`` (c × n)."""
    c = stop - start
    if isinstance(sample, SortedColumns):
        np.copyto(dest, sample.values[start:stop])
        return
    if rows is None or sample.strides[0] <= sample.strides[1]:  # columns contiguous: a direct copy
        np.copyto(dest, sample[:, start:stop].T)
        return
    # Row-major input: gather the columns' rows (short contiguous pieces), then transpose in cached steps.
    n = sample.shape[0]
    np.copyto(rows[:n, :c], sample[:, start:stop])
    for r in range(0, n, _ROW_CHUNK):
        e = min(r + _ROW_CHUNK, n)
        np.copyto(dest[:, r:e], rows[r:e, :c].T)


_LITTLE_ENDIAN = sys.byteorder == "little"


def _merged_order(scratch: _Scratch, row: npt.NDArray[np.floating[Any]]) -> IntArray:
    """The stable ascending order of ``row``: LSD radix sort of order-preserving integer keys, one
    numpy stable argsort (itself a radix sort) per 16-bit digit."""
    n = row.shape[0]
    key = scratch.key
    bits = row.view(key.dtype)
    # Negative floats: flip all but the sign bit, so that the keys, as signed integers, are in the
    # floats' order (-0.0 and +0.0 become -1 and 0: adjacent; ties are found on the values).
    np.right_shift(bits, bits.dtype.itemsize * 8 - 1, out=key)
    np.bitwise_and(key, 2 ** (bits.dtype.itemsize * 8 - 1) - 1, out=key)
    np.bitwise_xor(key, bits, out=key)
    n_digits = key.dtype.itemsize // 2
    digits = key.view(np.uint16).reshape(n, n_digits)
    perm: IntArray | None = None
    spare = 0
    for j in range(n_digits):
        np.copyto(scratch.digit, digits[:, j if _LITTLE_ENDIAN else n_digits - 1 - j])
        if scratch.digit.min() == scratch.digit.max():
            continue  # the same for every value: the order so far stands
        if perm is None:
            digit = scratch.digit
        else:
            digit = np.take(scratch.digit, perm, out=scratch.gathered, mode="wrap")
        if j == n_digits - 1:  # the top digit carries the sign
            order = np.argsort(digit.view(np.int16), kind="stable")
        else:
            order = np.argsort(digit, kind="stable")
        if perm is None:
            perm = order
        else:  # mode="wrap": in range anyway, and numpy writes straight into `out` (no checked copy)
            perm = np.take(perm, order, out=scratch.perm[spare], mode="wrap")
            spare = 1 - spare
    return np.arange(n, dtype=np.intp) if perm is None else perm


def _extreme_gap(
    gap: npt.NDArray[np.int64], extreme: int, n1: int, n2: int, valid: BoolArray | None
) -> float:
    """The largest (``extreme >= 0``: max) or smallest (min) CDF difference ``#ref/n1 - #cur/n2`` as
    scipy computes it in floats, over the positions whose exact gap is ``extreme``. Different count
    pairs with the same exact gap can round differently, so all such positions are evaluated."""
    slack = 0 if n1 * n2 < _EXACT_GAP_LIMIT else math.ceil(8 * 2.0**-52 * n1 * n2) + 1
    pos = np.flatnonzero(gap >= extreme - slack) if extreme >= 0 else np.flatnonzero(gap <= extreme + slack)
    if valid is not None:
        pos = pos[valid[pos]]
    m = pos + 1  # values taken so far
    cur = (m * n2 - gap[pos]) // (n1 + n2)
    diff = (m - cur) / n1 - cur / n2
    return float(diff.max()) if extreme >= 0 else float(diff.min())


def _column(
    scratch: _Scratch, row: npt.NDArray[np.floating[Any]], n1: int, n2: int, want_ks: bool, want_w: bool
) -> tuple[float, float]:
    """KS statistic and Wasserstein distance of one merged column (reference values first)."""
    perm = _merged_order(scratch, row)
    values = np.take(row, perm, out=scratch.values, mode="wrap")
    if not (math.isfinite(values[0]) and math.isfinite(values[-1])):  # NaN and ±inf sort to the ends
        bad = perm[0] if not math.isfinite(values[0]) else perm[-1]
        raise _not_finite("reference" if bad < n1 else "current")
    gap = np.cumsum(np.take(scratch.step, perm, out=scratch.weights, mode="wrap"), out=scratch.gap)
    d = w = math.nan
    if want_ks:
        tie = np.equal(values[1:], values[:-1], out=scratch.tie)
        valid: BoolArray | None = None
        top = gap
        if tie.any():  # only the last copy of a value carries its CDF: the others count as gap 0
            top = scratch.masked
            np.copyto(top, gap)
            np.copyto(top[:-1], 0, where=tie)
            valid = np.append(~tie, True)
        d_plus = _extreme_gap(gap, int(top.max()), n1, n2, valid)
        d_minus = min(1.0, max(0.0, -_extreme_gap(gap, int(top.min()), n1, n2, valid)))
        d = d_minus if d_minus > d_plus else d_plus  # ks_2samp's choice
    if want_w:
        delta = np.subtract(values[1:], values[:-1], out=scratch.delta, dtype=np.float64)  # >= 0
        np.multiply(gap[:-1], delta, out=delta)
        w = float(np.abs(delta, out=delta).sum()) / (n1 * n2)
    return d, w


def _over_blocks(
    reference: Sample,
    current: Sample,
    *,
    want_ks: bool,
    want_w: bool,
    workers: int,
    chunk_columns: int,
    want_p: bool = False,
) -> tuple[FloatArray, FloatArray, int, int, KsResult | None]:
    """D and W of every column (NaN where not wanted), n_ref, n_cur, and the KS p-values if asked for
    (asymptotic ones block by block on the workers, exact ones once per distinct statistic at the end)."""
    ref = _prepare(reference, "reference")
    cur = _prepare(current, "current")
    (n1, d1), (n2, d2) = _shape(ref), _shape(cur)
    if d1 != d2:
        raise ValueError(f"reference has {d1} columns and current {d2}: they must describe the same features")
    if chunk_columns < 1 or workers < 1:
        raise ValueError("chunk_columns and workers must be at least 1")
    dtype = np.result_type(_dtype(ref), _dtype(cur))  # compare in the wider type, as scipy does
    c = max(1, min(chunk_columns, d1))
    transposed = not (isinstance(ref, SortedColumns) and isinstance(cur, SortedColumns))
    d_out = np.full(d1, np.nan)
    w_out = np.full(d1, np.nan)
    asymptotic = want_p and not exact_available(n1, n2)
    p_out = np.full(d1, np.nan)
    threads = min(workers, -(-d1 // c))
    blocks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
    for block_range in _block_ranges(d1, c, threads):
        blocks.put(block_range)
    _prime_allocator()

    def work() -> None:
        scratch = _Scratch(c, n1, n2, dtype, transposed)
        while True:
            try:
                start, stop = blocks.get_nowait()
            except queue.Empty:
                return
            block = scratch.block[: stop - start]
            _fill(block[:, :n1], ref, start, stop, scratch.rows)
            _fill(block[:, n1:], cur, start, stop, scratch.rows)
            for k in range(stop - start):
                d_out[start + k], w_out[start + k] = _column(scratch, block[k], n1, n2, want_ks, want_w)
            if asymptotic:  # while the other workers sort (the costly p-values release the GIL)
                p_out[start:stop] = ks_pvalue_asymptotic(d_out[start:stop], n1, n2)

    if threads <= 1:
        work()
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(work) for _ in range(threads)]:
                future.result()
    if not want_p:
        return d_out, w_out, n1, n2, None
    if asymptotic:
        return d_out, w_out, n1, n2, KsResult(d_out, p_out, np.zeros(d1, dtype=bool))
    return d_out, w_out, n1, n2, ks_pvalue(d_out, n1, n2)


def _block_ranges(d: int, c: int, threads: int) -> list[tuple[int, int]]:
    """Column ranges of ``c`` columns, the last ``2·threads·c`` in quarter blocks: the workers then
    finish within a few columns of each other instead of up to a whole block apart."""
    ranges: list[tuple[int, int]] = []
    start = 0
    small = max(1, c // 4) if threads > 1 else c
    while start < d:
        size = c if d - start > 2 * threads * c else small
        ranges.append((start, min(start + size, d)))
        start += size
    return ranges


_primed = False


def _prime_allocator() -> None:
    """Free one 30 MiB block once, so that glibc's malloc keeps the per-column temporaries.

    numpy's argsort allocates its result and its radix buffer (1.6 MB each for a 100k + 100k column) on
    every call. glibc serves a request above its mmap threshold (128 KiB at start) with a fresh mmap,
    whose pages then fault in one at a time — on this project's machines ~15 % of the run time. Freeing
    an mmapped block raises the threshold to that block's size (glibc's dynamic threshold, up to 32 MiB),
    after which such temporaries come from the heap and are reused. This is what any program that frees
    a large array triggers; elsewhere (another libc) it is one harmless allocation.
    """
    global _primed
    if not _primed:
        block = np.empty(30 * 2**20, dtype=np.uint8)
        del block
        _primed = True


# --- one function per statistic -------------------------------------------------------------------


def ks_statistic(
    reference: Sample, current: Sample, *, workers: int = 1, chunk_columns: int = DEFAULT_CHUNK_COLUMNS
) -> FloatArray:
    """The two-sided two-sample KS statistic ``sup |F_ref - F_cur|`` of every column (scipy's float;
    ``ks_2samp`` reports it rounded to the lattice ``h / lcm(n_ref, n_cur)`` when its p-value is exact,
    which :func:`ks_pvalue` does too)."""
    d, _, _, _, _ = _over_blocks(
        reference, current, want_ks=True, want_w=False, workers=workers, chunk_columns=chunk_columns
    )
    return d


def ks_test(
    reference: Sample, current: Sample, *, workers: int = 1, chunk_columns: int = DEFAULT_CHUNK_COLUMNS
) -> KsResult:
    """``ks_2samp(reference[:, j], current[:, j])`` for every column ``j``: statistic and p-value."""
    _, _, _, _, ks = _over_blocks(
        reference,
        current,
        want_ks=True,
        want_w=False,
        workers=workers,
        chunk_columns=chunk_columns,
        want_p=True,
    )
    assert ks is not None
    return ks


def wasserstein_distance(
    reference: Sample, current: Sample, *, workers: int = 1, chunk_columns: int = DEFAULT_CHUNK_COLUMNS
) -> FloatArray:
    """The 1-D Wasserstein-1 distance of every column, in the columns' units (``wasserstein_distance``)."""
    _, w, _, _, _ = _over_blocks(
        reference, current, want_ks=False, want_w=True, workers=workers, chunk_columns=chunk_columns
    )
    return w


def column_stats(
    reference: Sample, current: Sample, *, workers: int = 1, chunk_columns: int = DEFAULT_CHUNK_COLUMNS
) -> ColumnStats:
    """KS (statistic, p-value) and Wasserstein of every column in one pass: one merged sort per column."""
    _, w, n1, n2, ks = _over_blocks(
        reference,
        current,
        want_ks=True,
        want_w=True,
        workers=workers,
        chunk_columns=chunk_columns,
        want_p=True,
    )
    assert ks is not None
    return ColumnStats(
        ks_statistic=ks.statistic,
        ks_pvalue=ks.pvalue,
        ks_exact=ks.exact,
        wasserstein=w,
        n_reference=n1,
        n_current=n2,
    )
