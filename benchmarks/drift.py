"""Benchmark: the vectorised drift statistics (KS statistic + p-value and Wasserstein over every
column) against Evidently's per-column stattests and a per-column scipy loop, on the same arrays.

Data (numpy, fixed seed): reference and current windows of ``--rows`` (100 000) × ``--dims`` (512)
standard normals, ``--dtype`` float32 by default (embeddings are float32; ``float64`` doubles the
memory and the sort time); the current window has a 0.5 σ mean shift on 10 % of the dimensions, so
both no-drift and drift columns are timed.

Timed, each the median of ``--repeats`` (3) runs:

- **Triage24** ``diagnostics.drift.column_stats(reference, current, workers=W)``: sorts both windows,
  KS statistic, KS p-value and Wasserstein for all columns; with ``W = --workers`` (default: the CPU
  count) and with one thread; and with the reference already sorted (``sort_columns`` once, the stored
  form of a reference window), which is what a scheduled comparison against a fixed reference costs;
- **Evidently** (``evidently.legacy.calculations.stattests``): ``ks_stat_test`` and
  ``wasserstein_stat_test`` per column on ``pandas.Series`` (how Evidently's data-drift preset calls
  them), each returning its drift score: the KS p-value and the Wasserstein distance divided by
  ``max(std_ref, 0.001)``; skipped, with the reason recorded, where Evidently is not importable;
- **scipy loop**: ``scipy.stats.ks_2samp`` and ``scipy.stats.wasserstein_distance`` per column
  (``--scipy-repeats``, 1 by default: it is the same work as Evidently's without pandas).

Agreement: the largest absolute difference per statistic, Triage24 against the scipy loop (KS
statistic, p-value, W) and against Evidently (p-value, normalised W).

Evidently is not in the project's lock; run it from a separate environment that has Evidently,
numpy, scipy, pandas < 3, pydantic and PyYAML, with the project on PYTHONPATH
(``diagnostics.drift`` needs nothing else):

    python3.11 -m venv /tmp/evenv
    /tmp/evenv/bin/pip install evidently numpy scipy "pandas<3" pydantic pyyaml
    PYTHONPATH=. /tmp/evenv/bin/python benchmarks/drift.py

Writes benchmarks/results/drift.json (rows, dims, dtype, seconds, seconds_single_thread,
seconds_sorted_reference, evidently_seconds, scipy_loop_seconds, speedup_vs_evidently,
speedup_vs_scipy_loop, max_abs_diff, versions, load averages).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy
from scipy import stats as sps

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the project need not be installed in the benchmark's environment

from diagnostics.drift import column_stats, normalised_wasserstein, sort_columns  # noqa: E402
from diagnostics.drift.stats import ColumnStats, column_std  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def make_windows(
    rows: int, dims: int, dtype: str, seed: int
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]], list[int]]:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((rows, dims), dtype=np.float64).astype(dtype)
    cur = rng.standard_normal((rows, dims), dtype=np.float64).astype(dtype)
    shifted = sorted(rng.choice(dims, size=max(1, dims // 10), replace=False).tolist())
    cur[:, shifted] += np.asarray(0.5, dtype=dtype)
    return ref, cur, shifted


def timed(fn: Callable[[], Any], repeats: int, label: str) -> tuple[float, list[float], Any]:
    """Median wall time of ``repeats`` runs, every run's time, and the last result."""
    times: list[float] = []
    result: Any = None
    for i in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        print(f"  {label} run {i + 1}/{repeats}: {times[-1]:.2f} s", flush=True)
    return statistics.median(times), times, result


def scipy_loop(ref: npt.NDArray[np.floating[Any]], cur: npt.NDArray[np.floating[Any]]) -> dict[str, Any]:
    d, p, w = [], [], []
    for j in range(ref.shape[1]):
        ks = sps.ks_2samp(ref[:, j], cur[:, j])
        d.append(float(ks.statistic))
        p.append(float(ks.pvalue))
        w.append(float(sps.wasserstein_distance(ref[:, j], cur[:, j])))
    return {"statistic": np.array(d), "pvalue": np.array(p), "wasserstein": np.array(w)}


def evidently_tests() -> tuple[Callable[..., dict[str, Any]] | None, str]:
    """Evidently's per-column loop, or None and why it cannot run here."""
    try:
        import evidently
        import pandas as pd
        from evidently.legacy.calculations.stattests import ks_stat_test, wasserstein_stat_test
        from evidently.legacy.core import ColumnType
    except Exception as exc:  # any import failure means: not available in this environment
        return None, f"evidently not importable: {type(exc).__name__}: {exc}"

    def run(ref: npt.NDArray[np.floating[Any]], cur: npt.NDArray[np.floating[Any]]) -> dict[str, Any]:
        p, w = [], []
        for j in range(ref.shape[1]):
            r, c = pd.Series(ref[:, j]), pd.Series(cur[:, j])
            p.append(float(ks_stat_test(r, c, ColumnType.Numerical, None).drift_score))
            w.append(float(wasserstein_stat_test(r, c, ColumnType.Numerical, None).drift_score))
        return {"pvalue": np.array(p), "wasserstein_normalised": np.array(w)}

    return run, f"evidently {evidently.__version__}, pandas {pd.__version__}"


def max_abs(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scipy-repeats", type=int, default=1, help="0 skips the scipy loop")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--out", type=Path, default=RESULTS / "drift.json")
    args = parser.parse_args()

    started = time.perf_counter()
    load_before = os.getloadavg()
    ref, cur, shifted = make_windows(args.rows, args.dims, args.dtype, args.seed)
    print(f"windows: {args.rows} × {args.dims} {args.dtype}, {len(shifted)} dims shifted", flush=True)

    print(f"triage24, {args.workers} worker(s):", flush=True)
    seconds, runs, ours = timed(
        lambda: column_stats(ref, cur, workers=args.workers), args.repeats, "triage24"
    )
    print("triage24, 1 worker:", flush=True)
    seconds_1, runs_1, ours_1 = timed(lambda: column_stats(ref, cur, workers=1), args.repeats, "triage24")
    sort_start = time.perf_counter()
    sorted_ref = sort_columns(ref)
    sort_seconds = time.perf_counter() - sort_start
    print(f"triage24, stored sorted reference (sorting it took {sort_seconds:.2f} s):", flush=True)
    seconds_sorted, runs_sorted, ours_sorted = timed(
        lambda: column_stats(sorted_ref, cur, workers=args.workers), args.repeats, "triage24"
    )
    assert isinstance(ours, ColumnStats)
    for other in (ours_1, ours_sorted):  # threads and a stored reference change no number
        assert np.array_equal(other.ks_pvalue, ours.ks_pvalue)
        assert np.array_equal(other.wasserstein, ours.wasserstein)
    ours_w_norm = normalised_wasserstein(ours.wasserstein, column_std(ref))

    result: dict[str, Any] = {
        "benchmark": "drift",
        "command": " ".join(["benchmarks/drift.py", *sys.argv[1:]]),
        "python": sys.executable,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rows": args.rows,
        "dims": args.dims,
        "dtype": args.dtype,
        "shifted_dims": len(shifted),
        "workers": args.workers,
        "seconds": round(seconds, 3),
        "seconds_runs": [round(t, 3) for t in runs],
        "seconds_single_thread": round(seconds_1, 3),
        "seconds_single_thread_runs": [round(t, 3) for t in runs_1],
        "seconds_sorted_reference": round(seconds_sorted, 3),
        "seconds_sorted_reference_runs": [round(t, 3) for t in runs_sorted],
        "sort_reference_once_seconds": round(sort_seconds, 3),
        "goal": {"seconds": 2.0, "speedup_vs_evidently": 20.0},
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__},
        "detected": {
            "ks_pvalue_below_0.01_uncorrected": int(np.sum(ours.ks_pvalue < 0.01)),
            "w_normalised_above_0.1": int(np.sum(ours_w_norm > 0.1)),
        },
    }

    max_abs_diff: dict[str, dict[str, float]] = {}
    if args.scipy_repeats > 0:
        print("scipy loop (ks_2samp + wasserstein_distance per column):", flush=True)
        scipy_seconds, scipy_runs, sp = timed(lambda: scipy_loop(ref, cur), args.scipy_repeats, "scipy")
        result["scipy_loop_seconds"] = round(scipy_seconds, 3)
        result["scipy_loop_runs"] = [round(t, 3) for t in scipy_runs]
        result["speedup_vs_scipy_loop"] = round(scipy_seconds / seconds, 1)
        max_abs_diff["vs_scipy"] = {
            "ks_statistic": max_abs(ours.ks_statistic, sp["statistic"]),
            "ks_pvalue": max_abs(ours.ks_pvalue, sp["pvalue"]),
            "wasserstein": max_abs(ours.wasserstein, sp["wasserstein"]),
        }

    run_evidently, evidently_note = (None, "skipped (--no-evidently)")
    if not args.no_evidently:
        run_evidently, evidently_note = evidently_tests()
    result["evidently"] = evidently_note
    if run_evidently is not None:
        print(f"{evidently_note}: ks_stat_test + wasserstein_stat_test per column:", flush=True)
        ev_seconds, ev_runs, ev = timed(lambda: run_evidently(ref, cur), args.repeats, "evidently")
        result["evidently_seconds"] = round(ev_seconds, 3)
        result["evidently_runs"] = [round(t, 3) for t in ev_runs]
        result["speedup_vs_evidently"] = round(ev_seconds / seconds, 1)
        result["speedup_vs_evidently_sorted_reference"] = round(ev_seconds / seconds_sorted, 1)
        max_abs_diff["vs_evidently"] = {
            "ks_pvalue": max_abs(ours.ks_pvalue, ev["pvalue"]),
            "wasserstein_normalised": max_abs(ours_w_norm, ev["wasserstein_normalised"]),
        }
    else:
        result["evidently_seconds"] = None
        result["speedup_vs_evidently"] = None
    result["max_abs_diff"] = max_abs_diff
    result["load_average_1m"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)}
    result["wall_s"] = round(time.perf_counter() - started, 1)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {args.out} in {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
