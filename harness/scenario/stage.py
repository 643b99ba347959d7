"""Around a scenario's timeline: settle the stack and warm up before it, put everything back after it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx

from diagnostics.config import Settings
from diagnostics.intake.airflow_api import AirflowApiError
from harness.scenario.control import (
    VERSIONS,
    ControlError,
    Say,
    TrafficGenerator,
    alertmanager_active,
    prometheus_alerts,
    truncate_logs,
)
from harness.scenario.runs import DAG_ID, REGRESSION_DAG_ID, Tracked, give_up
from harness.scenario.schema import Scenario
from harness.scenario.scoring import ScenarioObservation
from harness.scenario.suite_stack import StackParts

QUIET_TIMEOUT_S = 150.0
IDLE_TIMEOUT_S = 300.0
IDLE_TIMEOUT_OWNED_S = 150.0


class ScenarioAbort(Exception):
    """The scenario cannot go on (already recorded in the observation's errors)."""


def close_intake_incidents(settings: Settings) -> list[str]:
    """Close every open incident in the stack's intake journal (the run ids)."""
    from diagnostics.intake.config import IntakeSettings
    from diagnostics.intake.journal import Journal

    path = IntakeSettings().journal_path(settings)
    if not path.exists():
        return []
    journal = Journal(path)
    try:
        with journal.transaction() as tx:
            return tx.close_open_incidents(time.time())
    finally:
        journal.close()


def settle(
    parts: StackParts, sc: Scenario, obs: ScenarioObservation, *, reset: bool, seen_runs: set[str], say: Say
) -> None:
    """Step 1: no run in flight (its phase-2 probes would count as this scenario's traffic), then fresh
    evidence, then no alert left to open this scenario's incident; the scenario starts at its weight."""
    tb, procs = parts.testbed, parts.procs
    for v in VERSIONS:
        tb.clear(v)
    problem = wait_idle(parts, seen_runs, say)
    if reset and not problem:
        say("fresh evidence: Prometheus restarts on an empty TSDB, testbed logs truncated")
        procs.stop("prometheus")
        procs.start("prometheus", wipe=parts.settings.home / "prometheus" / "data", say=say)
        truncate_logs(parts.settings.log_dir)
        # An earlier scenario's incident stays open while its alerts fire (and quiet_s after): this
        # scenario's alerts would join it. Its runs are over (wait_idle), so it is closed here.
        closed = close_intake_incidents(parts.settings)
        if closed:
            say(f"closed the intake's open incident(s) of earlier scenarios: {', '.join(closed)}")
    problem = problem or wait_quiet(parts.settings, say, reset)
    if problem:
        obs.errors.append(problem)
        say(problem)
        raise ScenarioAbort
    for v in VERSIONS:  # an earlier run's rollback or a human's choice is undone only now
        tb.clear(v)
    obs.weight_start = tb.weight(sc.start_weight)
    obs.started_at = time.time()
    parts.rss.reset()


def wait_quiet(settings: Settings, say: Say, reset: bool) -> str | None:
    """Until neither Alertmanager (nor, without a reset, Prometheus) has an active testbed alert."""
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    last: list[str] = []
    next_note = time.monotonic() + 30
    while time.monotonic() < deadline:
        last = alertmanager_active(settings) + ([] if reset else prometheus_alerts(settings))
        if not last:
            return None
        if time.monotonic() > next_note:
            say(f"waiting for earlier alerts to resolve: {', '.join(last)}")
            next_note = time.monotonic() + 30
        time.sleep(2.0)
    waited = f"{QUIET_TIMEOUT_S:.0f} s"
    return f"alerts still active when the scenario started (after {waited}): {', '.join(last)}"


def wait_idle(parts: StackParts, seen_runs: set[str], say: Say) -> str | None:
    """Until no incident or scheduled regression run is in flight (an earlier scenario's late run
    would act during this one). On the runner's own stack incident and regression runs in flight are
    marked failed at once; on another stack the suite's own ones are after the wait, others make it
    an error."""
    api, owned = parts.api, parts.owned
    bound = IDLE_TIMEOUT_OWNED_S if owned else IDLE_TIMEOUT_S
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
            [str(r["dag_run_id"]) for r in reg.json().get("dag_runs", [])] if reg.status_code == 200 else []
        )
        if owned:
            # On the runner's own stack a run in flight now is nobody's scenario: one its start-up
            # opened (models loading for longer than ModelNotLoaded's 30 s page) or an earlier
            # scenario's late run (recorded there). End it now rather than let its phase-2 probes
            # and human gate run into this scenario's measurements.
            for run in busy:
                rid = str(run["dag_run_id"])
                seen_runs.add(rid)
                give_up(api, Tracked(rid, "alert", run), say, "(opened before this scenario)")
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
            ours = [r for r in busy if owned or r["dag_run_id"] in seen_runs]
            for run in ours:
                give_up(api, Tracked(str(run["dag_run_id"]), "alert", run), say, f"after {bound:.0f} s")
            others = [str(r["dag_run_id"]) for r in busy if r not in ours]
            if others:
                return f"incident runs still in flight after {bound:.0f} s: {', '.join(others)}"
            return None
        if time.monotonic() > next_note:
            names = [str(r["dag_run_id"]) for r in busy] + regression
            say(f"waiting for in-flight runs: {', '.join(names)}")
            next_note = time.monotonic() + 30
        time.sleep(3.0)


def scenario_traffic(
    settings: Settings, sc: Scenario, timeout_s: float, scenario_dir: Path
) -> TrafficGenerator:
    """The scenario's traffic generator, not started; by default it outlasts the scenario's timeout."""
    tr = sc.traffic
    duration = tr.duration_s or (sc.warmup_s + timeout_s + 60)
    return TrafficGenerator(settings, tr.rate, duration, tr.mix_arg(), tr.seed, scenario_dir / "traffic.log")


def warm_up(
    traffic: TrafficGenerator, sc: Scenario, obs: ScenarioObservation, scenario_dir: Path, say: Say
) -> float:
    """Step 2: the traffic starts, and runs alone for the warm-up; the time the warm-up ended."""
    tr = sc.traffic
    pid = traffic.start()
    say(
        f"traffic {tr.rate:g} req/s ({tr.mix_arg() or 'default mix'}) via the gateway, canary weight "
        f"{obs.weight_start:g} %, pid {pid}; warm-up {sc.warmup_s:g} s"
    )
    warm_end = time.time() + sc.warmup_s
    while time.time() < warm_end:
        if not traffic.alive():
            obs.errors.append(f"the traffic generator exited early; see {scenario_dir / 'traffic.log'}")
            raise ScenarioAbort
        time.sleep(1.0)
    t0 = obs.warmup_done_at = time.time()
    return t0


def clean_up(
    parts: StackParts,
    traffic: TrafficGenerator | None,
    obs: ScenarioObservation,
    tracked: dict[str, Tracked],
    say: Say,
) -> None:
    """Step 5: traffic stopped, outages undone, faults cleared, unfinished runs failed, weight put back."""
    tb, procs = parts.testbed, parts.procs
    if traffic is not None:
        traffic.stop()
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
                give_up(parts.api, t, say)
    if parts.weight_before_suite is not None:
        try:
            tb.weight(parts.weight_before_suite)
        except ControlError as exc:
            obs.errors.append(f"weight not restored: {exc}")


__all__ = ["ScenarioAbort", "clean_up", "scenario_traffic", "settle", "wait_idle", "wait_quiet", "warm_up"]
