"""Benchmark: cold start time and memory of the local stack (Airflow 3.3 + Prometheus + Alertmanager).

Cold start = from an empty state directory (no Airflow DB yet) until every component reports healthy,
including `airflow db migrate`. Memory is read after the stack has run one selfcheck DAG run (so the
LocalExecutor workers have done real work): the sum of RSS over every process of the stack (which
double-counts shared pages) and the sum of PSS (shared pages split between processes).

    .venv/bin/python benchmarks/stack.py [--runs 3] [--with-testbed]

Writes benchmarks/results/stack.json (cold_start_s, rss_mib, ...).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from diagnostics.config import Settings
from diagnostics.intake.airflow_api import AirflowApi
from harness.stack import Stack
from harness.stack.manager import stack_processes

RESULTS = Path(__file__).resolve().parent / "results"


def measure_once(with_testbed: bool, settle_s: float) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="triage24-bench-"))
    stack = Stack(Settings(home=home), with_testbed=with_testbed)
    t0 = time.perf_counter()
    stack.up(timeout_s=300)
    cold_start_s = time.perf_counter() - t0
    try:
        with AirflowApi(stack.settings.airflow_url, "admin", stack.secrets["TRIAGE24_ADMIN_PASSWORD"]) as api:
            api.wait_for_dag("triage24_selfcheck")
            api.trigger("triage24_selfcheck", run_id="bench")
            state = api.wait_run("triage24_selfcheck", "bench", timeout_s=300)["state"]
        time.sleep(settle_s)
        rss = pss = 0
        per_name: dict[str, float] = {}
        procs = stack_processes(stack)
        for proc in procs:
            try:
                mem = proc.memory_full_info()
                name = " ".join(proc.cmdline()[:2])[-60:]
            except psutil.Error:
                continue
            rss += mem.rss
            pss += mem.pss
            per_name[f"{proc.pid} {name}"] = round(mem.rss / 2**20, 1)
        return {
            "cold_start_s": round(cold_start_s, 2),
            "rss_mib": round(rss / 2**20, 1),
            "pss_mib": round(pss / 2**20, 1),
            "processes": len(procs),
            "selfcheck_state": state,
            "per_process_rss_mib": per_name,
        }
    finally:
        stack.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--with-testbed", action="store_true")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait before reading memory")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        r = measure_once(args.with_testbed, args.settle)
        print(
            f"run {i + 1}: cold start {r['cold_start_s']} s, RSS {r['rss_mib']} MiB, PSS {r['pss_mib']} MiB"
        )
        runs.append(r)
    result = {
        "benchmark": "stack",
        "command": f"benchmarks/stack.py --runs {args.runs}"
        + (" --with-testbed" if args.with_testbed else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
        "with_testbed": args.with_testbed,
        "cold_start_s": statistics.median(float(r["cold_start_s"]) for r in runs),  # type: ignore[arg-type]
        "rss_mib": statistics.median(float(r["rss_mib"]) for r in runs),  # type: ignore[arg-type]
        "pss_mib": statistics.median(float(r["pss_mib"]) for r in runs),  # type: ignore[arg-type]
        "goal_rss_mib": 2048,
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "stack_with_testbed.json" if args.with_testbed else "stack.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
