"""A real Prometheus (the Debian binary) for integration tests: temp storage, a free port, 1 s scrapes."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port


@dataclass
class RunningPrometheus:
    url: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def wait_for_series(self, query: str, timeout_s: float = 20.0) -> None:
        """Until ``query`` returns at least one series (the first scrapes have landed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                body = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=3).json()
                if body.get("data", {}).get("result"):
                    return
            time.sleep(0.5)
        raise TimeoutError(f"Prometheus has no series for {query} after {timeout_s} s; log: {self.log}")


@contextlib.contextmanager
def prometheus(
    tmp: Path,
    scrape_configs: list[dict[str, object]],
    interval: str = "1s",
    rule_files: list[Path] | None = None,
) -> Iterator[RunningPrometheus]:
    """Start Prometheus with ``scrape_configs`` (and alert ``rule_files``, evaluated every ``interval``);
    always stopped on exit."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (scripts/setup.sh installs it)")
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": interval, "evaluation_interval": interval},
                "scrape_configs": scrape_configs,
                **({"rule_files": [str(p) for p in rule_files]} if rule_files else {}),
            }
        )
    )
    port = free_port()
    log = tmp / "prometheus.log"
    with open(log, "wb") as fh:
        popen = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    running = RunningPrometheus(f"http://127.0.0.1:{port}", port, popen, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{running.url}/-/ready", timeout=2).status_code == 200:
                    break
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield running
    finally:
        running.stop()
