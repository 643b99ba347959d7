"""The scenario suite's local stack: found or started, prepared for the suite, and put back after it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from diagnostics.config import Settings
from diagnostics.intake.airflow_api import AirflowApi, AirflowApiError
from harness.scenario.control import ControlError, Processes, RssSampler, Say, Testbed
from harness.scenario.runs import DAG_ID, REGRESSION_DAG_ID
from harness.stack import Stack, StackError

RATE_LIMIT_MARKER = "      admin_token_env: TRIAGE24_TESTBED_ADMIN_TOKEN\n"
SUITE_RATE_LIMIT = 100


class RunnerError(RuntimeError):
    """The suite cannot run (stack not up, DAG missing); the message says why and what to do."""


def _quiet(_: str) -> None:
    return None


def suite_runbooks(source: Path, dest: Path) -> Path:
    """A copy of ``source`` (runbooks/) in ``dest`` whose testbed rollback allows 100 changes an hour."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    targets = dest / "targets.yaml"
    text = targets.read_text(encoding="utf-8")
    if RATE_LIMIT_MARKER not in text:
        raise RunnerError(
            f"{source / 'targets.yaml'}: the testbed's gateway rollback config is not where expected "
            f"(a line {RATE_LIMIT_MARKER.strip()!r}); cannot raise its rate limit for the suite"
        )
    targets.write_text(
        text.replace(RATE_LIMIT_MARKER, RATE_LIMIT_MARKER + f"      max_changes: {SUITE_RATE_LIMIT}\n"),
        encoding="utf-8",
    )
    return dest


@contextlib.contextmanager
def deferred_sigint() -> Iterator[None]:
    """Cleanup must finish: a Ctrl-C (or SIGTERM) during it is remembered and raised once it is done."""
    caught: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)

    try:
        previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


@dataclass(frozen=True)
class StackParts:
    """An open suite stack's pieces, as every phase of a scenario uses them."""

    settings: Settings
    stack: Stack
    api: AirflowApi
    testbed: Testbed
    procs: Processes
    rss: RssSampler
    owned: bool
    weight_before_suite: float | None


class SuiteStack:
    """One local stack for the suite: a healthy running one as it is, else one started for the suite."""

    def __init__(
        self,
        settings: Settings,
        *,
        say: Say = _quiet,
        keep_stack: bool = False,
        start_timeout_s: float = 400.0,
        extra_pids: Callable[[], list[int]] = list,
    ) -> None:
        self.settings = settings
        self.say = say
        self.keep_stack = keep_stack
        self.start_timeout_s = start_timeout_s
        self.extra_pids = extra_pids
        self.stack: Stack | None = None
        self.owned = False
        self.api: AirflowApi | None = None
        self.testbed: Testbed | None = None
        self.procs: Processes | None = None
        self.rss: RssSampler | None = None
        self.weight_before_suite: float | None = None
        self.notes: list[str] = []
        self._env_before: dict[str, str | None] = {}

    def open(self) -> None:
        stack = self._found()
        if stack is None:
            stack = self._started()
        s = self.settings
        self.stack = stack
        self.procs = Processes(stack)
        if self.owned:
            self.procs.stop("testbed-traffic")
            self.procs.stopped.discard("testbed-traffic")  # stopped for good, not an outage to undo
        self.testbed = Testbed(s, stack.secrets["TRIAGE24_TESTBED_ADMIN_TOKEN"])
        self.api = AirflowApi(s.airflow_url, "admin", stack.secrets["TRIAGE24_ADMIN_PASSWORD"], timeout_s=30)
        try:
            self.api.wait_for_dag(DAG_ID, timeout_s=240)
        except AirflowApiError as exc:
            raise RunnerError(f"{exc}; see {s.log_dir / 'airflow-dag-processor.log'}") from None
        if self.owned:
            self._pause_scheduled_regression()
        self.weight_before_suite = self.testbed.weight()
        self.rss = RssSampler(stack, self.extra_pids)
        self.rss.start()

    def _found(self) -> Stack | None:
        """The stack already running in the home, used as it is (it must be healthy), or None."""
        s = self.settings
        stack = Stack(s, with_testbed=True)
        if not stack.supervisor_pid():
            return None
        statuses = stack.status()
        bad = [
            f"{st.name} ({st.detail})" for st in statuses if not st.healthy and st.name != "testbed-traffic"
        ]
        if bad:
            raise RunnerError(
                f"the local stack in {s.home} runs but is not healthy: {', '.join(bad)}; "
                "see `triage24 stack status`, or stop it (`triage24 stack down`) and let the runner "
                "start one"
            )
        self.say(f"using the running stack in {s.home} (Airflow {s.airflow_url})")
        self.notes.append(
            "ran on a stack that was already running: its runbooks (rollback rate limit "
            "max_changes per hour), background traffic and metric history were left as they were"
        )
        return stack

    def _started(self) -> Stack:
        """A stack started for the suite, on a runbooks copy whose rollback rate limit is raised."""
        s = self.settings
        books = suite_runbooks(s.runbooks_dir, s.home / "scenario-runbooks")
        self._setenv("TRIAGE24_RUNBOOKS_DIR", str(books))  # the stack's processes inherit it
        s = self.settings = s.model_copy(update={"runbooks_dir": books})
        stack = Stack(s, with_testbed=True)
        self.say(f"starting the local stack in {s.home} (Airflow {s.airflow_url}); models load first")
        try:
            stack.up(progress=self.say, timeout_s=self.start_timeout_s)
        except (StackError, FileNotFoundError) as exc:
            raise RunnerError(f"the local stack did not start: {exc}") from None
        self.owned = True
        self.notes.append(
            f"ran on a stack the runner started: runbooks copy with the testbed's rollback rate limit "
            f"raised to {SUITE_RATE_LIMIT} changes an hour; the stack's background traffic stopped"
        )
        return stack

    def _pause_scheduled_regression(self) -> None:
        """The scheduled regression DAG runs its golden suite on both versions when the stack starts and
        every few hours: traffic no scenario asked for (it made a healthy control's canary serve audio
        and router requests, too few for a verdict). On its own stack the runner pauses it."""
        api = self.api
        assert api is not None  # called from open(), after the API client
        try:
            api.wait_for_dag(REGRESSION_DAG_ID, timeout_s=120)
        except AirflowApiError as exc:
            self.notes.append(f"{REGRESSION_DAG_ID} not paused: {exc}")
            return
        resp = api.request("PATCH", f"/dags/{REGRESSION_DAG_ID}", json={"is_paused": True})
        if resp.status_code == 200:
            self.notes.append(
                f"{REGRESSION_DAG_ID} paused for the suite (its golden suite is not scenario traffic)"
            )
        else:
            self.notes.append(f"{REGRESSION_DAG_ID} could not be paused: HTTP {resp.status_code}")

    def _setenv(self, key: str, value: str) -> None:
        self._env_before.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    def close(self) -> None:
        with deferred_sigint():
            if self.rss is not None:
                self.rss.stop()
            if self.testbed is not None and self.weight_before_suite is not None:
                with contextlib.suppress(ControlError):
                    self.testbed.weight(self.weight_before_suite)
            if self.api is not None:
                self.api.close()
            if self.owned and self.stack is not None and not self.keep_stack:
                assert self.procs is not None
                self.procs.terminate_restarted()
                self.say("stopping the stack the runner started")
                self.stack.down(progress=self.say)
            elif self.owned and self.stack is not None:
                self.say(f"the stack keeps running in {self.settings.home} (`triage24 stack down` stops it)")
            for key, old in self._env_before.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old

    def parts(self) -> StackParts:
        if not (self.stack and self.api and self.testbed and self.procs and self.rss):
            raise RunnerError("the runner is not open: use it as a context manager")
        return StackParts(
            self.settings,
            self.stack,
            self.api,
            self.testbed,
            self.procs,
            self.rss,
            self.owned,
            self.weight_before_suite,
        )

    @property
    def overall_peak_mib(self) -> float | None:
        return round(self.rss.overall_mib, 1) if self.rss and self.rss.overall_mib else None


__all__ = ["RunnerError", "StackParts", "SuiteStack", "deferred_sigint", "suite_runbooks"]
