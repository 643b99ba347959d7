"""The main job's incident, end to end on the local stack: a real fault, a real alert, a real run.

A fault is injected into the testbed's canary through its admin API; Prometheus scrapes the effect,
its rule fires, Alertmanager groups the alert and posts it to the Triage24 intake, the intake creates
an ``incident_response`` run, the run stores its phase-1 evidence, decides, and (for this fault)
rolls the canary back at the gateway and verifies the recovery. This module waits for each of those
steps (bounded), reads what the run concluded, and always clears the fault and restores the canary
weight afterwards. Nothing here shortcuts the chain: if the alert never arrives, the demo says so.

The incident followed is the one the fault's own alert went to, read from the intake journal by the
alert's labels: the incident it opened, or another group's it joined (the scheduled regression run's
``GoldenRegression`` for the same canary, by the correlation rule of grading.yaml), never merely the
newest run.
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
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.journal import Journal, JournalError
from diagnostics.intake.members import incident_alerts, incident_of_alert

INCIDENT_DAG = "incident_response"


FAULTS: dict[str, dict[str, Any]] = {
    # The ModelNotLoaded rule needs no traffic (it reads the model-loaded gauge) and fires after 30 s.
    "model_not_loaded": {
        "body": {"fault": "model_not_loaded", "channel": "image"},
        "alert": "ModelNotLoaded (for: 30s)",
        # the labels of the alert the fault raises (deploy/prometheus/rules), to find its incident
        "labels": {"alertname": "ModelNotLoaded", "target": "testbed", "version": "canary"},
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
    how: str = ""  # how the fault's alert reached the incident: opened it, or joined it (and whose)


@dataclass(frozen=True)
class AlertIncident:
    """The incident the fault's alert went to, as the intake journal has it."""

    fingerprint: str
    run_id: str
    state: str  # pending (run not created yet) | open | closed
    run_state: str | None
    opened_by: str  # the group that opened the incident (its labels)
    joined: bool  # the alert's group joined another group's incident

    @property
    def how(self) -> str:
        if self.joined:
            return f"alert {self.fingerprint} joined incident {self.run_id} (opened by {self.opened_by})"
        return f"alert {self.fingerprint} opened incident {self.run_id}"


def find_alert_incident(journal: Journal, labels: dict[str, str], since: float) -> AlertIncident | None:
    """The incident the newest alert with ``labels`` delivered since ``since`` (epoch) went to, once its
    run exists; None until then."""
    found = incident_of_alert(journal, labels, since)
    if found is None or found[1].state == "pending":
        return None
    fingerprint, incident = found
    held = incident_alerts(journal, [incident.run_id])[incident.run_id]
    group = next(a.group_key for a in held.alerts if a.fingerprint == fingerprint)
    opener = held.groups[0]
    return AlertIncident(
        fingerprint=fingerprint,
        run_id=incident.run_id,
        state=incident.state,
        run_state=incident.run_state,
        opened_by=", ".join(f"{k}={v}" for k, v in sorted(opener.labels.items())) or opener.group_key,
        joined=group != opener.group_key,
    )


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


def wait_alert_incident(
    journal_path: Path,
    labels: dict[str, str],
    since: float,
    timeout_s: float,
    say: Callable[[str], None],
    where: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> AlertIncident:
    """Poll the intake journal until the fault's alert is on an incident whose run exists; DemoError
    after ``timeout_s``, naming where to look (``where``)."""
    t0 = clock()
    next_note = t0 + 15
    journal: Journal | None = None
    try:
        while True:
            if journal is None and journal_path.is_file():
                journal = Journal(journal_path)
            try:
                found = find_alert_incident(journal, labels, since) if journal else None
            except JournalError as exc:
                found = None
                say(f"intake journal not readable yet: {exc}")
            if found is not None:
                return found
            now = clock()
            if now - t0 > timeout_s:
                raise DemoError(
                    f"no incident for alert {labels} {timeout_s:.0f} s after the fault in the intake journal "
                    f"{journal_path}: check {where}, and `triage24 intake status`"
                )
            if now >= next_note:
                say(f"still waiting for the alert ({now - t0:.0f} s)")
                next_note = now + 15
            sleep(1.0)
    finally:
        if journal is not None:
            journal.close()


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
    since = datetime.now(UTC).timestamp()
    _admin(settings, admin_token, "POST", spec["body"])
    say(f"injected {fault} on the canary; waiting for rule {spec['alert']} -> Alertmanager -> intake")
    try:
        t0 = time.monotonic()
        where = (
            f"the alert at http://{settings.host}:{settings.prometheus_port}/alerts and Alertmanager at "
            f"http://{settings.host}:{settings.alertmanager_port}"
        )
        journal = IntakeSettings().journal_path(settings)
        found = wait_alert_incident(journal, spec["labels"], since, alert_timeout_s, say, where)
        alert_to_run = time.monotonic() - t0
        run_id = found.run_id
        ended = (
            f"; its run had already ended ({found.run_state})"
            if found.run_state in ("success", "failed")
            else ""
        )
        say(f"{found.how} {alert_to_run:.1f} s after the fault{ended}; following its run through phases 1-3")
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
        how=found.how,
    )


__all__ = [
    "FAULTS",
    "INCIDENT_DAG",
    "AirflowApiError",
    "AlertIncident",
    "DemoError",
    "DemoIncident",
    "find_alert_incident",
    "run_incident",
    "wait_alert_incident",
]
