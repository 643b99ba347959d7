"""What a scenario does to the local stack: testbed faults and gateway weight, component outages and
restarts, the traffic generator, and a resident-memory sampler. Every change here has its undo, and
the runner calls the undo in ``finally`` (also on Ctrl-C).

Components are found through the stack's own pid files (``<home>/run/<name>.pid``, written by its
supervisor). A component this module stops is restarted with the exact command and environment the
stack manager gives it (:func:`harness.stack.components.components`), in its own session, tagged
with the stack's id, so ``triage24 stack down`` still finds and stops it; its pid file is updated.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from diagnostics.config import Settings
from harness.stack import Stack
from harness.stack.components import Component, components
from harness.stack.manager import stack_processes
from harness.stack.supervision import is_alive
from harness.stack.supervisor import clean_environ

Say = Callable[[str], None]
VERSIONS = ("stable", "canary")


class ControlError(RuntimeError):
    """A control action failed; the message says which and where to look."""


def _quiet(_: str) -> None:
    return None


class Testbed:
    """The testbed's admin APIs: faults on each version, the gateway's routing."""

    def __init__(self, settings: Settings, token: str) -> None:
        self.s = settings
        self.auth = {"Authorization": f"Bearer {token}"}

    def _faults_url(self, version: str) -> str:
        port = self.s.testbed_stable_port if version == "stable" else self.s.testbed_canary_port
        return f"http://{self.s.host}:{port}/admin/faults"

    def inject(self, version: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self._faults_url(version)
        try:
            resp = httpx.post(url, json=body, headers=self.auth, timeout=10)
        except httpx.HTTPError as exc:
            raise ControlError(
                f"inject {body} on {version}: {url} unreachable ({type(exc).__name__})"
            ) from None
        if resp.status_code != 200:
            raise ControlError(f"inject {body} on {version}: HTTP {resp.status_code} {resp.text[:300]}")
        data: dict[str, Any] = resp.json()
        return data

    def clear(self, version: str) -> list[str]:
        """Clear every fault of ``version``; an unreachable version has none to clear (returns [])."""
        try:
            resp = httpx.delete(self._faults_url(version), headers=self.auth, timeout=10)
        except httpx.HTTPError:
            return []
        if resp.status_code != 200:
            raise ControlError(f"clear faults on {version}: HTTP {resp.status_code} {resp.text[:200]}")
        return [str(x) for x in resp.json().get("cleared", [])]

    def active(self, version: str) -> list[str]:
        try:
            resp = httpx.get(self._faults_url(version), headers=self.auth, timeout=10)
            return [str(f.get("name", f)) if isinstance(f, dict) else str(f) for f in resp.json()["active"]]
        except (httpx.HTTPError, ValueError, KeyError):
            return []

    def weight(self, set_to: float | None = None) -> float:
        url = f"{self.s.testbed_gateway_url}/admin/routing"
        try:
            if set_to is not None:
                httpx.put(
                    url, json={"canary_weight": set_to}, headers=self.auth, timeout=10
                ).raise_for_status()
            resp = httpx.get(url, headers=self.auth, timeout=10)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise ControlError(f"gateway routing {url}: {exc}") from None
        return float(resp.json()["canary_weight"])

    def ready(self, version: str) -> bool:
        port = self.s.testbed_stable_port if version == "stable" else self.s.testbed_canary_port
        try:
            body = httpx.get(f"http://{self.s.host}:{port}/v1/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return bool(body.get("status") == "ready")


def alertmanager_active(settings: Settings, target: str = "testbed") -> list[str]:
    """Active, unsilenced alerts of ``target`` in Alertmanager (``alertname{version}``); [] if down."""
    url = f"http://{settings.host}:{settings.alertmanager_port}/api/v2/alerts"
    params = {"active": "true", "silenced": "false", "inhibited": "false", "filter": f'target="{target}"'}
    try:
        alerts = httpx.get(url, params=params, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return []
    out = []
    for a in alerts if isinstance(alerts, list) else []:
        labels = a.get("labels", {})
        out.append(f"{labels.get('alertname')}{{{labels.get('version', '')}}}")
    return sorted(out)


def prometheus_alerts(settings: Settings, target: str = "testbed") -> list[str]:
    """Pending or firing alerts of ``target`` in Prometheus (``alertname{version} state``); [] if down."""
    url = f"http://{settings.host}:{settings.prometheus_port}/api/v1/alerts"
    try:
        data = httpx.get(url, timeout=5).json()["data"]["alerts"]
    except (httpx.HTTPError, ValueError, KeyError):
        return []
    return sorted(
        f"{a['labels'].get('alertname')}{{{a['labels'].get('version', '')}}} {a.get('state')}"
        for a in data
        if a.get("labels", {}).get("target") == target
    )


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


class Processes:
    """Stop, freeze, resume and restart the stack's components by name."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.restarted: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self.stopped: set[str] = set()
        self._components = {c.name: c for c in components(stack.settings, stack.secrets)}

    def component(self, name: str) -> Component:
        try:
            return self._components[name]
        except KeyError:
            raise ControlError(f"unknown component {name!r}; known: {', '.join(self._components)}") from None

    def pid(self, name: str) -> int | None:
        pid = self.stack._pid(name)
        return pid if is_alive(pid) else None

    def stop(self, name: str, timeout_s: float = 30.0) -> None:
        """SIGTERM the component (SIGKILL after ``timeout_s``) and wait until it is gone."""
        self.component(name)
        pid = self.pid(name)
        if pid is None:
            self.stopped.add(name)
            return
        if name in self.paused:
            self.resume(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._gone(pid, timeout_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._gone(pid, 10.0)
        own = self.restarted.pop(name, None)
        if own is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                own.wait(timeout=5)  # reap our own child
        self.stopped.add(name)

    def _gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
            time.sleep(0.2)
        return False

    def pause(self, name: str) -> None:
        pid = self.pid(name)
        if pid is None:
            raise ControlError(f"{name} is not running: nothing to pause")
        os.kill(pid, signal.SIGSTOP)
        self.paused.add(name)

    def resume(self, name: str) -> None:
        pid = self.pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused.discard(name)

    def start(
        self,
        name: str,
        *,
        wipe: Path | None = None,
        say: Say = _quiet,
        timeout_s: float = 240.0,
        wait: bool = True,
    ) -> None:
        """Start ``name`` again as the stack would (optionally after deleting ``wipe``, e.g. the TSDB)
        and (``wait``) wait for its health check."""
        comp = self.component(name)
        if self.pid(name) is not None:
            raise ControlError(f"{name} is still running; stop it first")
        if wipe is not None and wipe.exists():
            shutil.rmtree(wipe)
        env = {**clean_environ(), **comp.env}
        stack_id = self.stack._stack_id()
        if stack_id:
            env["TRIAGE24_STACK_ID"] = stack_id
        comp.log_file.parent.mkdir(parents=True, exist_ok=True)
        with comp.log_file.open("ab") as log:
            proc = subprocess.Popen(
                comp.argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.stack.settings.repo_root,
                start_new_session=True,  # a Ctrl-C of the runner must not stop the stack's component
            )
        self.restarted[name] = proc
        (self.stack.settings.run_dir / f"{name}.pid").write_text(str(proc.pid), encoding="utf-8")
        self.stopped.discard(name)
        say(f"{name} started again (pid {proc.pid})" + ("; waiting for its health check" if wait else ""))
        if not wait:
            return
        deadline = time.monotonic() + timeout_s
        while not self.healthy(name):
            if proc.poll() is not None:
                raise ControlError(
                    f"{name} exited with code {proc.returncode} after a restart; see {comp.log_file}"
                )
            if time.monotonic() > deadline:
                raise ControlError(
                    f"{name} not healthy {timeout_s:.0f} s after a restart; see {comp.log_file}"
                )
            time.sleep(0.5)

    def healthy(self, name: str) -> bool:
        health = self.component(name).health
        if health.url is None:
            return self.pid(name) is not None
        if not health.field:
            return _http_ok(health.url)
        try:
            value: Any = httpx.get(health.url, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        for key in health.field:
            value = value.get(key) if isinstance(value, dict) else None
        return bool(value == health.expect)

    def restore(self, say: Say = _quiet) -> list[str]:
        """Undo every outage still in place: resume what is frozen, start what is stopped."""
        problems = []
        for name in sorted(self.paused):
            self.resume(name)
            say(f"{name} resumed")
        for name in sorted(self.stopped):
            try:
                self.start(name, say=say)
            except ControlError as exc:
                problems.append(str(exc))
        return problems

    def terminate_restarted(self) -> None:
        """Stop the components this object restarted (before the runner's own stack goes down, so that
        ``stack down`` does not wait its grace period for processes outside the supervisor's group)."""
        for _name, proc in list(self.restarted.items()):
            if proc.poll() is None:
                proc.terminate()
        for name, proc in list(self.restarted.items()):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            self.restarted.pop(name, None)


class TrafficGenerator:
    """``python -m testbed traffic`` through the gateway, as a child process with its own log."""

    def __init__(
        self, settings: Settings, rate: float, duration_s: float, mix: str | None, seed: int | None, log: Path
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "testbed",
            "traffic",
            "--gateway",
            settings.testbed_gateway_url,
            "--rate",
            f"{rate:g}",
            "--duration",
            f"{min(max(duration_s, 1.0), 86400.0):.0f}",
            "--progress-every",
            "30",
        ]
        if mix:
            self.argv += ["--mix", mix]
        if seed is not None:
            self.argv += ["--seed", str(seed)]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.repo = settings.repo_root

    def start(self) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.repo,
                env={**clean_environ(), "HF_HUB_OFFLINE": "1"},
                start_new_session=True,  # the runner stops it itself, in order, also on Ctrl-C
            )
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class RssSampler:
    """Sums the resident memory of the whole stack (and of ``extra`` pids) every ``interval_s`` in a
    thread; ``peak_mib`` is the highest sum seen since the last :meth:`reset`."""

    def __init__(self, stack: Stack, extra: Callable[[], list[int]], interval_s: float = 3.0) -> None:
        self.stack, self.extra, self.interval_s = stack, extra, interval_s
        self.peak_mib = 0.0
        self.overall_mib = 0.0
        self.peak_pss_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="triage24-rss", daemon=True)

    def sample(self) -> float:
        procs = {p.pid: p for p in stack_processes(self.stack)}
        for pid in self.extra():
            with contextlib.suppress(psutil.Error):
                procs.setdefault(pid, psutil.Process(pid))
        total = pss = 0
        for proc in procs.values():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
            # PSS splits pages shared between processes (forked Airflow workers, the two testbed
            # versions' libraries): summed RSS counts them once per process, PSS once in all.
            with contextlib.suppress(psutil.Error, AttributeError):
                pss += proc.memory_full_info().pss
        mib = total / 2**20
        self.peak_mib = max(self.peak_mib, mib)
        self.overall_mib = max(self.overall_mib, mib)
        self.peak_pss_mib = max(self.peak_pss_mib, pss / 2**20)
        return mib

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # a sampler must never take the runner down
                self.sample()

    def start(self) -> None:
        self._thread.start()

    def reset(self) -> None:
        self.peak_mib = 0.0
        self.peak_pss_mib = 0.0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def truncate_logs(log_dir: Path, pattern: str = "testbed-*.jsonl") -> list[Path]:
    """Truncate the testbed's JSON-lines logs in place (their writers append, as with logrotate's
    copytruncate), so log evidence starts with the scenario."""
    done = []
    for path in sorted(log_dir.glob(pattern)):
        with path.open("r+b") as fh:
            fh.truncate(0)
        done.append(path)
    return done


__all__ = [
    "ControlError",
    "Processes",
    "RssSampler",
    "Testbed",
    "TrafficGenerator",
    "alertmanager_active",
    "prometheus_alerts",
    "truncate_logs",
]
