"""The supervisor with tiny fake components (Python sleepers and HTTP servers, no real stack): a crash
is restarted after its backoff, a crash loop is given up, a stop on purpose is left alone, what a dead
component forked is cleaned up, ``stack up`` starts what is dead, and ``stack down`` leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from harness.stack import ComponentStatus, Stack
from harness.stack.components import Component, Health
from harness.stack.manager import stack_processes
from harness.stack.supervision import ComponentRecord, RestartPolicy, is_alive, read_state, send_request
from tests.conftest import REPO, free_port, stack_settings

FAKE = """
import http.server, os, subprocess, sys, time
mode = sys.argv[1]
if mode == "serve":
    port, marker = int(sys.argv[2]), sys.argv[3]
    if os.path.exists(marker):
        sys.exit(3)

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Ok).serve_forever()
elif mode == "sleep":
    time.sleep(3600)
elif mode == "fork":  # leaves a child behind when it dies
    child = subprocess.Popen(["sleep", "3600"])
    with open(sys.argv[2], "w") as fh:
        fh.write(str(child.pid))
    time.sleep(3600)
elif mode == "exit":
    sys.exit(int(sys.argv[2]))
"""


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


class Supervised:
    """A supervisor started on a spec of fake components, as ``stack up`` starts it."""

    def __init__(self, tmp: Path, components: dict[str, list[str]], policy: RestartPolicy) -> None:
        self.run_dir = tmp / "run"
        self.run_dir.mkdir()
        self.log = tmp / "supervisor.log"
        spec = {
            "stack_id": "test-" + tmp.name,
            "run_dir": str(self.run_dir),
            "cwd": str(REPO),
            "components": [
                {
                    "name": name,
                    "argv": [sys.executable, "-c", FAKE, *args],
                    "log_file": str(tmp / f"{name}.log"),
                }
                for name, args in components.items()
            ],
            "restart_policy": policy.model_dump(),
            "poll_s": 0.1,
        }
        spec_path = tmp / "spec.json"
        spec_path.write_text(json.dumps(spec))
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "harness.stack.supervisor", str(spec_path)],
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        self.names = list(components)
        wait_for("the supervisor's first state", lambda: read_state(self.run_dir) is not None)

    def rec(self, name: str) -> ComponentRecord:
        state = read_state(self.run_dir)
        return state.components[name] if state else ComponentRecord(state="stopped")

    def group(self) -> list[int]:
        out = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == self.proc.pid and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=40)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(components: dict[str, list[str]], policy: RestartPolicy | None = None) -> Supervised:
        sup = Supervised(tmp_path, components, policy or RestartPolicy())
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.stop()
        for pid in sup.group():
            os.kill(pid, signal.SIGKILL)


def test_each_component_killed_once_is_restarted_once_after_a_one_second_backoff(
    tmp_path: Path, supervised: Callable[..., Supervised]
) -> None:
    port = free_port()
    grandchild_file = tmp_path / "grandchild.pid"
    sup = supervised(
        {
            "web": ["serve", str(port), str(tmp_path / "no-marker")],
            "idle": ["sleep"],
            "forker": ["fork", str(grandchild_file)],
        }
    )
    assert {sup.rec(n).state for n in sup.names} == {"running"}
    wait_for("the web component to answer", lambda: _answers(port))
    wait_for("the forker's child", lambda: grandchild_file.exists() and grandchild_file.read_text() != "")
    grandchild = int(grandchild_file.read_text())
    seen: set[int] = {sup.rec(n).pid or 0 for n in sup.names} | {grandchild}
    for name in sup.names:
        others = {n: sup.rec(n).pid for n in sup.names if n != name}
        before = sup.rec(name)
        assert before.restarts == 0 and before.pid is not None
        killed_at = time.time()
        os.kill(before.pid, signal.SIGKILL)
        wait_for(
            f"{name} restarted",
            lambda n=name, p=before.pid: sup.rec(n).pid != p and sup.rec(n).state == "running",
        )
        after = sup.rec(name)
        seen.add(after.pid or 0)
        assert after.restarts == 1
        assert after.last_exit is not None and after.last_exit.describe() == "signal SIGKILL"
        assert after.started_at is not None and after.last_restart_at == after.started_at
        waited = after.started_at - killed_at
        assert 1.0 <= waited < 3.0, f"{name}: restarted {waited:.2f} s after the kill; the backoff is 1 s"
        assert (sup.run_dir / f"{name}.pid").read_text() == str(after.pid)
        assert {n: sup.rec(n).pid for n in sup.names if n != name} == others, "only the dead one restarts"
    assert _answers(port), "the restarted server serves again"
    assert not is_alive(grandchild), "what the killed forker left behind is stopped before its restart"
    log = sup.log.read_text()
    for name in sup.names:
        assert f"{name} exited (signal SIGKILL) after" in log and "restart 1 in 1 s" in log
    # stopping the supervisor stops everything it ever started
    sup.stop()
    assert [pid for pid in seen if is_alive(pid)] == [] and sup.group() == []
    final = read_state(sup.run_dir)
    assert final is not None and {r.state for r in final.components.values()} == {"stopped"}


def test_a_component_that_exits_at_once_is_given_up_after_its_restart_budget(
    supervised: Callable[..., Supervised],
) -> None:
    policy = RestartPolicy(base_delay_s=0.1, max_delay_s=0.4, max_restarts=4, window_s=60)
    started = time.monotonic()
    sup = supervised({"idle": ["sleep"], "broken": ["exit", "3"]}, policy)
    wait_for("broken to be given up", lambda: sup.rec("broken").state == "failed", timeout_s=15)
    elapsed = time.monotonic() - started
    rec = sup.rec("broken")
    assert rec.restarts == 4
    assert rec.last_exit is not None and rec.last_exit.describe() == "code 3"
    # delays 0.1 + 0.2 + 0.4 + 0.4 s were waited out
    assert elapsed >= 1.1
    assert sup.rec("idle").state == "running" and sup.rec("idle").restarts == 0
    log = sup.log.read_text()
    assert [line.split("; ")[-1] for line in log.splitlines() if "broken exited" in line] == [
        "restart 1 in 0.1 s",
        "restart 2 in 0.2 s",
        "restart 3 in 0.4 s",
        "restart 4 in 0.4 s",
        "4 restarts in the last 60 s: giving up (failed until `triage24 stack up` starts it)",
    ]
    time.sleep(0.6)
    assert sup.rec("broken").restarts == 4, "a failed component is not restarted any more"
    # a start request gives it a fresh budget: one requested start, then four restarts again
    send_request(sup.run_dir, "start", "broken")
    wait_for("broken to be given up again", lambda: sup.rec("broken").restarts == 9, timeout_s=15)
    assert sup.log.read_text().count("broken: start requested (was failed)") == 1
    wait_for("broken failed again", lambda: sup.rec("broken").state == "failed")
    assert sup.rec("idle").restarts == 0


def test_a_component_stopped_on_purpose_stays_stopped_until_asked(
    supervised: Callable[..., Supervised],
) -> None:
    sup = supervised({"idle": ["sleep"]})
    pid = sup.rec("idle").pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # how the scenario runner stages an outage
    wait_for("idle stopped", lambda: sup.rec("idle").state == "stopped")
    time.sleep(1.5)  # longer than the first backoff
    rec = sup.rec("idle")
    assert rec.state == "stopped" and rec.restarts == 0
    assert rec.last_exit is not None and rec.last_exit.describe() == "signal SIGTERM"
    send_request(sup.run_dir, "start", "idle")
    send_request(sup.run_dir, "start", "no-such-component")
    wait_for("idle started on request", lambda: sup.rec("idle").state == "running")
    assert sup.rec("idle").restarts == 1 and sup.rec("idle").pid != pid
    assert "ignored a request to start 'no-such-component'" in sup.log.read_text()


# --- the manager, on a stack of fake components --------------------------------------------------


@pytest.fixture
def fake_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    stack = Stack(stack_settings(tmp_path / "home"), with_testbed=False)
    port = free_port()
    marker = tmp_path / "fail-on-start"
    py = [sys.executable, "-c", FAKE]
    logs = stack.settings.log_dir
    stack.components = [
        Component(
            name="web",
            argv=[*py, "serve", str(port), str(marker)],
            health=Health(f"http://127.0.0.1:{port}/"),
            log_file=logs / "web.log",
            port=port,
        ),
        Component(name="idle", argv=[*py, "sleep"], health=Health(None), log_file=logs / "idle.log"),
    ]
    stack.restart_policy = RestartPolicy(base_delay_s=0.1, max_delay_s=0.2, max_restarts=2, window_s=60)
    # The fake stack has no Airflow: no metadata database to migrate.
    monkeypatch.setattr(stack, "_migrate", lambda progress: None)
    try:
        yield stack
    finally:
        stack.down(grace_s=10)


def test_stack_up_starts_a_failed_component_and_leaves_the_rest_running(
    fake_stack: Stack, tmp_path: Path
) -> None:
    stack = fake_stack
    first = {s.name: s for s in stack.up(timeout_s=60)}
    assert {n: (s.healthy, s.state, s.restarts) for n, s in first.items()} == {
        "web": (True, "running", 0),
        "idle": (True, "running", 0),
    }
    messages: list[str] = []
    stack.up(progress=messages.append)
    assert messages == ["stack is already running"]

    (tmp_path / "fail-on-start").touch()  # from now on "web" exits with code 3 when it starts
    os.kill(first["web"].pid or 0, signal.SIGKILL)
    wait_for("web to be given up", lambda: _status(stack)["web"].state == "failed")
    web = _status(stack)["web"]
    assert (web.running, web.healthy, web.restarts, web.last_exit) == (False, False, 2, "code 3")
    assert web.detail.startswith("failed: exited with code 3; gave up after 2 restarts")
    assert _status(stack)["idle"].pid == first["idle"].pid

    (tmp_path / "fail-on-start").unlink()
    messages = []
    started = time.monotonic()
    after = {s.name: s for s in stack.up(progress=messages.append, timeout_s=60)}
    assert time.monotonic() - started < 20
    assert messages[0] == "web is failed (2 restarts, last exit code 3); asking the supervisor to start it"
    assert messages[-1].startswith("web healthy after")
    assert (after["web"].healthy, after["web"].state, after["web"].restarts) == (True, "running", 3)
    assert after["idle"].pid == first["idle"].pid and after["idle"].restarts == 0


def test_stack_up_after_the_supervisor_died_leaves_no_orphan(fake_stack: Stack) -> None:
    stack = fake_stack
    first = {s.name: s.pid for s in stack.up(timeout_s=60)}
    old_sup = stack.supervisor_pid()
    assert old_sup is not None
    os.kill(old_sup, signal.SIGKILL)
    wait_for("the supervisor to be gone", lambda: stack.supervisor_pid() is None)
    assert all(is_alive(pid) for pid in first.values()), "its components outlive it"
    assert {s.name: s.running for s in stack.status()} == {"web": False, "idle": False}

    messages: list[str] = []
    second = {s.name: s for s in stack.up(progress=messages.append, timeout_s=60)}
    assert (
        "the last stack's supervisor is gone but 2 of its processes are not; stopping them first" in messages
    )
    assert [pid for pid in first.values() if is_alive(pid)] == [], "the old components were stopped"
    assert all(s.healthy and s.state == "running" and s.restarts == 0 for s in second.values())
    assert stack.supervisor_pid() not in (None, old_sup)

    procs = stack_processes(stack)
    assert {p.pid for p in procs} >= {s.pid for s in second.values() if s.pid}
    stack.down(grace_s=10)
    assert [p for p in procs if is_alive(p.pid)] == [] and stack_processes(stack) == []
    assert (
        not list(stack.settings.run_dir.glob("*.pid"))
        and not (stack.settings.run_dir / "supervision.json").exists()
    )


def _status(stack: Stack) -> dict[str, ComponentStatus]:
    return {s.name: s for s in stack.status()}


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
