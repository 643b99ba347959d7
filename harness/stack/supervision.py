"""What the stack's supervisor decides and records: the restart policy, the state file, the requests.

The restart policy is a pure function (:func:`decide`): a component that crashed is started again
after 1 s, 2 s, 4 s … (capped at 60 s); a component that had stayed up 120 s starts the sequence
again at 1 s; after 10 restarts within 10 minutes the supervisor gives up on it (``failed``).

Only a *crash* is restarted, as systemd's ``Restart=on-failure`` does: a non-zero exit code or death
by a signal other than SIGTERM, SIGINT, SIGHUP or SIGPIPE. A component stopped on purpose (exit 0,
or SIGTERM — how the scenario runner and the end-to-end tests take one down for an outage) stays
``stopped`` until ``stack up`` asks for it.

The supervisor writes ``<run dir>/supervision.json`` (atomically: a temporary file, then a rename),
one record per component. ``stack up`` asks it to start a dead component by dropping a request file
into ``<run dir>/requests/``, which the supervisor reads on its next poll.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from diagnostics.incident.store import replace_text

STATE_FILE = "supervision.json"
REQUESTS_DIR = "requests"

# Ends that mean "stopped on purpose", not "crashed" (systemd's clean exit statuses).
CLEAN_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE})

State = Literal["running", "backoff", "failed", "stopped"]


class RestartPolicy(BaseModel):
    """Exponential backoff with a cap, a reset after a stable run, and a crash-loop limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=60.0, gt=0)
    reset_after_s: float = Field(default=120.0, gt=0)
    max_restarts: int = Field(default=10, ge=0)
    window_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _cap_above_base(self) -> RestartPolicy:
        if self.max_delay_s < self.base_delay_s:
            raise ValueError(
                f"max_delay_s ({self.max_delay_s:g}) must be >= base_delay_s ({self.base_delay_s:g})"
            )
        return self

    def delay_s(self, streak: int) -> float:
        """The wait before the restart that follows ``streak`` quick crashes in a row (0 → base)."""
        return min(self.base_delay_s * 2.0 ** min(max(streak, 0), 63), self.max_delay_s)


@dataclass(frozen=True)
class Decision:
    """What to do about a crash: give up, or restart after ``delay_s``; ``streak`` is the crash
    streak to remember for the next crash."""

    give_up: bool
    delay_s: float
    streak: int
    recent_restarts: int


def decide(
    policy: RestartPolicy, *, uptime_s: float, streak: int, restart_times: Sequence[float], now: float
) -> Decision:
    """The supervisor's answer to a crash after ``uptime_s`` seconds up.

    ``streak``: quick crashes in a row before this one; ``restart_times``: when earlier restarts of
    this component happened (same clock as ``now``)."""
    if uptime_s >= policy.reset_after_s:
        streak = 0
    recent = sum(1 for t in restart_times if now - t < policy.window_s)
    if recent >= policy.max_restarts:
        return Decision(give_up=True, delay_s=0.0, streak=streak, recent_restarts=recent)
    return Decision(give_up=False, delay_s=policy.delay_s(streak), streak=streak + 1, recent_restarts=recent)


def is_crash(returncode: int) -> bool:
    """A ``Popen.returncode`` (negative: the signal that killed it) that calls for a restart."""
    if returncode == 0:
        return False
    if returncode < 0:
        try:
            return signal.Signals(-returncode) not in CLEAN_SIGNALS
        except ValueError:
            return True
    return True


class ExitStatus(BaseModel):
    """How a process ended: an exit code, or the signal that killed it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: int | None = None
    signal: str | None = None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        if returncode >= 0:
            return cls(code=returncode)
        try:
            return cls(signal=signal.Signals(-returncode).name)
        except ValueError:
            return cls(signal=f"signal {-returncode}")

    def describe(self) -> str:
        return f"code {self.code}" if self.signal is None else f"signal {self.signal}"


class ComponentRecord(BaseModel):
    """One component as the supervisor sees it. Times are Unix seconds."""

    model_config = ConfigDict(extra="forbid")

    state: State
    pid: int | None = None
    started_at: float | None = None
    restarts: int = Field(default=0, ge=0)
    last_exit: ExitStatus | None = None
    exited_at: float | None = None
    last_restart_at: float | None = None
    next_start_at: float | None = None


class SupervisorState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stack_id: str
    supervisor_pid: int
    updated_at: float
    components: dict[str, ComponentRecord]


def write_state(run_dir: Path, state: SupervisorState) -> None:
    """Replace the state file in one step: a reader sees the old file or the new one, never half."""
    replace_text(run_dir / STATE_FILE, state.model_dump_json(indent=1))


def read_state(run_dir: Path) -> SupervisorState | None:
    """The supervisor's last state, or None when there is none (or it cannot be read)."""
    try:
        return SupervisorState.model_validate_json((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValidationError):
        return None


def is_alive(process: int | psutil.Process | None) -> bool:
    """The process (a pid or a ``psutil.Process``) runs; a zombie, dead but not yet reaped by its
    parent, does not."""
    if not process:
        return False
    try:
        proc = process if isinstance(process, psutil.Process) else psutil.Process(process)
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def clean_environ() -> dict[str, str]:
    """The caller's environment without its Airflow settings: the stack's own config must win
    (a caller such as a test session may carry AIRFLOW__* values of its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}


# --- requests to the supervisor --------------------------------------------------------------------

RequestAction = Literal["start"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: RequestAction
    component: str = Field(min_length=1)
    requested_at: float


def send_request(run_dir: Path, action: RequestAction, component: str) -> Path:
    """Drop a request for the supervisor (written under a dot-name, then renamed: never read half)."""
    body = Request(action=action, component=component, requested_at=time.time())
    name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    return replace_text(run_dir / REQUESTS_DIR / name, body.model_dump_json())


def take_requests(run_dir: Path) -> tuple[list[Request], list[str]]:
    """The pending requests, oldest first, each removed once read; plus one line per bad file."""
    folder = run_dir / REQUESTS_DIR
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return [], []
    out: list[Request] = []
    problems: list[str] = []
    for path in files:
        try:
            out.append(Request.model_validate_json(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            continue
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "body"
            problems.append(f"ignored request {path.name}: {where}: {first['msg']}")
        path.unlink(missing_ok=True)
    return out, problems
