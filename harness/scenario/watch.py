"""The canary watch during a scenario (``scenario run --canary-watch``): started before the warm-up,
ended with the scenario, its verdict kept in the observation.

The runner triggers ``triage24_canary_watch`` for the testbed the way a release would (conf
``target``, ``release``: the scenario, ``duration_minutes``: the scenario's timeout) and waits until
its task is deferred, i.e. the looks run in the triggerer. A rejection opens the incident through the
intake like any alert (``CanaryWatchRejected``), so the scenario's primary run and its timings are read
as always; the watch's own answer (the test, the counts, the e-value against its bound, when it
rejected) is read from the task's XCom. A watch still looking when the scenario ends is stopped (its
run marked ``success``: nothing rejected the canary). A watch that did not start is an error of the
runner, never a silent baseline.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.intake.airflow_api import TERMINAL_RUN_STATES, AirflowApi, AirflowApiError
from harness.scenario.control import Say
from harness.scenario.observe import iso_ts

WATCH_DAG_ID = "triage24_canary_watch"
WATCH_TASK_ID = "watch_canary"
START_TIMEOUT_S = 90.0
POLL_S = 1.0


class WatchStartError(RuntimeError):
    """The watch run did not reach its deferred state in time; the message says where it stopped."""


class WatchObservation(BaseModel):
    """The canary watch of one scenario: when it looked, and what it concluded."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    triggered_at: float
    deferred_at: float | None = Field(default=None, description="its task was deferred: the looks began")
    outcome: Literal["rejected", "completed", "stopped", "failed", "unknown"] = "unknown"
    rejected_at: float | None = Field(default=None, description="the rejecting look (the alert's startsAt)")
    channel: str | None = None
    test: str | None = None
    evidence: str | None = None
    e_value: float | None = None
    threshold: float | None = None
    looks: int | None = None
    intake: dict[str, Any] = Field(default_factory=dict, description="the intake's answer to the rejection")
    notes: list[str] = Field(default_factory=list)


def _task_state(api: AirflowApi, run_id: str) -> str | None:
    tis = api.task_instances(WATCH_DAG_ID, run_id)
    return next((str(t.get("state")) for t in tis if t.get("task_id") == WATCH_TASK_ID), None)


def start_watch(api: AirflowApi, scenario: str, minutes: float, say: Say) -> WatchObservation:
    """Trigger the watch of the testbed's canary and wait until its looks run in the triggerer."""
    run_id = f"scenario__{scenario.replace('_', '-')}-{int(time.time())}"
    conf = {
        "target": "testbed",
        "release": f"scenario {scenario}",
        "duration_minutes": max(1, round(minutes)),
    }
    w = WatchObservation(run_id=run_id, triggered_at=time.time())
    api.trigger(WATCH_DAG_ID, run_id=run_id, conf=conf)
    deadline = time.monotonic() + START_TIMEOUT_S
    state: str | None = None
    while time.monotonic() < deadline:
        state = _task_state(api, run_id)
        if state == "deferred":
            w.deferred_at = time.time()
            say(f"canary watch {run_id} deferred after {w.deferred_at - w.triggered_at:.1f} s: looking")
            return w
        if state in ("failed", "upstream_failed", "success", "skipped"):
            break
        time.sleep(POLL_S)
    raise WatchStartError(
        f"canary watch {run_id}: task {WATCH_TASK_ID} is {state or 'not scheduled'} after "
        f"{time.time() - w.triggered_at:.0f} s, not deferred; see its log in the Airflow UI"
    )


def _xcom(api: AirflowApi, run_id: str) -> dict[str, Any] | None:
    path = f"/dags/{WATCH_DAG_ID}/dagRuns/{run_id}/taskInstances/{WATCH_TASK_ID}/xcomEntries/return_value"
    resp = api.request("GET", path)
    if resp.status_code != 200:
        return None
    value = resp.json().get("value")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return value if isinstance(value, dict) else None


def finish_watch(api: AirflowApi, w: WatchObservation, say: Say) -> None:
    """Stop the watch if it is still looking, then read its verdict into ``w``."""
    try:
        run = api.run(WATCH_DAG_ID, w.run_id)
        if str(run.get("state")) not in TERMINAL_RUN_STATES:
            resp = api.request("PATCH", f"/dags/{WATCH_DAG_ID}/dagRuns/{w.run_id}", json={"state": "success"})
            w.outcome = "stopped"
            w.notes.append(f"still looking at the scenario's end: stopped (HTTP {resp.status_code})")
            say(f"canary watch {w.run_id}: nothing rejected the canary; stopped")
            return
        value = _xcom(api, w.run_id) or {}
    except (AirflowApiError, httpx.HTTPError) as exc:
        w.notes.append(f"not read: {type(exc).__name__}: {exc}"[:300])
        return
    status = value.get("status")
    if str(run.get("state")) == "failed":
        w.outcome = "failed"
    elif status in ("rejected", "completed"):
        w.outcome = status
    if status == "rejected":
        w.rejected_at = iso_ts(value.get("rejected_at"))
        w.channel, w.test = value.get("channel"), value.get("test")
        w.evidence = value.get("evidence")
        w.e_value, w.threshold, w.looks = value.get("e_value"), value.get("threshold"), value.get("looks")
        w.intake = dict(value.get("intake") or {})
        say(f"canary watch {w.run_id}: rejected on {w.channel}/{w.test}: {w.evidence}")


__all__ = ["WATCH_DAG_ID", "WatchObservation", "WatchStartError", "finish_watch", "start_watch"]
