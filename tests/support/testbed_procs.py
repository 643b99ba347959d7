"""The testbed as real processes (stable, canary, gateway) on free ports, for integration tests.

``testbed_stack`` is session-scoped and registered in tests/conftest.py, so the testbed tests and the
DAG tests share one set of processes (each loads real models: starting two sets would double the
memory and the start-up time). Logs go to ``<home>/logs/testbed-*.jsonl``, where
``runbooks/targets.yaml`` looks for them when ``TRIAGE24_HOME`` is ``<home>``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, free_port

ADMIN_TOKEN = "test-admin-token-7f3c"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WHISPER_FILE = Path.home() / ".cache" / "triage24" / "models" / "whisper-base.pt"
CLIP_FILE = REPO / "testbed" / "clip" / "clip-shapes-fp16.pt"
GOLDEN_MANIFEST = REPO / "testbed" / "golden" / "data" / "manifest.json"


def models_available() -> bool:
    return WHISPER_FILE.is_file() and CLIP_FILE.is_file() and GOLDEN_MANIFEST.is_file()


def require_models() -> None:
    if not models_available():
        pytest.skip(
            f"model files missing ({WHISPER_FILE}, {CLIP_FILE}, {GOLDEN_MANIFEST}): "
            "run `triage24 models prepare`"
        )


# --------------------------------------------------------------------------- real processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_file: Path
    stdout_file: Path

    def logs(self) -> list[dict[str, Any]]:
        from testbed.logs import read_log_lines

        return read_log_lines(self.log_file) if self.log_file.exists() else []


@dataclass
class Stack:
    stable: Proc
    canary: Proc
    gateway: Proc
    token: str
    home: Path

    def port(self, name: str) -> int:
        return int(getattr(self, name).url.rsplit(":", 1)[1])

    def environ(self) -> dict[str, str]:
        """The TRIAGE24_* settings that point runbooks/targets.yaml at these processes."""
        return {
            "TRIAGE24_HOME": str(self.home),
            "TRIAGE24_TESTBED_STABLE_PORT": str(self.port("stable")),
            "TRIAGE24_TESTBED_CANARY_PORT": str(self.port("canary")),
            "TRIAGE24_TESTBED_GATEWAY_PORT": str(self.port("gateway")),
            "TRIAGE24_TESTBED_ADMIN_TOKEN": self.token,
        }

    @property
    def procs(self) -> list[Proc]:
        return [self.stable, self.canary, self.gateway]


def _start(name: str, args: list[str], log_file: Path, tmp: Path, env: dict[str, str], port: int) -> Proc:
    out = tmp / f"{name}.stdout"
    fh = open(out, "wb")  # noqa: SIM115 - closed with the process
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testbed",
            *args,
            "--port",
            str(port),
            "--log-file",
            str(log_file),
            "--no-stdout-log",
        ],
        cwd=REPO,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(name, popen, f"http://127.0.0.1:{port}", log_file, out)


def _stop(proc: Proc) -> None:
    if proc.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=10)


def wait_ready(
    url: str, path: str, proc: Proc, timeout: float = 180.0, want: str = "ready"
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}: {proc.stdout_file.read_text()[-2000:]}"
            )
        try:
            r = httpx.get(url + path, timeout=2)
            last = r.json()
            if r.status_code == 200 and last.get("status") == want:
                return dict(last)
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{proc.name} not {want} after {timeout} s: {last}")


@pytest.fixture(scope="session")
def testbed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """stable + canary services (real models) and the gateway (weight 0) as real processes."""
    require_models()
    tmp = tmp_path_factory.mktemp("testbed-stack")
    logs = tmp / "logs"
    logs.mkdir()
    env = dict(os.environ, TRIAGE24_TESTBED_ADMIN_TOKEN=ADMIN_TOKEN, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    ports = {n: free_port() for n in ("stable", "canary", "gateway")}
    procs: list[Proc] = []
    try:
        for version in ("stable", "canary"):
            procs.append(
                _start(
                    version,
                    ["serve", "--version", version],
                    logs / f"testbed-{version}.jsonl",
                    tmp,
                    env,
                    ports[version],
                )
            )
        procs.append(
            _start(
                "gateway",
                ["gateway", "--stable", procs[0].url, "--canary", procs[1].url, "--canary-weight", "0"],
                logs / "testbed-gateway.jsonl",
                tmp,
                env,
                ports["gateway"],
            )
        )
        for p in procs[:2]:
            wait_ready(p.url, "/v1/health", p)
        wait_ready(procs[2].url, "/health", procs[2], timeout=30)
        yield Stack(procs[0], procs[1], procs[2], ADMIN_TOKEN, tmp)
    finally:
        for p in procs:
            _stop(p)
