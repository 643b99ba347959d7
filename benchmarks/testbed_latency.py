"""Benchmark: the testbed's per-request latency per channel on this CPU, and its processes' memory.

Needs the local stack with the testbed running (`triage24 stack up`); the stack's own background
traffic (2 req/s by default) keeps running, so these are latencies under that light load.
Requests are sequential golden-set requests, sent straight to the stable version and through the
gateway (pinned to stable with `X-Canary: never`), so the gateway's overhead shows as the difference.

    .venv/bin/python benchmarks/testbed_latency.py [--requests 20]

Writes benchmarks/results/testbed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psutil

from diagnostics.config import Settings
from testbed.traffic import GoldenPool, build_request

RESULTS = Path(__file__).resolve().parent / "results"
CHANNELS = ("text", "image", "audio", "router")


def _latencies(client: httpx.Client, base: str, channel: str, n: int, pool: GoldenPool) -> list[float]:
    import random

    rng = random.Random(7)
    out = []
    for _ in range(n):
        path, body = build_request(channel, pool, rng)
        started = time.perf_counter()
        resp = client.post(f"{base}{path}", json=body, headers={"X-Canary": "never"})
        elapsed = (time.perf_counter() - started) * 1000
        if resp.status_code != 200:
            raise SystemExit(f"{channel} {base}{path}: HTTP {resp.status_code} {resp.text[:200]}")
        out.append(elapsed)
    return out


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p95_ms": round(float(np.percentile(values, 95)), 1),
        "mean_ms": round(statistics.fmean(values), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20, help="requests per channel and path")
    args = parser.parse_args()
    s = Settings()
    stable = f"http://{s.host}:{s.testbed_stable_port}"
    gateway = s.testbed_gateway_url
    try:
        httpx.get(f"{stable}/v1/health", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        raise SystemExit(f"the testbed is not running ({exc}); start it with `triage24 stack up`") from None
    pool = GoldenPool.load()
    latency: dict[str, dict[str, dict[str, float]]] = {}
    with httpx.Client(timeout=60) as client:
        for channel in CHANNELS:
            latency[channel] = {
                "direct": _summary(_latencies(client, stable, channel, args.requests, pool)),
                "via_gateway": _summary(_latencies(client, gateway, channel, args.requests, pool)),
            }
            print(channel, latency[channel])
    memory: dict[str, dict[str, float]] = {}
    for name in ("testbed-stable", "testbed-canary", "testbed-gateway", "testbed-traffic"):
        pid = int((s.run_dir / f"{name}.pid").read_text())
        info = psutil.Process(pid).memory_full_info()
        memory[name] = {"rss_mib": round(info.rss / 2**20, 1), "pss_mib": round(info.pss / 2**20, 1)}
    print(memory)
    result = {
        "benchmark": "testbed",
        "command": f"benchmarks/testbed_latency.py --requests {args.requests}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, no GPU",
        "requests_per_channel": args.requests,
        "latency": latency,
        "memory": memory,
        "testbed_rss_mib": round(sum(m["rss_mib"] for m in memory.values()), 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "testbed.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
