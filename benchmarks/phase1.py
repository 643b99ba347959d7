"""Benchmark: alert POST -> phase-1 evidence stored, on the real local stack.

The whole local stack (Airflow 3.3 with the Triage24 plugin, Prometheus, Alertmanager, the testbed
with real models and traffic) runs in a temporary state directory on free ports. ``--runs`` times
(default 10), one Alertmanager-shaped webhook delivery for a new alert group of the ``testbed``
target is POSTed to the intake; the clock runs from the POST until

- ``first evidence``: the first phase-1 check result JSON exists under
  ``<artifacts>/<run id>/golden_window/`` (what an on-call engineer can read first), and
- ``phase 1 complete``: the phase summary (all four checks ranked) exists.

Runs are sequential; one warm-up incident runs first (Airflow's execution API initialises itself on
first use). Each run is bounded by ``--timeout`` seconds.

    .venv/bin/python benchmarks/phase1.py [--runs 10]

Writes benchmarks/results/phase1.json (first_evidence_median_s, phase1_complete_median_s, ...).
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from diagnostics.config import Settings
from diagnostics.intake.airflow_api import AirflowApi
from harness.stack import Stack

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
WEBHOOK = "/triage24/intake/alertmanager"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    return (
        f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


def median_range(name: str, values: list[float]) -> dict[str, Any]:
    """``<name>_median_s`` and ``<name>_range_s`` of a list of seconds."""
    return {
        f"{name}_median_s": round(statistics.median(values), 3),
        f"{name}_range_s": [min(values), max(values)],
    }


def delivery(group: str) -> dict[str, Any]:
    """An Alertmanager v4 delivery for one new alert group of the testbed's canary."""
    labels = {"target": "testbed", "version": "canary", "bench": group}
    alert_labels = {**labels, "alertname": "Http5xxBurst", "severity": "high"}
    return {
        "version": "4",
        "groupKey": '{}:{bench="' + group + '", target="testbed", version="canary"}',
        "status": "firing",
        "receiver": "triage24",
        "groupLabels": labels,
        "commonLabels": alert_labels,
        "commonAnnotations": {"summary": "phase-1 benchmark"},
        "externalURL": "http://127.0.0.1:9093",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": alert_labels,
                "annotations": {"summary": "phase-1 benchmark"},
                "startsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": uuid.uuid4().hex[:16],
            }
        ],
    }


def one_incident(s: Settings, token: str, group: str, timeout_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    resp = httpx.post(
        f"{s.airflow_url}{WEBHOOK}",
        json=delivery(group),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if resp.status_code != 201:
        raise RuntimeError(f"intake answered {resp.status_code}: {resp.text[:300]}")
    run_id = resp.json()["run_id"]
    phase_dir = s.artifacts / run_id / "golden_window"
    first: tuple[float, str] | None = None
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed > timeout_s:
            raise RuntimeError(f"{run_id}: phase 1 not complete after {timeout_s:.0f} s (first: {first})")
        stored = [p for p in phase_dir.glob("*.json") if not p.name.startswith(".")]
        if first is None and any(p.stem != "summary" for p in stored):
            first = (elapsed, sorted(p.stem for p in stored if p.stem != "summary")[0])
        if any(p.stem == "summary" for p in stored):
            break
        time.sleep(0.05)
    summary = json.loads((phase_dir / "summary.json").read_text())
    return {
        "run_id": run_id,
        "first_evidence_s": round(first[0] if first else elapsed, 3),
        "first_check": first[1] if first else "summary",
        "phase1_complete_s": round(elapsed, 3),
        "phase_status": summary["status"],
        "checks": summary["checks"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="incidents measured (after one warm-up)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per incident")
    args = parser.parse_args()
    if not 1 <= args.runs <= 100:
        parser.error("--runs must be between 1 and 100")

    root = Path(tempfile.mkdtemp(prefix="triage24-bench-phase1-"))
    s = Settings(
        home=root / "home",
        **{
            f"{name}_port": free_port()
            for name in ("airflow", "prometheus", "alertmanager", "testbed_stable", "testbed_canary")
        },
        testbed_gateway_port=free_port(),
    )
    stack = Stack(s, with_testbed=True)
    samples: list[dict[str, Any]] = []
    try:
        print("starting the local stack with the testbed (real models)…", flush=True)
        stack.up(timeout_s=400)
        token = stack.secrets["TRIAGE24_WEBHOOK_TOKEN"]
        with AirflowApi(s.airflow_url, "admin", stack.secrets["TRIAGE24_ADMIN_PASSWORD"]) as api:
            api.wait_for_dag("incident_response", timeout_s=180)
        warm = one_incident(s, token, "warmup", args.timeout)
        print(f"warm-up: {json.dumps(warm)}", flush=True)
        for i in range(args.runs):
            samples.append(one_incident(s, token, f"run{i}-{uuid.uuid4().hex[:6]}", args.timeout))
            print(f"run {i + 1}/{args.runs}: {json.dumps(samples[-1])}", flush=True)
            time.sleep(2)  # let the run's last task finish before the next delivery
    finally:
        stack.down()

    first = [x["first_evidence_s"] for x in samples]
    full = [x["phase1_complete_s"] for x in samples]
    result = {
        "benchmark": "phase1",
        "command": f"benchmarks/phase1.py --runs {args.runs}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **median_range("first_evidence", first),
        **median_range("phase1_complete", full),
        "goal": {"first_evidence_median_s": 5.0},
        "runs": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "phase1.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
