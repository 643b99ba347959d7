"""Benchmark: the vectorised drift statistics (KS statistic + p-value and Wasserstein over every
column) against Evidently's per-column stattests, alibi-detect's KSDrift and a per-column scipy loop,
on the same arrays.

Data (numpy, fixed seed): reference and current windows of ``--rows`` (100 000) × ``--dims`` (512)
standard normals, ``--dtype`` float32 by default (embeddings are float32; ``float64`` sorts in four
radix passes instead of two); the current window has a 0.5 σ mean shift on 10 % of the dimensions,
so both no-drift and drift columns are timed.

``--runs`` rounds (1 by default; the published figures: 3), each timing, as the median of
``--repeats`` (3) calls unless stated:

- **Triage24** ``diagnostics.drift.column_stats(reference, current, workers=W)``: KS statistic, KS
  p-value and Wasserstein for all columns; with ``W = --workers`` (default: the CPU count) and with one
  thread; and with the reference given as ``sort_columns(reference)`` (the stored column-major form);
- **Evidently** (``evidently.legacy.calculations.stattests``): ``ks_stat_test`` and
  ``wasserstein_stat_test`` per column on ``pandas.Series`` (how Evidently's data-drift preset calls
  them), each returning its drift score: the KS p-value and the Wasserstein distance divided by
  ``max(std_ref, 0.001)``; ``--evidently-repeats`` calls per round (1 by default: ~30 s each); skipped,
  with the reason recorded, where Evidently is not importable;
- **alibi-detect** ``KSDrift(reference).predict(current, drift_type="feature")`` (KS only; its own
  venv, ``--alibi-python``, run as a subprocess on the same arrays saved as ``.npy``: it needs
  numpy < 2, which would change the numpy under test here; ``--alibi-repeats`` calls, 1 by default);
- **scipy loop** (first round only): ``scipy.stats.ks_2samp`` and ``scipy.stats.wasserstein_distance``
  per column (``--scipy-repeats``, 1 by default: the same work as Evidently's without pandas).

Each round times Triage24 first and Evidently and alibi-detect right after it (a round's ratios compare
timings taken under the same load: the machine is shared), then the other Triage24 variants; it
records the 1-minute load average before it, after the Triage24 timing and at its end. Top-level
figures are medians over the rounds (``seconds``: of the rounds' medians; ``speedup_vs_evidently``: of
the rounds' ratios); every round is kept under ``rounds``. Every timing also records this process's
CPU time (all threads; alibi-detect's its own), which other jobs on the machine disturb less.

Agreement: the largest absolute difference per statistic, Triage24 against the scipy loop (KS
statistic, p-value, W), against Evidently (p-value, normalised W) and against alibi-detect (KS
statistic and p-value, which alibi-detect stores as float32).

Evidently is not in the project's lock; run it from a separate environment that has Evidently,
numpy, scipy, pandas < 3, pydantic and PyYAML, with the project on PYTHONPATH
(``diagnostics.drift`` needs nothing else); alibi-detect from a third one:

    python3.11 -m venv /tmp/evenv
    /tmp/evenv/bin/pip install evidently numpy scipy "pandas<3" pydantic pyyaml
    python3.11 -m venv /tmp/alibienv && /tmp/alibienv/bin/pip install alibi-detect
    PYTHONPATH=. /tmp/evenv/bin/python benchmarks/drift.py --runs 3

Writes benchmarks/results/drift.json (rows, dims, dtype, seconds, seconds_single_thread,
seconds_sorted_reference, evidently_seconds, alibi_detect_seconds, scipy_loop_seconds,
speedup_vs_evidently, speedup_vs_alibi_detect, speedup_vs_scipy_loop, max_abs_diff, goal, goal_met,
versions, load averages, rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
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

from diagnostics.deep_diagnosis.drift_judge import normalised_wasserstein  # noqa: E402
from diagnostics.stats.drift import ColumnStats, column_stats, column_std, sort_columns  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
GOAL_SECONDS = 2.0
GOAL_SPEEDUP_VS_EVIDENTLY = 20.0

# Run by the alibi-detect interpreter: argv = reference.npy current.npy out.npz repeats.
ALIBI_SCRIPT = r"""
import json, sys, time
import numpy as np, scipy
ref, cur = np.load(sys.argv[1]), np.load(sys.argv[2])
import alibi_detect
from alibi_detect.cd import KSDrift
times, cpu = [], []
for _ in range(int(sys.argv[4])):
    start, start_cpu = time.perf_counter(), time.process_time()
    detector = KSDrift(ref, p_val=0.05)
    pred = detector.predict(cur, drift_type="feature", return_p_val=True, return_distance=True)
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
    print(f"  alibi-detect run {len(times)}: {times[-1]:.2f} s", file=sys.stderr, flush=True)
np.savez(sys.argv[3], p_val=pred["data"]["p_val"], distance=pred["data"]["distance"])
print(json.dumps({"times": times, "cpu": cpu, "alibi_detect": alibi_detect.__version__,
                  "numpy": np.__version__, "scipy": scipy.__version__}))
"""


def make_windows(
    rows: int, dims: int, dtype: str, seed: int
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]], list[int]]:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((rows, dims), dtype=np.float64).astype(dtype)
    cur = rng.standard_normal((rows, dims), dtype=np.float64).astype(dtype)
    shifted = sorted(rng.choice(dims, size=max(1, dims // 10), replace=False).tolist())
    cur[:, shifted] += np.asarray(0.5, dtype=dtype)
    return ref, cur, shifted


def load_1m() -> float:
    return round(os.getloadavg()[0], 2)


def timed(fn: Callable[[], Any], repeats: int, label: str) -> tuple[float, list[float], Any, float]:
    """Median wall time of ``repeats`` runs, every run's time, the last result, and the median CPU time
    of this process (all its threads) per run: less sensitive than wall time to other jobs' load."""
    times: list[float] = []
    cpu: list[float] = []
    result: Any = None
    for i in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        print(f"  {label} run {i + 1}/{repeats}: {times[-1]:.2f} s (cpu {cpu[-1]:.2f} s)", flush=True)
    return statistics.median(times), times, result, statistics.median(cpu)


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


def run_alibi(python: Path, arrays: tuple[Path, Path], repeats: int, workdir: Path) -> dict[str, Any]:
    """alibi-detect's KSDrift in its own interpreter: its times, versions and per-feature results."""
    out = workdir / "alibi.npz"
    proc = subprocess.run(
        [str(python), "-c", ALIBI_SCRIPT, str(arrays[0]), str(arrays[1]), str(out), str(repeats)],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stderr.splitlines():
        if line.startswith("  alibi-detect run"):
            print(line, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"alibi-detect failed (rc {proc.returncode}): {proc.stderr.strip()[-500:]}")
    info: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out) as saved:
        info["pvalue"] = np.asarray(saved["p_val"], dtype=np.float64)
        info["statistic"] = np.asarray(saved["distance"], dtype=np.float64)
    return info


def max_abs(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--runs", type=int, default=1, help="rounds of every timing (published: 3)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scipy-repeats", type=int, default=1, help="0 skips the scipy loop")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--evidently-repeats", type=int, default=1, help="Evidently calls per round")
    parser.add_argument("--alibi-python", type=Path, default=Path("/tmp/alibienv/bin/python"))  # noqa: S108
    parser.add_argument("--alibi-repeats", type=int, default=1, help="0 skips alibi-detect")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--out", type=Path, default=RESULTS / "drift.json")
    args = parser.parse_args()
    # A SIGTERM (a killed run) unwinds like Ctrl-C, so that the saved arrays are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.perf_counter()
    load_before = load_1m()
    ref, cur, shifted = make_windows(args.rows, args.dims, args.dtype, args.seed)
    print(f"windows: {args.rows} × {args.dims} {args.dtype}, {len(shifted)} dims shifted", flush=True)

    run_evidently, evidently_note = (None, "skipped (--no-evidently)")
    if not args.no_evidently:
        run_evidently, evidently_note = evidently_tests()
    alibi_note = "skipped (--alibi-repeats 0)"
    workdir = Path(tempfile.mkdtemp(prefix="drift-bench-"))
    arrays: tuple[Path, Path] | None = None
    if args.alibi_repeats > 0:
        if args.alibi_python.exists():
            arrays = (workdir / "reference.npy", workdir / "current.npy")
            np.save(arrays[0], ref)
            np.save(arrays[1], cur)
            alibi_note = f"{args.alibi_python}"
        else:
            alibi_note = f"skipped: no interpreter at {args.alibi_python} (see the module docstring)"

    rounds: list[dict[str, Any]] = []
    ours: ColumnStats | None = None
    sp: dict[str, Any] | None = None
    ev: dict[str, Any] | None = None
    alibi: dict[str, Any] | None = None
    try:
        for r in range(args.runs):
            print(f"=== round {r + 1}/{args.runs} (load {load_1m()}) ===", flush=True)
            rnd: dict[str, Any] = {"load_average_1m_before": load_1m()}
            # Triage24, then the others right after it: a round's ratios compare timings taken under
            # the same load (the machine is shared).
            print(f"triage24, {args.workers} worker(s):", flush=True)
            seconds, runs, measured, cpu = timed(
                lambda: column_stats(ref, cur, workers=args.workers), args.repeats, "triage24"
            )
            rnd["seconds"] = round(seconds, 3)
            rnd["seconds_repeats"] = [round(t, 3) for t in runs]
            rnd["cpu_seconds"] = round(cpu, 3)
            rnd["load_average_1m_after_triage24"] = load_1m()
            if run_evidently is not None:
                print(f"{evidently_note}: ks_stat_test + wasserstein_stat_test per column:", flush=True)
                ev_seconds, ev_runs, ev, ev_cpu = timed(
                    lambda run_ev=run_evidently: run_ev(ref, cur), args.evidently_repeats, "evidently"
                )
                rnd["evidently_seconds"] = round(ev_seconds, 3)
                rnd["evidently_repeats"] = [round(t, 3) for t in ev_runs]
                rnd["evidently_cpu_seconds"] = round(ev_cpu, 3)
                rnd["cpu_ratio_vs_evidently"] = round(ev_cpu / cpu, 1)
                rnd["speedup_vs_evidently"] = round(ev_seconds / seconds, 1)
            if arrays is not None:
                print(f"alibi-detect KSDrift ({args.alibi_python}):", flush=True)
                alibi = run_alibi(args.alibi_python, arrays, args.alibi_repeats, workdir)
                alibi_seconds = statistics.median(alibi["times"])
                rnd["alibi_detect_seconds"] = round(alibi_seconds, 3)
                rnd["alibi_detect_repeats"] = [round(t, 3) for t in alibi["times"]]
                rnd["alibi_detect_cpu_seconds"] = round(statistics.median(alibi["cpu"]), 3)
                rnd["speedup_vs_alibi_detect"] = round(alibi_seconds / seconds, 1)
            print("triage24, 1 worker:", flush=True)
            seconds_1, runs_1, result_1, cpu_1 = timed(
                lambda: column_stats(ref, cur, workers=1), args.repeats, "triage24"
            )
            sort_start = time.perf_counter()
            sorted_ref = sort_columns(ref)
            sort_seconds = time.perf_counter() - sort_start
            print(
                f"triage24, reference as sort_columns(ref) (sorting took {sort_seconds:.2f} s):", flush=True
            )
            seconds_sorted, runs_sorted, result_sorted, _ = timed(
                lambda stored=sorted_ref: column_stats(stored, cur, workers=args.workers),
                args.repeats,
                "triage24",
            )
            assert isinstance(measured, ColumnStats)
            for other in (result_1, result_sorted, ours):  # threads, layouts and rounds change no number
                if other is not None:
                    assert np.array_equal(other.ks_statistic, measured.ks_statistic)
                    assert np.array_equal(other.ks_pvalue, measured.ks_pvalue)
                    assert np.array_equal(other.wasserstein, measured.wasserstein)
            ours = measured
            rnd.update(
                {
                    "seconds_single_thread": round(seconds_1, 3),
                    "seconds_single_thread_repeats": [round(t, 3) for t in runs_1],
                    "cpu_seconds_single_thread": round(cpu_1, 3),
                    "seconds_sorted_reference": round(seconds_sorted, 3),
                    "seconds_sorted_reference_repeats": [round(t, 3) for t in runs_sorted],
                    "sort_reference_once_seconds": round(sort_seconds, 3),
                }
            )
            if r == 0 and args.scipy_repeats > 0:
                print("scipy loop (ks_2samp + wasserstein_distance per column):", flush=True)
                scipy_seconds, scipy_runs, sp, _ = timed(
                    lambda: scipy_loop(ref, cur), args.scipy_repeats, "scipy"
                )
                rnd["scipy_loop_seconds"] = round(scipy_seconds, 3)
                rnd["scipy_loop_repeats"] = [round(t, 3) for t in scipy_runs]
            rnd["load_average_1m_after"] = load_1m()
            rounds.append(rnd)
            print(json.dumps(rnd), flush=True)
    finally:  # the saved arrays (2 × 200 MB at the defaults)
        shutil.rmtree(workdir, ignore_errors=True)
    assert ours is not None
    ours_w_norm = normalised_wasserstein(ours.wasserstein, column_std(ref))

    def median_of(key: str) -> float | None:
        values = [rnd[key] for rnd in rounds if key in rnd]
        return (
            round(statistics.median(values), 1 if key.startswith(("speedup", "cpu_ratio")) else 3)
            if values
            else None
        )

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
        "runs": args.runs,
        "repeats": args.repeats,
        "seconds": median_of("seconds"),
        "seconds_per_round": [rnd["seconds"] for rnd in rounds],
        "cpu_seconds": median_of("cpu_seconds"),
        "seconds_single_thread": median_of("seconds_single_thread"),
        "cpu_seconds_single_thread": median_of("cpu_seconds_single_thread"),
        "seconds_sorted_reference": median_of("seconds_sorted_reference"),
        "sort_reference_once_seconds": median_of("sort_reference_once_seconds"),
        "evidently": evidently_note,
        "evidently_seconds": median_of("evidently_seconds"),
        "evidently_cpu_seconds": median_of("evidently_cpu_seconds"),
        "speedup_vs_evidently": median_of("speedup_vs_evidently"),
        "cpu_ratio_vs_evidently": median_of("cpu_ratio_vs_evidently"),
        "alibi_detect": alibi_note,
        "alibi_detect_seconds": median_of("alibi_detect_seconds"),
        "alibi_detect_cpu_seconds": median_of("alibi_detect_cpu_seconds"),
        "speedup_vs_alibi_detect": median_of("speedup_vs_alibi_detect"),
        "scipy_loop_seconds": median_of("scipy_loop_seconds"),
        "goal": {"seconds": GOAL_SECONDS, "speedup_vs_evidently": GOAL_SPEEDUP_VS_EVIDENTLY},
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__},
        "detected": {
            "ks_pvalue_below_0.01_uncorrected": int(np.sum(ours.ks_pvalue < 0.01)),
            "w_normalised_above_0.1": int(np.sum(ours_w_norm > 0.1)),
        },
    }
    if result["scipy_loop_seconds"] is not None and result["seconds"]:
        result["speedup_vs_scipy_loop"] = round(result["scipy_loop_seconds"] / result["seconds"], 1)
    speedup = result["speedup_vs_evidently"]
    result["goal_met"] = {
        "seconds": result["seconds"] is not None and result["seconds"] <= GOAL_SECONDS,
        "speedup_vs_evidently": speedup is not None and speedup >= GOAL_SPEEDUP_VS_EVIDENTLY,
    }
    if alibi is not None:
        result["versions"]["alibi_detect_env"] = {k: alibi[k] for k in ("alibi_detect", "numpy", "scipy")}

    max_abs_diff: dict[str, dict[str, float]] = {}
    if sp is not None:
        max_abs_diff["vs_scipy"] = {
            "ks_statistic": max_abs(ours.ks_statistic, sp["statistic"]),
            "ks_pvalue": max_abs(ours.ks_pvalue, sp["pvalue"]),
            "wasserstein": max_abs(ours.wasserstein, sp["wasserstein"]),
        }
    if ev is not None:
        max_abs_diff["vs_evidently"] = {
            "ks_pvalue": max_abs(ours.ks_pvalue, ev["pvalue"]),
            "wasserstein_normalised": max_abs(ours_w_norm, ev["wasserstein_normalised"]),
        }
    if alibi is not None:
        max_abs_diff["vs_alibi_detect"] = {
            "ks_statistic": max_abs(ours.ks_statistic, alibi["statistic"]),
            "ks_pvalue": max_abs(ours.ks_pvalue, alibi["pvalue"]),
            # alibi-detect keeps both as float32: the same numbers rounded to float32
            "ks_pvalue_vs_float32_of_ours": max_abs(ours.ks_pvalue.astype(np.float32), alibi["pvalue"]),
            "ks_statistic_vs_float32_of_ours": max_abs(
                ours.ks_statistic.astype(np.float32), alibi["statistic"]
            ),
        }
    result["max_abs_diff"] = max_abs_diff
    result["load_average_1m"] = {"before": load_before, "after": load_1m()}
    result["rounds"] = rounds
    result["wall_s"] = round(time.perf_counter() - started, 1)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    print(f"wrote {args.out} in {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
