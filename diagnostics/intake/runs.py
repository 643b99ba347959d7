"""The intake's side effects on Airflow runs, after a decision is committed: create an incident's run,
check whether it finished (and close the incident once its alerts are quiet), rewrite its note.

Used by the delivery path (:class:`~diagnostics.intake.service.IntakeService`) and by the reconciler
(:mod:`diagnostics.intake.reconcile`). Every Airflow failure leaves the journal saying what is left
to do; the next delivery or reconcile pass does it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from diagnostics.incident.title import title_of_conf
from diagnostics.intake.backend import NOTE_MAX_CHARS, TERMINAL_STATES, BackendUnavailable, RunBackend
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.decide import closes, partial_group
from diagnostics.intake.grading import Grader
from diagnostics.intake.journal import Journal
from diagnostics.intake.records import Incident
from diagnostics.runbooks.grading import GradeId

log = logging.getLogger("triage24.intake")

EXISTED = "existed in Airflow already"


def ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class RunKeeper:
    def __init__(
        self,
        journal: Journal,
        backend: RunBackend,
        grader: Grader,
        settings: IntakeSettings,
        clock: Callable[[], float],
    ) -> None:
        self.journal = journal
        self.backend = backend
        self.grader = grader
        self.settings = settings
        self.clock = clock
        self._note_lock = threading.Lock()
        self._run_locks: dict[str, threading.Lock] = {}
        self._run_locks_guard = threading.Lock()

    # --- creating runs --------------------------------------------------------------------------------

    def create(self, run_id: str, now: float, wait: bool = True) -> tuple[bool | None, str]:
        """Create a pending incident's run: (True, how), (False, why not), or (None, ...) when another
        thread is creating it and ``wait`` is false."""
        with self._run_locks_guard:
            lock = self._run_locks.setdefault(run_id, threading.Lock())
        if not lock.acquire(blocking=wait):
            return None, "being created by a concurrent delivery"
        try:
            incident = self.journal.incident(run_id)
            if incident is None:
                return False, "no such incident in the journal"
            if incident.state != "pending":
                return True, "created by an earlier delivery"
            note = self.render_note(incident, now)
            try:
                created = self.backend.create_run(incident.dag_id, run_id, incident.conf, note)
            except BackendUnavailable as exc:
                with self.journal.transaction() as tx:
                    tx.update_incident(run_id, attempts=incident.attempts + 1, last_error=str(exc)[:1000])
                log.warning(
                    "incident %s: run not created yet (attempt %d): %s", run_id, incident.attempts + 1, exc
                )
                return False, str(exc)
            detail = "created" if created else EXISTED
            with self.journal.transaction() as tx:
                tx.update_incident(
                    run_id,
                    state="open",
                    opened_at=now,
                    attempts=incident.attempts + 1,
                    last_error="",
                    note_written_at=now,
                    note_dirty=0,
                    state_checked_at=now,
                    last_running_at=now,
                )
                replayed = tx.replay_pending(
                    run_id, "replayed", f"run {detail} at {ts(now)} (attempt {incident.attempts + 1})", now
                )
        finally:
            lock.release()
        if replayed:
            log.info("incident %s: run %s; %d pending delivery(ies) replayed", run_id, detail, replayed)
        return True, detail

    # --- run states -----------------------------------------------------------------------------------

    def refresh_open(self, group_key: str, now: float) -> None:
        """Check the run state of the group's open incident (unless checked within ``state_cache_s``)."""
        incident = self.journal.open_incident(group_key)
        if incident is not None and incident.state == "open":
            self.refresh(incident, now, self.settings.state_cache_s)

    def refresh(self, incident: Incident, now: float, max_age_s: float) -> bool:
        """Check the run's state unless another caller did within ``max_age_s``. True if closed."""
        with self.journal.transaction() as tx:
            claimed = tx.claim_state_check(incident.run_id, now, max_age_s)
        return claimed and self._check(incident, now)

    def _check(self, incident: Incident, now: float) -> bool:
        """Ask Airflow for the run's state; close the incident once its run has ended and its alerts
        are quiet (:func:`~diagnostics.intake.decide.closes`). True if closed. The run is the newest
        re-evaluation's once one was started: the incident is not over while it runs."""
        try:
            state = self.backend.run_state(incident.dag_id, self.journal.latest_run(incident.run_id))
        except BackendUnavailable as exc:
            log.warning("incident %s: run state unknown, kept open: %s", incident.run_id, exc)
            return False
        run_state = state or "missing"
        finished = state is None or state in TERMINAL_STATES
        with self.journal.transaction() as tx:  # read and close in one step: no delivery in between
            current = tx.incident(incident.run_id) or incident
            if not finished:
                tx.update_incident(incident.run_id, run_state=run_state, last_running_at=now)
                return False
            firing = tx.firing_alerts(incident.run_id, now - self.settings.alert_ttl_s)
            closed, why = closes(run_state, firing, current.last_delivery_at, now, self.grader.quiet_s)
            if closed:
                tx.update_incident(incident.run_id, state="closed", run_state=run_state, closed_at=now)
            elif current.run_state != run_state:
                tx.update_incident(
                    incident.run_id, run_state=run_state, note_dirty=max(current.note_dirty, 1)
                )
        if closed:
            log.info("incident %s closed: %s", incident.run_id, why)
        elif current.run_state != run_state:
            log.info("incident %s kept open: %s", incident.run_id, why)
        return closed

    # --- notes ----------------------------------------------------------------------------------------

    def write_note(self, run_id: str, force: bool) -> bool:
        """Rewrite the run's note from the journal; in a storm at most every ``note_interval_s``."""
        with self._note_lock:
            incident = self.journal.incident(run_id)
            if incident is None or incident.state == "pending":
                return False
            now = self.clock()
            written = incident.note_written_at or 0.0
            if not force and incident.note_dirty < 2 and now - written < self.settings.note_interval_s:
                return False  # stays dirty: written by a later pass
            try:
                self.backend.set_note(incident.dag_id, run_id, self.render_note(incident, now))
            except BackendUnavailable as exc:
                log.warning("incident %s: note not updated (kept for later): %s", run_id, exc)
                return False
            with self.journal.transaction() as tx:
                tx.note_written(run_id, now, incident.last_delivery_at)
            return True

    def render_note(self, incident: Incident, now: float) -> str:
        firing, resolved = self.journal.alert_counts(incident.run_id)
        labels = ", ".join(f"{k}={v}" for k, v in sorted(incident.group_labels.items()))
        joined = self.journal.joined_groups(incident.run_id)
        escalation = (
            f"**escalated** ({incident.escalation_rule}): {incident.escalation_reason}"
            if incident.escalated
            else f"not escalated: {incident.escalation_reason}"
        )
        conf = incident.conf
        lines = [
            f"**{title_of_conf(conf)}**",  # target version · alert: the Incidents view's title
            f"**{incident.grade}** {self.grader.policy(GradeId(incident.grade)).title}",
            f"rule `{incident.rule}` - {escalation}",
        ]
        if partial := partial_group(int(conf.get("truncated_alerts") or 0), firing=True):
            lines.append(f"**{partial}**: the grade may be too low")
        lines += [
            f"alert group: {labels or incident.group_key}",
        ]
        if joined:
            names = "; ".join(", ".join(f"{k}={v}" for k, v in sorted(g.items())) or "-" for g in joined)
            lines.append(f"joined by {len(joined)} group(s) (rule `{incident.correlation_rule}`): {names}")
        lines += [
            f"alerts firing {firing}, resolved {resolved}; updates {incident.updates}; "
            f"last delivery {ts(incident.last_delivery_at)}",
        ]
        for again in self.journal.reevaluations(incident.run_id):
            lines.append(
                f"re-evaluation {again.run_id} ({again.state}, delivery {again.delivery_id}): {again.reason}"
            )
        if incident.run_finished and incident.state == "open":
            lines.append(f"run {incident.run_state}; the incident stays open while its alerts fire")
        if conf.get("origin", "alertmanager") != "alertmanager":
            lines.append(f"sent by {conf['origin']} (receiver {conf.get('receiver') or '-'})")
        if firing == 0 and incident.resolved_at:
            lines.append(f"all alerts resolved at {ts(incident.resolved_at)}")
        lines.append(f"triage24 intake, {ts(now)}")
        note = "\n\n".join(lines)
        return note if len(note) <= NOTE_MAX_CHARS else note[: NOTE_MAX_CHARS - 3] + "..."
