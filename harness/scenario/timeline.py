"""Step 3 of a scenario: faults, outages and the manual trigger on schedule; the incident runs it opens."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.scenario.control import VERSIONS, Say, alertmanager_active
from harness.scenario.runs import DAG_ID, Tracked, answer_human, give_up, incident_runs
from harness.scenario.schema import FaultStep, Outage, Scenario, SentAlert
from harness.scenario.scoring import ScenarioObservation
from harness.scenario.senders import SendError, send
from harness.scenario.suite_stack import StackParts

POLL_S = 2.0
SETTLE_S = 10.0


@dataclass
class Event:
    at: float
    label: str
    action: Callable[[], None]


class Timeline:
    """One scenario from the end of its warm-up until its runs are done (or its timeout): fires its
    events, discovers the incident runs the intake creates, answers their human gate."""

    def __init__(
        self,
        parts: StackParts,
        sc: Scenario,
        obs: ScenarioObservation,
        tracked: dict[str, Tracked],
        seen_runs: set[str],
        *,
        t0: float,
        deadline: float,
        say: Say,
    ) -> None:
        self.parts = parts
        self.sc = sc
        self.obs = obs
        self.tracked = tracked
        self.seen_runs = seen_runs
        self.t0 = t0
        self.deadline = deadline
        self.say = say
        self.incident_outages = [o for o in sc.outages if o.after == "incident"]
        self.alert_outages = [o for o in sc.outages if o.after == "alert"]
        self.alert_sends = [a for a in sc.sent_alerts if a.after == "alert"]
        # The incident the scenario is about: the first of the broken version's alert group.
        self.fault_version = sc.faults[0].version if sc.faults else None
        self.primary_done = False
        self.all_done_since: float | None = None
        self.events = self._scheduled()
        self.next_note = time.time() + 20

    # --- the events ------------------------------------------------------------------------------

    def _scheduled(self) -> list[Event]:
        """The events whose time is known at the start: faults, outages after the start, the trigger."""
        sc, t0 = self.sc, self.t0
        events = [Event(t0 + f.start_s, f"inject {f.label()}", self._inject(f)) for f in sc.faults]
        for o in sc.outages:
            if o.after == "start":
                events += self._outage_events(o, t0)
        for a in sc.sent_alerts:
            if a.after == "start":
                events.append(Event(t0 + a.delay_s, _send_label(a), self._send(a)))
        if sc.trigger.kind == "manual":
            events.append(
                Event(t0 + sc.trigger.after_s, "open the investigation (manual trigger)", self._manual)
            )
        events.sort(key=lambda e: e.at)
        return events

    def _inject(self, step: FaultStep) -> Callable[[], None]:
        def go() -> None:
            self.parts.testbed.inject(step.version, step.admin_body())
            if self.obs.fault_injected_at is None:
                self.obs.fault_injected_at = time.time()

        return go

    def _send(self, step: SentAlert) -> Callable[[], None]:
        def go() -> None:
            token = self.parts.stack.secrets["TRIAGE24_WEBHOOK_TOKEN"]
            try:
                outcome = send(self.parts.settings, token, step)
            except SendError as exc:
                self.obs.errors.append(str(exc))
                self.say(f"t+{time.time() - self.t0:.0f} s: {exc}")
                return
            when = time.time() - self.t0
            self.say(f"t+{when:.0f} s: the intake answered {step.sender}'s {step.alertname}: {outcome}")

        return go

    def _outage_events(self, o: Outage, start: float) -> list[Event]:
        procs, say = self.parts.procs, self.say
        name = o.component.value
        if o.mode == "pause":
            begin, end = (lambda: procs.pause(name)), (lambda: procs.resume(name))
        else:
            begin, end = (lambda: procs.stop(name)), (lambda: procs.start(name, say=say, wait=False))
        return [
            Event(start + o.delay_s, f"outage: {o.mode} {name} for {o.duration_s:g} s", begin),
            Event(start + o.delay_s + o.duration_s, f"outage over: {name} back", end),
        ]

    def _add_outages(self, outages: list[Outage], start: float) -> None:
        for o in outages:
            self.events += self._outage_events(o, start)
        self.events.sort(key=lambda e: e.at)

    def _manual(self) -> None:
        sc, obs, api = self.sc, self.obs, self.parts.api
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
        self.tracked[run_id] = Tracked(run_id, "manual", api.run(DAG_ID, run_id))
        self.seen_runs.add(run_id)

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        last_poll = 0.0
        while True:
            now = time.time()
            while self.events and self.events[0].at <= now:
                ev = self.events.pop(0)
                self.say(f"t+{now - self.t0:.0f} s: {ev.label}")
                ev.action()
            if now - last_poll >= POLL_S:
                last_poll = now
                if self._alert_held(now):
                    continue  # its outages may start at once
                self._discover(now)
                self._refresh(now)
                self._primary_over(now)
            waiting_alert = self.sc.trigger.kind == "alert" and self.obs.primary is None
            if waiting_alert and now > self.t0 + self.sc.trigger.timeout_s:
                if self._no_alert_incident():
                    return
                waiting_alert = False
            if self._finished(now) or self._timed_out(now):
                return
            self._note(now, waiting_alert)
            time.sleep(1.0)

    def _alert_held(self, now: float) -> bool:
        """Whether Alertmanager now holds the faulty version's alert, with outages or sent alerts that
        wait for it."""
        if not self.alert_outages and not self.alert_sends:
            return False
        held = [
            a
            for a in alertmanager_active(self.parts.settings)
            if self.fault_version is None or a.endswith(f"{{{self.fault_version}}}")
        ]
        if not held:
            return False
        self.say(f"t+{now - self.t0:.0f} s: Alertmanager holds {', '.join(held)}")
        self._add_outages(self.alert_outages, now)
        self.alert_outages = []
        self.events += [Event(now + a.delay_s, _send_label(a), self._send(a)) for a in self.alert_sends]
        self.events.sort(key=lambda e: e.at)
        self.alert_sends = []
        return True

    def _discover(self, now: float) -> None:
        """Track the incident runs created since the scenario started; the first of the faulty
        version's is the scenario's incident."""
        sc, obs = self.sc, self.obs
        for run in incident_runs(self.parts.api, obs.started_at):
            rid = str(run["dag_run_id"])
            if rid in self.tracked:
                continue
            if rid in self.seen_runs:
                continue  # an earlier scenario's
            self.seen_runs.add(rid)
            if self.primary_done:
                # The scenario's incident is over; the still-broken (rolled back) version's
                # alert group changing opens another incident: recorded, not waited for.
                if rid not in obs.late_runs:
                    obs.late_runs.append(rid)
                self.say(f"t+{now - self.t0:.0f} s: {rid} created after the scenario's incident ended (late)")
                continue
            self.tracked[rid] = Tracked(rid, "alert", run)
            conf = run.get("conf") or {}
            grade = conf.get("grade")
            self.say(f"t+{now - self.t0:.0f} s: incident run {rid} created (grade {grade})")
            if obs.primary is not None and conf.get("reevaluates") == obs.primary:
                # the same incident, re-evaluated on new evidence: its conclusion is the new run's
                why = conf.get("reevaluation_reason")
                self.say(f"t+{now - self.t0:.0f} s: {rid} re-evaluates {obs.primary}: {why}")
                obs.primary = rid
                continue
            if (
                obs.primary is None
                and sc.trigger.kind == "alert"
                and (
                    self.fault_version is None or (run.get("conf") or {}).get("version") == self.fault_version
                )
            ):
                obs.primary = rid
                self._add_outages(self.incident_outages, time.time())

    def _refresh(self, now: float) -> None:
        """Read the unfinished runs again; answer a human gate that asks."""
        api = self.parts.api
        for t in self.tracked.values():
            if not t.done:
                t.run = api.run(DAG_ID, t.run_id)
                if t.done:
                    self.say(f"t+{now - self.t0:.0f} s: {t.run_id} {t.run.get('state')}")
                else:
                    answer_human(api, t, self.sc, self.say)

    def _primary_over(self, now: float) -> None:
        primary = self.obs.primary
        if self.primary_done or primary is None or primary not in self.tracked:
            return
        if not self.tracked[primary].done:
            return
        self.primary_done = True
        # Its conclusion is in: the faults go now (outages keep their own schedule), so
        # the broken version's alerts resolve while the other runs finish.
        self.events = [e for e in self.events if not e.label.startswith("inject ")]
        for v in VERSIONS:
            if self.parts.testbed.clear(v):
                self.say(f"t+{now - self.t0:.0f} s: the scenario's incident is over: faults cleared on {v}")

    def _no_alert_incident(self) -> bool:
        """No incident of the faulty version by the trigger's timeout: whether to stop waiting (no
        incident run at all), else another version's first one becomes the scenario's incident."""
        others = [t for t in self.tracked.values() if t.kind == "alert"]
        if not others:
            self.say(f"no incident run {self.sc.trigger.timeout_s:g} s after the warm-up: stop waiting")
            return True
        # only runs of another version's alert group: the first one is what the pipeline opened
        self.obs.primary = others[0].run_id
        self.say(f"no {self.fault_version} incident; the scenario's incident is {self.obs.primary}")
        return False

    def _finished(self, now: float) -> bool:
        """Every run done, no event left, for ``SETTLE_S`` in a row."""
        runs_done = bool(self.tracked) and all(t.done for t in self.tracked.values())
        if runs_done and not self.events and self.obs.primary is not None:
            self.all_done_since = self.all_done_since or now
            return now - self.all_done_since >= SETTLE_S  # a second alert group may still be on its way
        self.all_done_since = None
        return False

    def _timed_out(self, now: float) -> bool:
        if now <= self.deadline:
            return False
        self.say(f"scenario timeout ({self.deadline - self.t0:.0f} s after the warm-up)")
        for t in self.tracked.values():
            if not t.done:
                give_up(self.parts.api, t, self.say)
        return True

    def _note(self, now: float, waiting_alert: bool) -> None:
        if now < self.next_note:
            return
        self.next_note = now + 20
        states = ", ".join(f"{t.run_id[-8:]} {t.run.get('state')}" for t in self.tracked.values())
        what = "waiting for the alert" if waiting_alert else (states or "waiting")
        alerts = ", ".join(alertmanager_active(self.parts.settings)) or "none"
        self.say(f"t+{now - self.t0:.0f} s: {what}; alerts: {alerts}")


def _send_label(step: SentAlert) -> str:
    return f"{step.sender} sends {step.alertname} ({step.severity}) on {step.version}"


__all__ = ["Event", "Timeline"]
