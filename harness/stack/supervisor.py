"""The local stack's process-group leader, and its supervisor.

``triage24 stack up`` starts this module in a new session; it starts every component as its child,
so the whole stack is one process group. Each child gets ``TRIAGE24_STACK_ID`` in its environment,
inherited by everything it forks, so ``stack down`` can find stragglers that left the group.

A component that crashes is started again with the same command line and environment after a
backoff, up to a crash-loop limit (:mod:`harness.stack.supervision` has the policy, the state file
and the requests ``stack up`` sends). Before a restart, what the dead component left behind in the
group (e.g. a scheduler's executor workers) is stopped, so the new process finds its port free and
no twin of itself. SIGTERM stops the children (SIGTERM, then SIGKILL after a grace period) and then
the leader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field

from harness.stack.supervision import (
    ComponentRecord,
    ExitStatus,
    RestartPolicy,
    SupervisorState,
    clean_environ,
    decide,
    is_alive,
    is_crash,
    take_requests,
    write_state,
)

GRACE_S = 25.0
LEFTOVER_GRACE_S = 5.0
# The exit "code" recorded when the command cannot even be executed (as a shell reports it).
EXEC_FAILED = 127

__all__ = ["Spec", "Supervisor", "clean_environ", "main"]


class ComponentSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    argv: list[str] = Field(min_length=1)
    log_file: Path
    env: dict[str, str] = Field(default_factory=dict)


class Spec(BaseModel):
    """What ``stack up`` writes to ``<run dir>/spec.json``."""

    model_config = ConfigDict(extra="forbid")

    stack_id: str = Field(min_length=1)
    run_dir: Path
    cwd: Path
    components: list[ComponentSpec]
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    poll_s: float = Field(default=0.5, gt=0, le=5)


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor: {message}", flush=True)


@dataclass
class Child:
    spec: ComponentSpec
    env: dict[str, str]
    record: ComponentRecord = field(default_factory=lambda: ComponentRecord(state="stopped"))
    proc: subprocess.Popen[bytes] | None = None
    started_mono: float = 0.0
    due_mono: float | None = None
    streak: int = 0
    restart_times: list[float] = field(default_factory=list)  # monotonic

    @property
    def name(self) -> str:
        return self.spec.name


class Supervisor:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.policy = spec.restart_policy
        self.run_dir = spec.run_dir
        self.stopping = False
        self.dirty = True
        base = {**clean_environ(), "TRIAGE24_STACK_ID": spec.stack_id}
        self.children = {
            c.name: Child(c, {**base, **c.env, "TRIAGE24_STACK_ID": spec.stack_id}) for c in spec.components
        }

    # --- starting and watching ---------------------------------------------------------------------

    def start(self, child: Child, *, restart: bool, requested: bool = False) -> None:
        """Start ``child``: first start, restart after a crash, or (``requested``) a start asked for by
        ``stack up``, which gives it a fresh crash-loop budget (it does not count in the window)."""
        log_file = child.spec.log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        if restart:
            child.record.restarts += 1
            child.record.last_restart_at = now
        if requested:
            child.streak = 0
            child.restart_times.clear()
        elif restart:
            child.restart_times.append(time.monotonic())
        child.due_mono = None
        child.record.next_start_at = None
        try:
            with log_file.open("ab") as fh:
                child.proc = subprocess.Popen(
                    child.spec.argv,
                    env=child.env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.spec.cwd,
                )
        except OSError as exc:
            log(f"{child.name}: cannot run {child.spec.argv[0]}: {exc}")
            child.proc = None
            child.started_mono = time.monotonic()
            self.on_exit(child, EXEC_FAILED)
            return
        child.started_mono = time.monotonic()
        child.record.pid = child.proc.pid
        child.record.started_at = now
        child.record.state = "running"
        (self.run_dir / f"{child.name}.pid").write_text(str(child.proc.pid), encoding="utf-8")
        if restart:
            log(f"{child.name} started again (pid {child.proc.pid}, restart {child.record.restarts})")
        self.dirty = True

    def on_exit(self, child: Child, returncode: int) -> None:
        """Record the end of ``child`` and decide: restart after a backoff, give up, or leave stopped."""
        uptime = time.monotonic() - child.started_mono
        child.proc = None
        status = ExitStatus.from_returncode(returncode)
        child.record.last_exit = status
        child.record.exited_at = time.time()
        self.dirty = True
        if self.stopping:
            child.record.state = "stopped"
            return
        self.stop_leftovers()
        if not is_crash(returncode):
            child.record.state = "stopped"
            log(
                f"{child.name} exited ({status.describe()}) after {uptime:.1f} s up: stopped on purpose, "
                "not restarted (`triage24 stack up` starts it again)"
            )
            return
        decision = decide(
            self.policy,
            uptime_s=uptime,
            streak=child.streak,
            restart_times=child.restart_times,
            now=time.monotonic(),
        )
        child.streak = decision.streak
        if decision.give_up:
            child.record.state = "failed"
            log(
                f"{child.name} exited ({status.describe()}) after {uptime:.1f} s up; "
                f"{decision.recent_restarts} restarts in the last {self.policy.window_s:g} s: giving up "
                "(failed until `triage24 stack up` starts it)"
            )
            return
        child.record.state = "backoff"
        child.due_mono = time.monotonic() + decision.delay_s
        child.record.next_start_at = time.time() + decision.delay_s
        log(
            f"{child.name} exited ({status.describe()}) after {uptime:.1f} s up; "
            f"restart {child.record.restarts + 1} in {decision.delay_s:g} s"
        )

    def handle_requests(self) -> None:
        requests, problems = take_requests(self.run_dir)
        for line in problems:
            log(line)
        for req in requests:
            child = self.children.get(req.component)
            if child is None:
                log(f"ignored a request to {req.action} {req.component!r}: not a component of this stack")
                continue
            if child.proc is not None:
                log(f"{child.name} is already running (pid {child.proc.pid}): nothing to {req.action}")
                continue
            log(f"{child.name}: start requested (was {child.record.state})")
            self.start(child, restart=True, requested=True)

    def step(self) -> None:
        for child in self.children.values():
            if child.proc is not None:
                code = child.proc.poll()
                if code is not None:
                    self.on_exit(child, code)
        if self.stopping:
            return
        self.handle_requests()
        now = time.monotonic()
        for child in self.children.values():
            if child.proc is None and child.due_mono is not None and child.due_mono <= now:
                self.start(child, restart=True)
        self.save()

    def save(self) -> None:
        if not self.dirty:
            return
        state = SupervisorState(
            stack_id=self.spec.stack_id,
            supervisor_pid=os.getpid(),
            updated_at=time.time(),
            components={name: c.record for name, c in self.children.items()},
        )
        write_state(self.run_dir, state)
        self.dirty = False

    # --- leftovers and stopping --------------------------------------------------------------------

    def stop_leftovers(self) -> list[int]:
        """Stop the processes of this group that no live component owns: what a dead one forked.
        Only as the group's leader (a supervisor run inside someone else's group touches nothing)."""
        me = os.getpid()
        if os.getpgid(0) != me:
            return []
        live = {c.proc.pid for c in self.children.values() if c.proc is not None}
        strays = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.pid == me or proc.pid in live or os.getpgid(proc.pid) != me:
                    continue
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if any(parent.pid in live for parent in proc.parents()):
                    continue
                strays.append(proc)
            except (ProcessLookupError, psutil.Error):
                continue
        if not strays:
            return []
        log(f"stopping {len(strays)} process(es) left behind: {', '.join(str(p.pid) for p in strays)}")
        for proc in strays:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        deadline = time.monotonic() + LEFTOVER_GRACE_S
        while time.monotonic() < deadline and any(is_alive(p) for p in strays):
            time.sleep(0.1)
        for proc in strays:
            if is_alive(proc):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        return [p.pid for p in strays]

    def stop_all(self) -> None:
        procs = [c.proc for c in self.children.values() if c.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.2)
        # Whatever is left in the group (children that ignored SIGTERM, their forks) gets SIGKILL.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for child in self.children.values():
            if child.proc is not None:
                code = child.proc.wait()
                child.record.last_exit = ExitStatus.from_returncode(code)
                child.record.exited_at = time.time()
                child.proc = None
            if child.record.state != "failed":
                child.record.state = "stopped"
            child.record.next_start_at = None
        self.dirty = True
        self.save()

    def run(self) -> int:
        def on_signal(signum: int, _frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log(f"starting {len(self.children)} components (pid {os.getpid()})")
        for child in self.children.values():
            self.start(child, restart=False)
        self.save()
        while not self.stopping:
            self.step()
            time.sleep(self.spec.poll_s)
        log("stopping the stack")
        self.stop_all()
        if os.getpgid(0) == os.getpid():  # only the group this supervisor leads
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpid(), signal.SIGTERM)
        return 0


def main(spec_path: str) -> int:
    spec = Spec.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    return Supervisor(spec).run()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
