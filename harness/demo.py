"""The main job's incident, end to end on the local stack: a real fault, a real alert, a real run.

A fault is injected into the testbed's canary through its admin API; Prometheus scrapes the effect,
its rule fires, Alertmanager groups the alert and posts it to the Triage24 intake, the intake creates
an ``incident_response`` run, the run stores its phase-1 evidence, decides, and (for this fault)
rolls the canary back at the gateway and verifies the recovery. This module waits for each of those
steps (bounded), reads what the run concluded, and always clears the fault and restores the canary
weight afterwards. Nothing here shortcuts the chain: if the alert never arrives, the demo says so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from diagnostics.config import Settings
from diagnostics.golden_window.phase import PHASE, PHASE_CHECKS
from diagnostics.incident.store import read_result
from diagnostics.intake.airflow_api import AirflowApi, AirflowApiError

INCIDENT_DAG = "incident_response"


FAULTS: dict[str, dict[str, Any]] = {
    # The ModelNotLoaded rule needs no traffic (it reads the model-loaded gauge) and fires after 30 s.
    "model_not_loaded": {
        "body": {"fault": "model_not_loaded", "channel": "image"},
        "alert": "ModelNotLoaded (for: 30s)",
    },
}


class DemoError(RuntimeError):
    """A step of the demo incident did not happen in time; the message says which and where to look."""


@dataclass
class DemoIncident:
    fault: str
    run_id: str
    state: str
    alert_to_run_s: float
    run_s: float
    artifacts: Path
    summary: dict[str, Any]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    response: dict[str, dict[str, Any]] = field(default_factory=dict)
    weight_before: float | None = None
    deep: dict[str, Any] = field(default_factory=dict)  # phase-2 summary
    delivery: dict[str, Any] = field(default_factory=dict)  # phase-3 summary
    report: Path | None = None


def _admin(settings: Settings, token: str, method: str, body: dict[str, Any] | None = None) -> None:
    url = f"http://{settings.host}:{settings.testbed_canary_port}/admin/faults"
    resp = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    if resp.status_code != 200:
        raise DemoError(f"testbed canary admin API {method} {url}: HTTP {resp.status_code} {resp.text[:200]}")


def _weight(settings: Settings, token: str, set_to: float | None = None) -> float:
    """The gateway's canary weight (set it first when ``set_to`` is given)."""
    url = f"{settings.testbed_gateway_url}/admin/routing"
    auth = {"Authorization": f"Bearer {token}"}
    if set_to is not None:
        httpx.put(url, json={"canary_weight": set_to}, headers=auth, timeout=10).raise_for_status()
    resp = httpx.get(url, headers=auth, timeout=10)
    resp.raise_for_status()
    return float(resp.json()["canary_weight"])


def _new_incident_run(api: AirflowApi, since: datetime) -> dict[str, Any] | None:
    resp = api.request(
        "GET",
        f"/dags/{INCIDENT_DAG}/dagRuns",
        params={"order_by": "-id", "limit": 20, "run_id_prefix_pattern": "incident__"},
    )
    resp.raise_for_status()
    for run in resp.json().get("dag_runs", []):
        queued = run.get("queued_at") or run.get("run_after")
        if queued and datetime.fromisoformat(str(queued).replace("Z", "+00:00")) >= since:
            return dict(run)
    return None


def run_incident(
    settings: Settings,
    api: AirflowApi,
    admin_token: str,
    fault: str,
    say: Callable[[str], None],
    alert_timeout_s: float = 240.0,
    run_timeout_s: float = 600.0,  # phases 1-3 with real CLIP and Whisper on a 2-core CPU: ~3-4 min
) -> DemoIncident:
    """Inject ``fault`` on the canary, wait for the alert-driven incident run, return what it found."""
    spec = FAULTS[fault]
    api.wait_for_dag(INCIDENT_DAG)
    _admin(settings, admin_token, "DELETE")
    weight_before = _weight(settings, admin_token)
    since = datetime.now(UTC)
    _admin(settings, admin_token, "POST", spec["body"])
    say(f"injected {fault} on the canary; waiting for rule {spec['alert']} -> Alertmanager -> intake")
    try:
        t0 = time.monotonic()
        run: dict[str, Any] | None = None
        next_note = t0 + 15
        while run is None:
            run = _new_incident_run(api, since)
            now = time.monotonic()
            if run is None and now - t0 > alert_timeout_s:
                raise DemoError(
                    f"no incident run {alert_timeout_s:.0f} s after injecting {fault}: check the alert at "
                    f"http://{settings.host}:{settings.prometheus_port}/alerts, Alertmanager at "
                    f"http://{settings.host}:{settings.alertmanager_port}, and `triage24 intake status`"
                )
            if run is None and now >= next_note:
                say(f"still waiting for the alert ({now - t0:.0f} s)")
                next_note = now + 15
            if run is None:
                time.sleep(1.0)
        alert_to_run = time.monotonic() - t0
        run_id = str(run["dag_run_id"])
        say(f"incident run {run_id} created {alert_to_run:.1f} s after the fault; running phases 1-3")
        t1 = time.monotonic()
        done = api.wait_run(
            INCIDENT_DAG, run_id, timeout_s=run_timeout_s, on_change=lambda s: say(f"run: {s}")
        )
        run_s = time.monotonic() - t1
    finally:
        _admin(settings, admin_token, "DELETE")
        say("fault cleared")
    if _weight(settings, admin_token) != weight_before:
        # The demo's rollback is real; put the canary back so the next demo starts the same way.
        _weight(settings, admin_token, weight_before)
        say(f"canary weight restored to {weight_before:g} % for the next demo")
    root = settings.artifacts
    try:
        summary = read_result(root, run_id, PHASE, "summary")
    except ValueError as exc:
        raise DemoError(f"run {run_id} ended {done['state']} without a phase summary: {exc}") from None
    checks = {}
    for name in PHASE_CHECKS:
        try:
            checks[name] = read_result(root, run_id, PHASE, name)
        except ValueError:
            checks[name] = {"status": "missing", "summary": "no result stored"}
    decision: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        decision = read_result(root, run_id, "decision", "decision")
    response: dict[str, dict[str, Any]] = {}
    for name in ("rollback", "recovery_verification", "promotion", "hold"):
        with contextlib.suppress(ValueError):
            response[name] = read_result(root, run_id, "response", name)
    deep: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        deep = read_result(root, run_id, "deep_diagnosis", "summary")
    delivery: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        delivery = read_result(root, run_id, "verified_delivery", "summary")
    report = root / run_id / "report" / "report.html"
    return DemoIncident(
        deep=deep,
        delivery=delivery,
        report=report if report.is_file() else None,
        decision=decision,
        response=response,
        weight_before=weight_before,
        fault=fault,
        run_id=run_id,
        state=str(done["state"]),
        alert_to_run_s=round(alert_to_run, 1),
        run_s=round(run_s, 1),
        artifacts=root / run_id,
        summary=summary,
        checks=checks,
    )


__all__ = ["FAULTS", "INCIDENT_DAG", "AirflowApiError", "DemoError", "DemoIncident", "run_incident"]
