"""Run scenarios end to end on the local stack, bounded in time, cleaning up after each one.

Per scenario (``benchmarks/README.md`` has the whole story):

1. settle: the previous scenario's runs are finished, faults cleared on both versions, the gateway's
   canary weight set to the scenario's ``start_weight``; with ``reset_evidence`` (on a stack the runner
   started) Prometheus restarts on an empty TSDB and the testbed's logs are truncated, so the 15-minute
   evidence window of the next incident holds this scenario only; then Alertmanager must be quiet;
2. traffic through the gateway (``python -m testbed traffic``), ``warmup_s`` of it before anything else;
3. the timeline: faults injected (and expired by the testbed), outages started and undone, the manual
   investigation opened; alert-driven ``incident_response`` runs are discovered as the intake creates
   them; a run that asks a human is answered as the scenario says;
4. the end: every run of the scenario finished (or the scenario's timeout, after which the runner marks
   its unfinished runs failed so they do not block the next incident of the same alert group);
5. cleanup in ``finally`` (also on Ctrl-C): traffic stopped, faults cleared, outages undone, the weight
   put back to what it was before the suite; then the runs are read and every expectation scored.

A stack the runner starts itself uses a copy of ``runbooks/`` whose testbed rollback rate limit is 100
changes an hour (the real 3 would refuse the 4th rollback of a suite, as designed), and has its steady
background traffic stopped (each scenario's traffic is the whole load). A stack found running is used as
it is: its rate limit, its background traffic and its evidence history stay, which the summary notes.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import httpx
import psutil

from diagnostics.config import Settings
from diagnostics.runbooks import RunbookError, load_runbooks
from diagnostics.runbooks.decision import HUMAN_OPTIONS
from harness.scenario.control import (
    VERSIONS,
    ControlError,
    Processes,
    RssSampler,
    Testbed,
    TrafficGenerator,
    alertmanager_active,
    prometheus_alerts,
    truncate_logs,
)
from harness.scenario.observe import leaked_pii, observe_run
from harness.scenario.schema import Outage, Scenario
from harness.scenario.scoring import ScenarioObservation, ScenarioScore, score, suite_figures
from harness.stack import Stack, StackError
from harness.stack.airflow_api import TERMINAL_RUN_STATES, AirflowApi, AirflowApiError

DAG_ID = "incident_response"
REGRESSION_DAG_ID = "triage24_regression"
Say = Callable[[str], None]
RATE_LIMIT_MARKER = "      admin_token_env: TRIAGE24_TESTBED_ADMIN_TOKEN\n"
SUITE_RATE_LIMIT = 100
POLL_S = 2.0
QUIET_TIMEOUT_S = 150.0
IDLE_TIMEOUT_S = 300.0
IDLE_TIMEOUT_OWNED_S = 150.0
SETTLE_S = 10.0


class RunnerError(RuntimeError):
    """The suite cannot run (stack not up, DAG missing); the message says why and what to do."""


def _quiet(_: str) -> None:
    return None


def checkout_commit(repo: Path) -> str | None:
    """The short commit of the checkout the runner runs from (``-dirty`` with local changes), or None."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine() -> str:
    return (
        f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).isoformat(timespec="seconds")


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


@dataclass
class _Tracked:
    run_id: str
    kind: Literal["alert", "manual"]
    run: dict[str, Any]
    asked_at: float | None = None
    answered: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return str(self.run.get("state")) in TERMINAL_RUN_STATES


@dataclass
class _Event:
    at: float
    label: str
    action: Callable[[], None]


@dataclass
class ScenarioOutcome:
    file: Path
    scenario: Scenario
    observation: ScenarioObservation
    score: ScenarioScore

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.id,
            "file": str(self.file),
            "status": self.score.status,
            "description": self.scenario.description,
            "tags": self.scenario.tags,
            "failed": [e.name for e in self.score.failed],
            "timings": self.score.timings,
            "expectations": [e.model_dump(mode="json") for e in self.score.expectations],
            "observation": self.observation.model_dump(mode="json"),
            "definition": self.scenario.model_dump(mode="json"),
        }


class SuiteRunner:
    """One local stack (found or started), then scenarios on it one after the other."""

    def __init__(
        self,
        settings: Settings,
        *,
        say: Say = _quiet,
        keep_stack: bool = False,
        reset_evidence: bool | None = None,
        start_timeout_s: float = 400.0,
    ) -> None:
        self.settings = settings
        self.say = say
        self.keep_stack = keep_stack
        self.reset_override = reset_evidence
        self.start_timeout_s = start_timeout_s
        self.stack: Stack | None = None
        self.owned = False
        self.api: AirflowApi | None = None
        self.testbed: Testbed | None = None
        self.procs: Processes | None = None
        self.rss: RssSampler | None = None
        self.weight_before_suite: float | None = None
        self.notes: list[str] = []
        self._env_before: dict[str, str | None] = {}
        self._seen_runs: set[str] = set()
        self._traffic: TrafficGenerator | None = None

    # --- the stack -------------------------------------------------------------------------------

    def open(self) -> None:
        s = self.settings
        stack = Stack(s, with_testbed=True)
        if stack.supervisor_pid():
            statuses = stack.status()
            bad = [
                f"{st.name} ({st.detail})"
                for st in statuses
                if not st.healthy and st.name != "testbed-traffic"
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
        else:
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
        self.rss = RssSampler(stack, self._extra_pids)
        self.rss.start()

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

    def _extra_pids(self) -> list[int]:
        pids = []
        if self._traffic is not None and self._traffic.proc is not None and self._traffic.alive():
            pids.append(self._traffic.proc.pid)
        return pids

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

    def __enter__(self) -> SuiteRunner:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def overall_peak_mib(self) -> float | None:
        return round(self.rss.overall_mib, 1) if self.rss and self.rss.overall_mib else None

    # --- helpers -----------------------------------------------------------------------------------

    def _parts(self) -> tuple[Stack, AirflowApi, Testbed, Processes, RssSampler]:
        if not (self.stack and self.api and self.testbed and self.procs and self.rss):
            raise RunnerError("the runner is not open: use it as a context manager")
        return self.stack, self.api, self.testbed, self.procs, self.rss

    def _runs(self, since: float) -> list[dict[str, Any]]:
        _, api, *_ = self._parts()
        resp = api.request(
            "GET",
            f"/dags/{DAG_ID}/dagRuns",
            params={"order_by": "-id", "limit": 50, "run_id_prefix_pattern": "incident__"},
        )
        if resp.status_code != 200:
            raise AirflowApiError(f"list runs of {DAG_ID}: HTTP {resp.status_code}: {resp.text[:200]}")
        out = []
        for run in resp.json().get("dag_runs", []):
            queued = run.get("queued_at") or run.get("run_after")
            if queued and datetime.fromisoformat(str(queued).replace("Z", "+00:00")).timestamp() >= since - 1:
                out.append(dict(run))
        return out

    def _answer_human(self, tr: _Tracked, sc: Scenario, say: Say) -> None:
        """Answer the run's human gate as the scenario's on-call engineer does."""
        _, api, *_ = self._parts()
        if tr.answered is not None or sc.human.answer == "none":
            return
        resp = api.request("GET", f"/dags/{DAG_ID}/dagRuns/{tr.run_id}/taskInstances")
        if resp.status_code != 200:
            return
        waiting = [t for t in resp.json().get("task_instances", []) if t.get("state") == "awaiting_input"]
        if not waiting:
            return
        now = time.time()
        if tr.asked_at is None:
            tr.asked_at = now
            say(f"{tr.run_id} asks a human ({waiting[0]['task_id']}); answering {sc.human.answer!r}")
        # An answer within the ~0.2 s the worker needs to park the task was seen to be lost (Airflow 3.3).
        if now - tr.asked_at < max(sc.human.after_s, 2.0):
            return
        option = HUMAN_OPTIONS[sc.human.answer]
        task_id = waiting[0]["task_id"]
        answer = api.request(
            "PATCH",
            f"/dags/{DAG_ID}/dagRuns/{tr.run_id}/taskInstances/{task_id}/-1/hitlDetails",
            json={"chosen_options": [option]},
        )
        if answer.status_code == 200:
            tr.answered = sc.human.answer
            tr.notes.append(
                f"human gate {task_id} answered {option!r} {now - tr.asked_at:.0f} s after it asked"
            )
        else:
            tr.notes.append(f"answering {task_id} failed: HTTP {answer.status_code} {answer.text[:200]}")
            tr.answered = f"failed ({answer.status_code})"

    def _give_up(self, tr: _Tracked, say: Say, when: str = "at the scenario's timeout") -> None:
        """Mark an unfinished run failed, so its alert group's next incident can open."""
        _, api, *_ = self._parts()
        resp = api.request("PATCH", f"/dags/{DAG_ID}/dagRuns/{tr.run_id}", json={"state": "failed"})
        tr.notes.append(
            f"still {tr.run.get('state')} {when}: the runner marked it failed (HTTP {resp.status_code})"
        )
        say(f"{tr.run_id} still {tr.run.get('state')} {when}: marked failed")
        with contextlib.suppress(AirflowApiError, httpx.HTTPError):
            tr.run = api.run(DAG_ID, tr.run_id)

    def _wait_quiet(self, say: Say, reset: bool) -> str | None:
        """Until neither Alertmanager (nor, without a reset, Prometheus) has an active testbed alert."""
        deadline = time.monotonic() + QUIET_TIMEOUT_S
        last: list[str] = []
        next_note = time.monotonic() + 30
        while time.monotonic() < deadline:
            last = alertmanager_active(self.settings) + ([] if reset else prometheus_alerts(self.settings))
            if not last:
                return None
            if time.monotonic() > next_note:
                say(f"waiting for earlier alerts to resolve: {', '.join(last)}")
                next_note = time.monotonic() + 30
            time.sleep(2.0)
        waited = f"{QUIET_TIMEOUT_S:.0f} s"
        return f"alerts still active when the scenario started (after {waited}): {', '.join(last)}"

    def _wait_idle(self, say: Say) -> str | None:
        """Until no incident or scheduled regression run is in flight (an earlier scenario's late run
        would act during this one). On the runner's own stack incident and regression runs in flight are
        marked failed at once; on another stack the suite's own ones are after the wait, others make it
        an error."""
        _, api, *_ = self._parts()
        bound = IDLE_TIMEOUT_OWNED_S if self.owned else IDLE_TIMEOUT_S
        deadline = time.monotonic() + bound
        next_note = time.monotonic() + 30
        while True:
            resp = api.request(
                "GET",
                f"/dags/{DAG_ID}/dagRuns",
                params={"order_by": "-id", "limit": 50, "state": ["queued", "running"]},
            )
            busy = [dict(r) for r in resp.json().get("dag_runs", [])] if resp.status_code == 200 else []
            # A scheduled regression run in flight probes both versions too: on another stack, wait for
            # it (never failed there).
            reg = api.request(
                "GET",
                f"/dags/{REGRESSION_DAG_ID}/dagRuns",
                params={"limit": 10, "state": ["queued", "running"]},
            )
            regression = (
                [str(r["dag_run_id"]) for r in reg.json().get("dag_runs", [])]
                if reg.status_code == 200
                else []
            )
            if self.owned:
                # On the runner's own stack a run in flight now is nobody's scenario: one its start-up
                # opened (models loading for longer than ModelNotLoaded's 30 s page) or an earlier
                # scenario's late run (recorded there). End it now rather than let its phase-2 probes
                # and human gate run into this scenario's measurements.
                for run in busy:
                    rid = str(run["dag_run_id"])
                    self._seen_runs.add(rid)
                    self._give_up(_Tracked(rid, "alert", run), say, "(opened before this scenario)")
                busy = []
                # Its scheduled regression run (the one the start-up fires before the runner pauses
                # the DAG) is nobody's either: waiting for it cost 150 s a suite.
                for rid in regression:
                    api.request("PATCH", f"/dags/{REGRESSION_DAG_ID}/dagRuns/{rid}", json={"state": "failed"})
                    say(f"{REGRESSION_DAG_ID} run {rid} in flight on the runner's own stack: marked failed")
                regression = []
            if not busy and not regression:
                return None
            if not busy and time.monotonic() > deadline:
                waiting = ", ".join(regression)
                return f"{REGRESSION_DAG_ID} runs still in flight after {bound:.0f} s: {waiting}"
            if time.monotonic() > deadline:
                ours = [r for r in busy if self.owned or r["dag_run_id"] in self._seen_runs]
                for run in ours:
                    self._give_up(_Tracked(str(run["dag_run_id"]), "alert", run), say, f"after {bound:.0f} s")
                others = [str(r["dag_run_id"]) for r in busy if r not in ours]
                if others:
                    return f"incident runs still in flight after {bound:.0f} s: {', '.join(others)}"
                return None
            if time.monotonic() > next_note:
                names = [str(r["dag_run_id"]) for r in busy] + regression
                say(f"waiting for in-flight runs: {', '.join(names)}")
                next_note = time.monotonic() + 30
            time.sleep(3.0)

    def _deliveries(self, since: float) -> dict[str, int]:
        from diagnostics.intake.config import IntakeSettings

        path = IntakeSettings().journal_path(self.settings)
        if not path.is_file():
            return {}
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
                rows = conn.execute(
                    "SELECT outcome, COUNT(*) FROM deliveries WHERE received_at >= ? GROUP BY outcome",
                    (since,),
                ).fetchall()
        except sqlite3.Error:
            return {}
        return {str(k): int(v) for k, v in rows}

    def _incident_grades(self, run_ids: list[str]) -> dict[str, str]:
        """The intake journal's grade of each run's incident now: an alert of a higher grade joining the
        group after the run was created raises it (the run's conf keeps the grade it opened with)."""
        from diagnostics.intake.config import IntakeSettings

        path = IntakeSettings().journal_path(self.settings)
        if not run_ids or not path.is_file():
            return {}
        out: dict[str, str] = {}
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
                for run_id in run_ids:
                    row = conn.execute("SELECT grade FROM incidents WHERE run_id = ?", (run_id,)).fetchone()
                    if row is not None:
                        out[run_id] = str(row[0])
        except sqlite3.Error:
            return out
        return out

    # --- one scenario ------------------------------------------------------------------------------

    def run_scenario(
        self, sc: Scenario, out_dir: Path, timeout_cap_s: float | None = None
    ) -> ScenarioOutcome:
        _, _, tb, procs, rss = self._parts()

        def say(msg: str) -> None:
            self.say(f"[{sc.id}] {msg}")

        timeout_s = min(sc.timeout_s, timeout_cap_s) if timeout_cap_s else sc.timeout_s
        reset = sc.reset_evidence and (self.owned if self.reset_override is None else self.reset_override)
        obs = ScenarioObservation(
            scenario=sc.id, commit=checkout_commit(self.settings.repo_root), started_at=time.time()
        )
        tracked: dict[str, _Tracked] = {}
        self._traffic = None
        scenario_dir = out_dir / sc.id
        scenario_dir.mkdir(parents=True, exist_ok=True)
        interrupted = False
        try:
            # 1. settle: no run in flight (its phase-2 probes would count as this scenario's traffic),
            # then fresh evidence, then no alert left to open this scenario's incident
            for v in VERSIONS:
                tb.clear(v)
            problem = self._wait_idle(say)
            if reset and not problem:
                say("fresh evidence: Prometheus restarts on an empty TSDB, testbed logs truncated")
                procs.stop("prometheus")
                procs.start("prometheus", wipe=self.settings.home / "prometheus" / "data", say=say)
                truncate_logs(self.settings.log_dir)
            problem = problem or self._wait_quiet(say, reset)
            if problem:
                obs.errors.append(problem)
                say(problem)
                raise _Abort
            for v in VERSIONS:  # an earlier run's rollback or a human's choice is undone only now
                tb.clear(v)
            obs.weight_start = tb.weight(sc.start_weight)
            obs.started_at = time.time()
            rss.reset()
            # 2. traffic and warm-up
            tr = sc.traffic
            duration = tr.duration_s or (sc.warmup_s + timeout_s + 60)
            self._traffic = TrafficGenerator(
                self.settings, tr.rate, duration, tr.mix_arg(), tr.seed, scenario_dir / "traffic.log"
            )
            pid = self._traffic.start()
            say(
                f"traffic {tr.rate:g} req/s ({tr.mix_arg() or 'default mix'}) via the gateway, canary weight "
                f"{obs.weight_start:g} %, pid {pid}; warm-up {sc.warmup_s:g} s"
            )
            warm_end = time.time() + sc.warmup_s
            while time.time() < warm_end:
                if not self._traffic.alive():
                    obs.errors.append(
                        f"the traffic generator exited early; see {scenario_dir / 'traffic.log'}"
                    )
                    raise _Abort
                time.sleep(1.0)
            t0 = obs.warmup_done_at = time.time()
            # 3. the timeline
            self._timeline(sc, obs, tracked, t0, t0 + timeout_s, say)
        except KeyboardInterrupt:
            interrupted = obs.interrupted = True
            say("interrupted: cleaning up")
        except _Abort:
            pass
        except (ControlError, AirflowApiError, httpx.HTTPError, OSError) as exc:
            obs.errors.append(f"{type(exc).__name__}: {exc}")
            say(f"error: {exc}")
        finally:
            with deferred_sigint():
                self._cleanup(sc, obs, tracked, say)
        # 5. read what happened
        try:
            matrix = load_runbooks(self.settings.runbooks_dir).priority_matrix
            actions = {p.action: p.id for p in matrix.problems}
        except RunbookError as exc:
            obs.errors.append(f"runbooks unreadable, runbook actions not named: {exc}")
            actions = {}
        pii = leaked_pii(sorted(self.settings.log_dir.glob("testbed-*.jsonl")), since=obs.started_at)
        obs.pii_values_logged = len(pii)
        for tr_ in tracked.values():
            run_obs = observe_run(
                self.settings.artifacts,
                tr_.run,
                tr_.kind,
                human_answer=tr_.answered,
                pii_values=pii,
                actions=actions,
            )
            run_obs.notes += tr_.notes
            obs.runs.append(run_obs)
        obs.runs.sort(key=lambda r: r.times.created or 0.0)
        if obs.primary is None and obs.runs and sc.trigger.kind == "alert":
            obs.primary = obs.runs[0].run_id  # interrupted before the timeline chose
        obs.deliveries = self._deliveries(obs.started_at)
        grades = self._incident_grades([r.run_id for r in obs.runs])
        for run_obs in obs.runs:
            run_obs.incident_grade = grades.get(run_obs.run_id)
        obs.peak_rss_mib = round(rss.peak_mib, 1) if rss.peak_mib else None
        obs.peak_pss_mib = round(rss.peak_pss_mib, 1) if rss.peak_pss_mib else None
        result = ScenarioOutcome(Path(), sc, obs, score(sc, obs))
        if interrupted:
            raise _Interrupted(result)
        return result

    def _timeline(
        self,
        sc: Scenario,
        obs: ScenarioObservation,
        tracked: dict[str, _Tracked],
        t0: float,
        deadline: float,
        say: Say,
    ) -> None:
        _, api, tb, procs, _ = self._parts()
        events: list[_Event] = []

        def inject(step: Any) -> Callable[[], None]:
            def go() -> None:
                tb.inject(step.version, step.admin_body())
                if obs.fault_injected_at is None:
                    obs.fault_injected_at = time.time()

            return go

        for f in sc.faults:
            events.append(_Event(t0 + f.start_s, f"inject {f.label()}", inject(f)))

        def outage_events(o: Outage, start: float) -> list[_Event]:
            name = o.component.value
            if o.mode == "pause":
                begin, end = (lambda: procs.pause(name)), (lambda: procs.resume(name))
            else:
                begin, end = (lambda: procs.stop(name)), (lambda: procs.start(name, say=say, wait=False))
            return [
                _Event(start + o.delay_s, f"outage: {o.mode} {name} for {o.duration_s:g} s", begin),
                _Event(start + o.delay_s + o.duration_s, f"outage over: {name} back", end),
            ]

        for o in sc.outages:
            if o.after == "start":
                events += outage_events(o, t0)

        def manual() -> None:
            run_id = f"manual__scenario-{sc.id.replace('_', '-')}-{int(time.time())}"
            conf: dict[str, Any] = {
                "target": "testbed",
                "window_minutes": sc.window_minutes(),
                "dry_run": False,
            }
            if sc.trigger.version:
                conf["version"] = sc.trigger.version
            obs.manual_triggered_at = time.time()  # the engineer presses "Trigger"
            api.trigger(DAG_ID, run_id=run_id, conf=conf)
            obs.primary = run_id
            tracked[run_id] = _Tracked(run_id, "manual", api.run(DAG_ID, run_id))
            self._seen_runs.add(run_id)

        if sc.trigger.kind == "manual":
            events.append(_Event(t0 + sc.trigger.after_s, "open the investigation (manual trigger)", manual))
        events.sort(key=lambda e: e.at)
        incident_outages = [o for o in sc.outages if o.after == "incident"]
        alert_outages = [o for o in sc.outages if o.after == "alert"]
        # The incident the scenario is about: the first of the broken version's alert group.
        fault_version = sc.faults[0].version if sc.faults else None
        last_poll = 0.0
        next_note = time.time() + 20
        all_done_since: float | None = None
        primary_done = False
        while True:
            now = time.time()
            while events and events[0].at <= now:
                ev = events.pop(0)
                say(f"t+{now - t0:.0f} s: {ev.label}")
                ev.action()
            if now - last_poll >= POLL_S:
                last_poll = now
                if alert_outages:
                    held = [
                        a
                        for a in alertmanager_active(self.settings)
                        if fault_version is None or a.endswith(f"{{{fault_version}}}")
                    ]
                    if held:
                        say(f"t+{now - t0:.0f} s: Alertmanager holds {', '.join(held)}")
                        for o in alert_outages:
                            events += outage_events(o, now)
                        events.sort(key=lambda e: e.at)
                        alert_outages = []
                        continue
                for run in self._runs(obs.started_at):
                    rid = str(run["dag_run_id"])
                    if rid in tracked:
                        continue
                    if rid in self._seen_runs:
                        continue  # an earlier scenario's
                    self._seen_runs.add(rid)
                    if primary_done:
                        # The scenario's incident is over; the still-broken (rolled back) version's
                        # alert group changing opens another incident: recorded, not waited for.
                        if rid not in obs.late_runs:
                            obs.late_runs.append(rid)
                        say(f"t+{now - t0:.0f} s: {rid} created after the scenario's incident ended (late)")
                        continue
                    tracked[rid] = _Tracked(rid, "alert", run)
                    grade = (run.get("conf") or {}).get("grade")
                    say(f"t+{now - t0:.0f} s: incident run {rid} created (grade {grade})")
                    if (
                        obs.primary is None
                        and sc.trigger.kind == "alert"
                        and (fault_version is None or (run.get("conf") or {}).get("version") == fault_version)
                    ):
                        obs.primary = rid
                        for o in incident_outages:
                            events += outage_events(o, time.time())
                        events.sort(key=lambda e: e.at)
                for t in tracked.values():
                    if not t.done:
                        t.run = api.run(DAG_ID, t.run_id)
                        if t.done:
                            say(f"t+{now - t0:.0f} s: {t.run_id} {t.run.get('state')}")
                        else:
                            self._answer_human(t, sc, say)
                if not primary_done and obs.primary in tracked and tracked[obs.primary].done:
                    primary_done = True
                    # Its conclusion is in: the faults go now (outages keep their own schedule), so
                    # the broken version's alerts resolve while the other runs finish.
                    events = [e for e in events if not e.label.startswith("inject ")]
                    for v in VERSIONS:
                        if tb.clear(v):
                            say(f"t+{now - t0:.0f} s: the scenario's incident is over: faults cleared on {v}")
            waiting_alert = sc.trigger.kind == "alert" and obs.primary is None
            if waiting_alert and now > t0 + sc.trigger.timeout_s:
                others = [t for t in tracked.values() if t.kind == "alert"]
                if not others:
                    say(f"no incident run {sc.trigger.timeout_s:g} s after the warm-up: stop waiting")
                    return
                # only runs of another version's alert group: the first one is what the pipeline opened
                obs.primary = others[0].run_id
                say(f"no {fault_version} incident; the scenario's incident is {obs.primary}")
                waiting_alert = False
            runs_done = bool(tracked) and all(t.done for t in tracked.values())
            finished = runs_done and not events and obs.primary is not None
            if finished:
                all_done_since = all_done_since or now
                if now - all_done_since >= SETTLE_S:  # a second alert group may still be on its way
                    return
            else:
                all_done_since = None
            if now > deadline:
                say(f"scenario timeout ({deadline - t0:.0f} s after the warm-up)")
                for t in tracked.values():
                    if not t.done:
                        self._give_up(t, say)
                return
            if now >= next_note:
                next_note = now + 20
                states = ", ".join(f"{t.run_id[-8:]} {t.run.get('state')}" for t in tracked.values())
                what = "waiting for the alert" if waiting_alert else (states or "waiting")
                alerts = ", ".join(alertmanager_active(self.settings)) or "none"
                say(f"t+{now - t0:.0f} s: {what}; alerts: {alerts}")
            time.sleep(1.0)

    def _cleanup(
        self, sc: Scenario, obs: ScenarioObservation, tracked: dict[str, _Tracked], say: Say
    ) -> None:
        _, _, tb, procs, _ = self._parts()
        if self._traffic is not None:
            self._traffic.stop()
        for problem in procs.restore(say=say):
            obs.errors.append(f"outage not undone: {problem}")
        with contextlib.suppress(ControlError):
            obs.weight_end = tb.weight()
        for v in VERSIONS:
            try:
                cleared = tb.clear(v)
            except ControlError as exc:
                obs.errors.append(f"faults not cleared on {v}: {exc}")
                continue
            if cleared:
                say(f"cleared on {v}: {', '.join(cleared)}")
        for t in tracked.values():
            if not t.done:
                with contextlib.suppress(AirflowApiError, httpx.HTTPError):
                    self._give_up(t, say)
        if self.weight_before_suite is not None:
            try:
                tb.weight(self.weight_before_suite)
            except ControlError as exc:
                obs.errors.append(f"weight not restored: {exc}")


class _Abort(Exception):
    """The scenario cannot go on (already recorded in the observation's errors)."""


class _Interrupted(Exception):
    def __init__(self, outcome: ScenarioOutcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


@dataclass
class SuiteResult:
    outcomes: list[ScenarioOutcome]
    summary: dict[str, Any]
    interrupted: bool = False


def run_suite(
    scenarios: list[tuple[Path, Scenario]],
    settings: Settings,
    *,
    out_dir: Path,
    summary_path: Path | None,
    timeout_cap_s: float | None = None,
    command: str = "",
    say: Say = _quiet,
    keep_stack: bool = False,
    reset_evidence: bool | None = None,
) -> SuiteResult:
    """Run ``scenarios`` in order on one stack; write ``<out_dir>/<name>.json`` per scenario and the
    summary (``summary_path``, e.g. benchmarks/results/scenarios.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[ScenarioOutcome] = []
    started = time.time()
    load_start = os.getloadavg()
    interrupted = False
    runner = SuiteRunner(settings, say=say, keep_stack=keep_stack, reset_evidence=reset_evidence)
    notes: list[str] = []
    try:
        with runner:
            for i, (path, sc) in enumerate(scenarios, 1):
                say(f"scenario {i}/{len(scenarios)}: {sc.id} - {sc.description.splitlines()[0]}")
                try:
                    outcome = runner.run_scenario(sc, out_dir, timeout_cap_s)
                except _Interrupted as stop:
                    outcome, interrupted = stop.outcome, True
                outcome.file = path
                outcomes.append(outcome)
                _write(out_dir / f"{sc.id}.json", outcome.as_json())
                failed = ", ".join(e.name for e in outcome.score.failed)
                say(f"scenario {sc.id}: {outcome.score.status}" + (f" (failed: {failed})" if failed else ""))
                if interrupted:
                    break
            notes = runner.notes
    except KeyboardInterrupt:
        interrupted = True
    summary = summarize(outcomes, command=command, started=started, load_start=load_start, notes=notes)
    summary["peak_rss_mib_suite"] = runner.overall_peak_mib
    summary["interrupted"] = interrupted
    if summary_path is not None:
        _write(summary_path, summary)
    return SuiteResult(outcomes, summary, interrupted)


def summarize(
    outcomes: list[ScenarioOutcome],
    *,
    command: str,
    started: float,
    load_start: tuple[float, float, float],
    notes: list[str],
) -> dict[str, Any]:
    figures = suite_figures([(o.scenario, o.observation, o.score) for o in outcomes])
    return {
        "benchmark": "scenarios",
        "command": command,
        "date": _iso(started),
        "finished": _iso(),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
        "notes": notes,
        "commits": sorted({o.observation.commit for o in outcomes if o.observation.commit}),
        **figures,
        "definitions": {
            "accuracy": "share of scenarios whose every expectation was met",
            "healthy_rollbacks": "rollbacks applied in scenarios that expect none",
            "timings": "seconds from the alert's startsAt (a manual investigation: its trigger) to each step "
            "of the scenario's primary run; detection_s from the first fault to the alert's startsAt",
            "peak_rss_mib": "highest sum of resident memory of every stack process (Airflow, Prometheus, "
            "Alertmanager, testbed) plus the scenario's traffic generator, sampled every 3 s",
            "peak_pss_mib": "the same processes' summed proportional set size (shared pages counted once)",
        },
        "results": [
            {
                "scenario": o.scenario.id,
                "file": str(o.file),
                "status": o.score.status,
                "commit": o.observation.commit,
                "primary_run": o.observation.primary,
                "runs": len(o.observation.runs),
                "late_runs": o.observation.late_runs,
                "decision": (o.observation.primary_run() or _NoRun).decision,
                "rollback": any(r.rollback_outcome == "applied" for r in o.observation.runs),
                "failed": [
                    {
                        "expectation": e.name,
                        "expected": e.expected,
                        "observed": e.observed,
                        "detail": e.detail,
                    }
                    for e in o.score.failed
                ],
                "errors": o.observation.errors,
                "timings": o.score.timings,
                "peak_rss_mib": o.observation.peak_rss_mib,
                "peak_pss_mib": o.observation.peak_pss_mib,
            }
            for o in outcomes
        ],
    }


class _NoRun:
    decision = None


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def rescore(out_dir: Path, summary_path: Path | None, say: Say = _quiet) -> dict[str, Any]:
    """Score the observations stored in ``out_dir`` again, against the scenario files as they are now
    (the stored definition where a file is gone): the runs are not repeated, only judged. The summary
    keeps the run's command, date, machine, load and memory, and says when it was rescored."""
    from harness.scenario.schema import load_scenario

    outcomes: list[ScenarioOutcome] = []
    for path in sorted(out_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "observation" not in data:
            continue
        source = Path(data["file"])
        sc = load_scenario(source) if source.is_file() else Scenario.model_validate(data["definition"])
        obs = ScenarioObservation.model_validate(data["observation"])
        outcome = ScenarioOutcome(source, sc, obs, score(sc, obs))
        _write(path, outcome.as_json())
        outcomes.append(outcome)
        say(f"{sc.id}: {outcome.score.status}")
    previous: dict[str, Any] = {}
    if summary_path is not None and summary_path.is_file():
        previous = json.loads(summary_path.read_text(encoding="utf-8"))
    order = {name: i for i, name in enumerate(r["scenario"] for r in previous.get("results", []))}
    outcomes.sort(key=lambda o: order.get(o.scenario.id, len(order)))
    summary = summarize(
        outcomes, command=previous.get("command", ""), started=time.time(), load_start=(0, 0, 0), notes=[]
    )
    for key in (
        "command",
        "date",
        "finished",
        "duration_s",
        "machine",
        "load_average",
        "notes",
        "peak_rss_mib_suite",
        "interrupted",
    ):
        if key in previous:
            summary[key] = previous[key]
    summary["rescored"] = _iso()
    if summary_path is not None:
        _write(summary_path, summary)
    return summary


def default_out_dir(settings: Settings) -> Path:
    return settings.home / "scenarios" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


__all__ = [
    "RunnerError",
    "ScenarioOutcome",
    "SuiteResult",
    "SuiteRunner",
    "default_out_dir",
    "rescore",
    "run_suite",
    "suite_runbooks",
]
