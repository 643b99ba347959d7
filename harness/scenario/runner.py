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

This module coordinates; the phases are their own modules: :mod:`~harness.scenario.suite_stack` (the
stack, found or started), :mod:`~harness.scenario.stage` (steps 1, 2 and 5's cleanup),
:mod:`~harness.scenario.timeline` (steps 3 and 4), :mod:`~harness.scenario.runs` (the Airflow runs),
:mod:`~harness.scenario.collect` (5's reading) and :mod:`~harness.scenario.results` (the JSON files,
the summary, rescoring).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from diagnostics.config import Settings
from diagnostics.intake.airflow_api import AirflowApiError
from harness.scenario.collect import collect
from harness.scenario.control import ControlError, Say, TrafficGenerator
from harness.scenario.results import (
    SUITE_FILE,
    ScenarioOutcome,
    SuiteResult,
    checkout_commit,
    summarize,
    write_json,
)
from harness.scenario.runs import Tracked
from harness.scenario.schema import Scenario
from harness.scenario.scoring import ScenarioObservation, score
from harness.scenario.stage import ScenarioAbort, clean_up, scenario_traffic, settle, warm_up
from harness.scenario.suite_stack import SuiteStack, deferred_sigint
from harness.scenario.timeline import Timeline
from harness.scenario.watch import WatchStartError, finish_watch, start_watch


def _quiet(_: str) -> None:
    return None


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
        canary_watch: bool = False,
    ) -> None:
        self.say = say
        self.canary_watch = canary_watch
        self.reset_override = reset_evidence
        self.suite_stack = SuiteStack(
            settings,
            say=say,
            keep_stack=keep_stack,
            start_timeout_s=start_timeout_s,
            extra_pids=self._extra_pids,
        )
        # Run ids any scenario of the suite has seen: a later scenario never claims them.
        self._seen_runs: set[str] = set()
        self._traffic: TrafficGenerator | None = None

    @property
    def settings(self) -> Settings:
        """The settings the stack runs with (on a stack the runner starts: with its runbooks copy)."""
        return self.suite_stack.settings

    @property
    def owned(self) -> bool:
        return self.suite_stack.owned

    @property
    def notes(self) -> list[str]:
        return self.suite_stack.notes

    @property
    def overall_peak_mib(self) -> float | None:
        return self.suite_stack.overall_peak_mib

    def open(self) -> None:
        self.suite_stack.open()

    def close(self) -> None:
        self.suite_stack.close()

    def __enter__(self) -> SuiteRunner:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _extra_pids(self) -> list[int]:
        """The current scenario's traffic generator, for the memory sampler."""
        pids = []
        if self._traffic is not None and self._traffic.proc is not None and self._traffic.alive():
            pids.append(self._traffic.proc.pid)
        return pids

    def run_scenario(
        self,
        sc: Scenario,
        out_dir: Path,
        timeout_cap_s: float | None = None,
        canary_watch: bool | None = None,
    ) -> ScenarioOutcome:
        """One scenario; ``canary_watch`` (default: the runner's) watches the canary from the warm-up on."""
        watch_on = self.canary_watch if canary_watch is None else canary_watch
        parts = self.suite_stack.parts()

        def say(msg: str) -> None:
            self.say(f"[{sc.id}] {msg}")

        timeout_s = min(sc.timeout_s, timeout_cap_s) if timeout_cap_s else sc.timeout_s
        reset = sc.reset_evidence and (self.owned if self.reset_override is None else self.reset_override)
        obs = ScenarioObservation(
            scenario=sc.id, commit=checkout_commit(self.settings.repo_root), started_at=time.time()
        )
        tracked: dict[str, Tracked] = {}
        self._traffic = None
        scenario_dir = out_dir / sc.id
        scenario_dir.mkdir(parents=True, exist_ok=True)
        interrupted = False
        try:
            settle(parts, sc, obs, reset=reset, seen_runs=self._seen_runs, say=say)
            self._traffic = scenario_traffic(parts.settings, sc, timeout_s, scenario_dir)
            if watch_on:
                obs.canary_watch = start_watch(parts.api, sc.id, (sc.warmup_s + timeout_s) / 60, say)
            t0 = warm_up(self._traffic, sc, obs, scenario_dir, say)
            timeline = Timeline(
                parts, sc, obs, tracked, self._seen_runs, t0=t0, deadline=t0 + timeout_s, say=say
            )
            timeline.run()
        except KeyboardInterrupt:
            interrupted = obs.interrupted = True
            say("interrupted: cleaning up")
        except ScenarioAbort:
            pass
        except (ControlError, AirflowApiError, httpx.HTTPError, OSError, WatchStartError) as exc:
            obs.errors.append(f"{type(exc).__name__}: {exc}")
            say(f"error: {exc}")
        finally:
            with deferred_sigint():
                if obs.canary_watch is not None:
                    finish_watch(parts.api, obs.canary_watch, say)
                clean_up(parts, self._traffic, obs, tracked, say)
        collect(parts.settings, sc, obs, tracked, parts.rss)
        result = ScenarioOutcome(Path(), sc, obs, score(sc, obs))
        if interrupted:
            raise _Interrupted(result)
        return result


class _Interrupted(Exception):
    def __init__(self, outcome: ScenarioOutcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


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
    canary_watch: bool = False,
) -> SuiteResult:
    """Run ``scenarios`` in order on one stack; write ``<out_dir>/<name>.json`` per scenario and the
    summary (``summary_path``, e.g. benchmarks/results/scenarios.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[ScenarioOutcome] = []
    started = time.time()
    load_start = os.getloadavg()
    interrupted = False
    runner = SuiteRunner(
        settings, say=say, keep_stack=keep_stack, reset_evidence=reset_evidence, canary_watch=canary_watch
    )
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
                write_json(out_dir / f"{sc.id}.json", outcome.as_json())
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
    summary["canary_watch"] = canary_watch
    write_json(out_dir / SUITE_FILE, summary)
    if summary_path is not None:
        write_json(summary_path, summary)
    return SuiteResult(outcomes, summary, interrupted)


__all__ = ["SuiteRunner", "run_suite"]
