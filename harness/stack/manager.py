"""``triage24 stack up | down | status``: start, stop and inspect the embedded local stack."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from diagnostics.config import Settings
from harness.stack.components import (
    Component,
    airflow_env,
    components,
    render_configs,
    write_airflow_files,
)
from harness.stack.secrets import ensure_secrets
from harness.stack.supervision import (
    REQUESTS_DIR,
    STATE_FILE,
    ComponentRecord,
    RestartPolicy,
    clean_environ,
    is_alive,
    read_state,
    send_request,
)

Progress = Callable[[str], None]
# Generous: on 2 cores the api-server answers slowly while the testbed loads its models.
PROBE_TIMEOUT_S = 8.0


class StackError(RuntimeError):
    """A component cannot start; the message names it and its log file."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    healthy: bool
    detail: str
    log_file: str
    url: str
    # The supervisor's view (harness/stack/supervision.py): running, backoff, failed, stopped, or
    # external (running, but started outside the supervisor, e.g. by the scenario runner).
    state: str = ""
    restarts: int = 0
    last_exit: str = ""


def _quiet(_: str) -> None:
    return None


class Stack:
    def __init__(self, settings: Settings | None = None, with_testbed: bool = True) -> None:
        self.settings = settings or Settings()
        self.with_testbed = with_testbed
        self.secrets = ensure_secrets(self.settings.secrets_file)
        self.components = [
            c for c in components(self.settings, self.secrets) if with_testbed or c.group != "testbed"
        ]
        self.restart_policy = RestartPolicy()

    # --- state files -------------------------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.settings.run_dir / "stack.json"

    def _state(self) -> dict[str, object] | None:
        try:
            data: dict[str, object] = json.loads(self._state_file.read_text(encoding="utf-8"))
            return data
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _pid(self, name: str) -> int | None:
        try:
            return int((self.settings.run_dir / f"{name}.pid").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def supervisor_pid(self) -> int | None:
        pid = self._pid("supervisor")
        return pid if pid and psutil.pid_exists(pid) and _is_ours(pid, self._stack_id()) else None

    def _stale_group(self) -> int | None:
        """The process group of a supervisor that died: its components may still live in it. (Linux
        does not hand out a number still in use as a group id, so the group is still this stack's.)"""
        pid = self._pid("supervisor")
        if pid is None:
            return None
        if is_alive(pid):
            return pid if _is_ours(pid, self._stack_id()) else None
        return pid

    def _records(self) -> dict[str, ComponentRecord]:
        """The supervisor's per-component records (empty when there is no state of this stack)."""
        state = read_state(self.settings.run_dir)
        if state is None or state.stack_id != self._stack_id():
            return {}
        return state.components

    def _clear_run_files(self) -> None:
        """Forget a stack's run: the pid files, the supervisor's state and pending requests (and the
        exit-code files older versions wrote)."""
        run_dir = self.settings.run_dir
        stale = (*run_dir.glob("*.exit"), *run_dir.glob("*.pid"), *(run_dir / REQUESTS_DIR).glob("*"))
        for f in (*stale, run_dir / STATE_FILE):
            f.unlink(missing_ok=True)

    def _stack_id(self) -> str | None:
        state = self._state()
        return str(state["stack_id"]) if state else None

    # --- up ----------------------------------------------------------------------------------------

    def up(self, progress: Progress = _quiet, timeout_s: float | None = None) -> list[ComponentStatus]:
        """Start the stack; on a running one, start only its dead components (the rest keeps running)."""
        timeout_s = timeout_s or self.settings.start_timeout_s
        if self.supervisor_pid():
            return self._start_dead(progress, timeout_s)
        leftovers = _members(self._stale_group(), self._stack_id()) if self._stack_id() else []
        if leftovers:
            progress(
                f"the last stack's supervisor is gone but {len(leftovers)} of its processes are not; "
                "stopping them first"
            )
            self.down(progress)
        self._check_ports()
        for d in (self.settings.run_dir, self.settings.log_dir, self.settings.artifacts):
            d.mkdir(parents=True, exist_ok=True)
        write_airflow_files(self.settings, self.secrets)
        render_configs(self.settings)
        self._migrate(progress)
        since = time.time()
        sup = self._launch()
        progress(f"started {len(self.components)} components (supervisor pid {sup}); waiting for health")
        try:
            self._wait_healthy(progress, timeout_s, since=since)
        except StackError:
            self.down()
            raise
        return self.status()

    def _launch(self) -> int:
        """Write the spec and start the supervisor in a session of its own; its pid."""
        run_dir = self.settings.run_dir
        self._clear_run_files()  # an earlier stack's would be read as this one's
        stack_id = uuid.uuid4().hex
        spec = {
            "stack_id": stack_id,
            "run_dir": str(run_dir),
            "cwd": str(self.settings.repo_root),
            "components": [c.to_json() for c in self.components],
            "restart_policy": self.restart_policy.model_dump(),
        }
        spec_path = run_dir / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        os.chmod(spec_path, 0o600)  # it carries the Airflow secrets in the components' env
        self._state_file.write_text(json.dumps({"stack_id": stack_id, "started_at": time.time()}))
        with (self.settings.log_dir / "supervisor.log").open("ab") as log:
            sup = subprocess.Popen(
                [sys.executable, "-m", "harness.stack.supervisor", str(spec_path)],
                start_new_session=True,  # a new process group: `down` signals the whole group
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**clean_environ(), "TRIAGE24_STACK_ID": stack_id},
                cwd=self.settings.repo_root,
            )
        (run_dir / "supervisor.pid").write_text(str(sup.pid), encoding="utf-8")
        return sup.pid

    def _start_dead(self, progress: Progress, timeout_s: float) -> list[ComponentStatus]:
        """The supervisor runs: ask it to start every component that is not running (failed, stopped
        on purpose, or waiting out a backoff) and wait for their health as ``up`` does."""
        records = self._records()
        missing = [c.name for c in self.components if c.name not in records]
        if missing:
            progress(
                f"not part of the running stack: {', '.join(missing)} (`triage24 stack down`, then "
                "`up`, starts a stack with them)"
            )
        dead = [c.name for c in self.components if c.name in records and not is_alive(self._pid(c.name))]
        if not dead:
            progress("stack is already running")
            return self.status()
        since = time.time()
        for name in dead:
            rec = records[name]
            why = f", last exit {rec.last_exit.describe()}" if rec.last_exit else ""
            progress(
                f"{name} is {rec.state} ({rec.restarts} restarts{why}); asking the supervisor to start it"
            )
            send_request(self.settings.run_dir, "start", name)
        self._wait_healthy(progress, timeout_s, names=dead, since=since)
        return self.status()

    def _check_ports(self) -> None:
        for comp in self.components:
            if comp.port is None:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.settings.host, comp.port))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    raise StackError(
                        f"{comp.name}: port {self.settings.host}:{comp.port} is already in use"
                        f"{_port_owner(comp.port)}; stop that process or choose another port "
                        f"({_port_setting(comp.name)}). Log file: {comp.log_file}"
                    ) from None

    def _migrate(self, progress: Progress) -> None:
        progress("migrating the Airflow metadata database (SQLite)")
        env = {**clean_environ(), **airflow_env(self.settings, self.secrets)}
        log = self.settings.log_dir / "airflow-db-migrate.log"
        with log.open("ab") as fh:
            done = subprocess.run(
                [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=600,
            )
        if done.returncode != 0:
            raise StackError(f"airflow db migrate failed (exit {done.returncode}); see {log}")

    def _wait_healthy(
        self, progress: Progress, timeout_s: float, names: list[str] | None = None, since: float = 0.0
    ) -> None:
        """Wait until every component (or those ``names``) runs under the supervisor and answers its
        health check; a component that exits after ``since`` (Unix time) fails the wait at once."""
        deadline = time.monotonic() + timeout_s
        watched = [c for c in self.components if names is None or c.name in names]
        pending = {c.name: c for c in watched}
        started = time.monotonic()
        with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
            while pending:
                cache: dict[str, object] = {}
                records = self._records()
                for name, comp in list(pending.items()):
                    rec = records.get(name)
                    _raise_if_exited(comp, rec, since, "while starting")
                    if rec is None or rec.state != "running":
                        continue  # the supervisor has not started it (yet)
                    healthy, _detail = _probe(client, comp, cache)
                    if healthy:
                        progress(f"{name} healthy after {time.monotonic() - started:.1f} s")
                        del pending[name]
                if not pending:
                    # A component without a health endpoint counts as healthy while it runs: give it a
                    # moment to fail on bad arguments before calling the stack up.
                    time.sleep(2.0)
                    records = self._records()
                    for comp in watched:
                        _raise_if_exited(comp, records.get(comp.name), since, "after starting")
                if pending and time.monotonic() > deadline:
                    name, comp = next(iter(pending.items()))
                    raise StackError(
                        f"{name} did not become healthy within {timeout_s:.0f} s "
                        f"(also waiting for: {', '.join(pending) or 'nothing else'}); "
                        f"see {comp.log_file}:\n{_tail(comp.log_file)}"
                    )
                time.sleep(0.5)

    # --- status ------------------------------------------------------------------------------------

    def status(self) -> list[ComponentStatus]:
        out = []
        sup_running = self.supervisor_pid() is not None
        records = self._records() if sup_running else {}
        cache: dict[str, object] = {}
        with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
            for comp in self.components:
                pid = self._pid(comp.name)
                running = bool(sup_running and is_alive(pid))
                rec = records.get(comp.name)
                if running:
                    healthy, detail = _probe(client, comp, cache)
                    state = "running" if rec is not None and rec.pid == pid else "external"
                else:
                    healthy, detail = False, _dead_detail(rec, sup_running)
                    state = rec.state if rec is not None and rec.state != "running" else "stopped"
                out.append(
                    ComponentStatus(
                        comp.name,
                        pid,
                        running,
                        healthy,
                        detail,
                        str(comp.log_file),
                        comp.health.url or "",
                        state=state,
                        restarts=rec.restarts if rec else 0,
                        last_exit=rec.last_exit.describe() if rec and rec.last_exit else "",
                    )
                )
        return out

    # --- down --------------------------------------------------------------------------------------

    def down(self, progress: Progress = _quiet, grace_s: float = 40.0) -> list[int]:
        """Stop exactly what ``up`` started: the supervisor's group, then any tagged straggler. When
        the supervisor is gone, what it left in its group (or tagged with the stack id) is stopped."""
        stack_id = self._stack_id()
        stopped: list[int] = []
        sup = self.supervisor_pid()
        group = sup or self._stale_group()
        orphans = [] if sup or not stack_id else _members(group, stack_id)
        if sup:
            progress(f"stopping the stack (process group {sup})")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sup, signal.SIGTERM)
        elif orphans:
            progress(f"the supervisor is gone; stopping the {len(orphans)} process(es) it left")
            for proc in orphans:
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
        if sup or orphans:
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and _members(group, stack_id):
                time.sleep(0.3)
        if stack_id or group:
            leftovers = _members(group, stack_id)
            for proc in leftovers:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    continue
            psutil.wait_procs(leftovers, timeout=5)
            stopped = [p.pid for p in leftovers]
            if leftovers:
                progress(f"killed {len(leftovers)} process(es) that ignored SIGTERM")
        self._clear_run_files()
        self._state_file.unlink(missing_ok=True)
        return stopped


def stack_processes(stack: Stack) -> list[psutil.Process]:
    """Every live process of the stack: its process group, plus anything tagged with its id.

    The group is the primary mechanism: processes that use setproctitle (the Airflow api-server,
    LocalExecutor workers) overwrite their environ, so the id tag only catches group leavers that
    kept their environment."""
    return _members(stack.supervisor_pid() or stack._stale_group(), stack._stack_id())


def _members(pgid: int | None, stack_id: str | None) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            in_group = pgid is not None and os.getpgid(proc.pid) == pgid
            if in_group or (proc.pid != os.getpid() and _is_ours(proc.pid, stack_id)):
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _raise_if_exited(comp: Component, rec: ComponentRecord | None, since: float, when: str) -> None:
    if rec is not None and rec.last_exit is not None and rec.exited_at is not None and rec.exited_at >= since:
        raise StackError(
            f"{comp.name} exited with {rec.last_exit.describe()} {when}; "
            f"see {comp.log_file}:\n{_tail(comp.log_file)}"
        )


def _dead_detail(rec: ComponentRecord | None, sup_running: bool) -> str:
    if not sup_running:
        return "not running"
    if rec is None:
        return "not part of the running stack"
    last = f"exited with {rec.last_exit.describe()}" if rec.last_exit else "not running"
    if rec.state == "failed":
        return f"failed: {last}; gave up after {rec.restarts} restarts (`triage24 stack up` tries again)"
    if rec.state == "backoff" and rec.next_start_at is not None:
        return f"{last}; restart in {max(0.0, rec.next_start_at - time.time()):.0f} s"
    return last


def _is_ours(pid: int, stack_id: str | None) -> bool:
    if not stack_id:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return bool(proc.environ().get("TRIAGE24_STACK_ID") == stack_id)
    except psutil.Error:
        return False


def _probe(client: httpx.Client, comp: Component, cache: dict[str, object]) -> tuple[bool, str]:
    """(healthy, detail). ``cache`` holds this round's responses by URL: Airflow's four components
    share one monitor endpoint, fetched once."""
    health = comp.health
    if health.url is None:
        return True, "running (no health endpoint)"
    try:
        if health.url not in cache:
            resp = client.get(health.url)
            cache[health.url] = resp.json() if health.field and resp.status_code == 200 else resp.status_code
        answer = cache[health.url]
    except (httpx.HTTPError, ValueError) as exc:
        return False, type(exc).__name__
    if not health.field:
        return answer == 200, f"HTTP {answer}"
    value: object = answer
    for key in health.field:
        value = value.get(key) if isinstance(value, dict) else None
    if value is None and not isinstance(answer, dict):
        return False, f"HTTP {answer}"
    return value == health.expect, str(value if value is not None else "no report yet")


def _port_owner(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f" by pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except psutil.Error:
        pass
    return ""


def _port_setting(name: str) -> str:
    if name.startswith("testbed-"):
        return f"TRIAGE24_TESTBED_{name.removeprefix('testbed-').upper()}_PORT"
    key = {"prometheus": "PROMETHEUS", "alertmanager": "ALERTMANAGER"}.get(name, "AIRFLOW")
    return f"TRIAGE24_{key}_PORT"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "  (no log written)"
    return "\n".join("  " + line for line in text[-lines:])


def as_dicts(statuses: list[ComponentStatus]) -> list[dict[str, object]]:
    return [asdict(s) for s in statuses]
