"""The intake's decisions: one validated delivery in, one journaled outcome out.

Per delivery (all of it in one journal transaction, committed before the answer):

- no firing alert -> ``resolved``: annotates the group's incident, never starts one (``duplicate``
  when the journal already knew them resolved);
- the group has an open incident -> ``update`` on it when the delivery brings news (a new firing
  alert, a resolved one, a higher grade, an escalation), else ``duplicate``;
- every firing alert already covered by an earlier incident -> ``duplicate``;
- a grade that does not start incidents (L1) and has not escalated -> ``recorded`` (aggregated);
- otherwise a new incident: its run id is derived from the group key and the firing alerts, the
  incident is journaled as pending, the run is created, and the outcome is ``created`` (HTTP 201).
  If Airflow cannot create it, the outcome stays ``pending`` (HTTP 503, so Alertmanager retries)
  and :meth:`IntakeService.reconcile` replays it later.

An incident stays open until its run reaches a terminal state, so two alerts of one group seconds
apart never open two incidents. The request path only touches the journal and, for a new incident,
creates the run; notes and run states are kept up to date by a maintainer thread in the api-server
(``inline=False``) so a busy Airflow metadata DB never slows the webhook down. An incident found
finished releases the alerts it took on after its run was last seen running: they open a new
incident with the group's next delivery instead of being lost in a finished one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from diagnostics.config import Settings
from diagnostics.intake.backend import NOTE_MAX_CHARS, TERMINAL_STATES, BackendUnavailable, RunBackend
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.grading import Escalation, EscalationFacts, Graded, Grader, load_grading
from diagnostics.intake.journal import Incident, Journal, Tx
from diagnostics.intake.payload import WebhookPayload, iso
from diagnostics.intake.runid import incident_run_id
from diagnostics.runbooks.grading import GradeId, Repeats, Sustained

log = logging.getLogger("triage24.intake")

CONF_SCHEMA = "triage24.intake/v1"
HTTP_STATUS = {"created": 201, "pending": 503}
EXISTED = "existed in Airflow already"


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    outcome: str  # created | pending | update | duplicate | resolved | recorded
    run_id: str | None
    dag_id: str
    grade: str
    rule: str
    escalated: bool
    escalation_reason: str
    detail: str

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.outcome, 200)

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "outcome": self.outcome,
            "run_id": self.run_id,
            "dag_id": self.dag_id,
            "grade": self.grade,
            "rule": self.rule,
            "escalated": self.escalated,
            "escalation_reason": self.escalation_reason,
            "detail": self.detail,
        }


@dataclass
class Plan:
    delivery_id: int
    outcome: str
    run_id: str | None = None
    graded: Graded | None = None
    escalation: Escalation | None = None
    detail: str = ""
    create: bool = False
    then: str = ""  # the outcome once the pending incident's run exists (updates only)
    note: bool = False
    force_note: bool = False
    group: str = ""
    summary: str = ""


@dataclass
class ReconcileReport:
    replayed: list[str] = field(default_factory=list)
    still_pending: dict[str, str] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    notes_written: int = 0
    pruned: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class IntakeService:
    def __init__(
        self,
        journal: Journal,
        backend: RunBackend,
        grader: Grader,
        settings: IntakeSettings,
        clock: Callable[[], float] = time.time,
        inline: bool = True,
    ) -> None:
        """``inline``: refresh run states and write notes in the caller's thread (tests, CLI);
        otherwise call :meth:`start` for the maintainer thread (the api-server)."""
        self.journal = journal
        self.backend = backend
        self.grader = grader
        self.settings = settings
        self.clock = clock
        self.inline = inline
        self._note_lock = threading.Lock()
        self._run_locks: dict[str, threading.Lock] = {}
        self._run_locks_guard = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def dag_id(self) -> str:
        return self.settings.dag_id

    # --- the delivery path ------------------------------------------------------------------------

    def handle(self, payload: WebhookPayload, body: bytes, received_at: float | None = None) -> Outcome:
        """Journal the delivery, decide, create the run if needed; the answer to give."""
        now = received_at if received_at is not None else self.clock()
        return self.complete(self.accept(payload, body, now), now)

    def accept(self, payload: WebhookPayload, body: bytes, now: float) -> Plan:
        """Journal the delivery and decide, in one durable transaction (journal only, no Airflow call
        unless ``inline``). The webhook runs this on its one journal thread."""
        if self.inline:
            self._refresh_open_incident(payload.group_key, now)
        with self.journal.transaction() as tx:
            plan = self._decide(tx, payload, body, now)
        plan.group = _group_name(payload)
        plan.summary = f"{len(payload.alerts)} alert(s) {payload.status}"
        if plan.note and plan.run_id and not self.inline and plan.force_note:
            self._wake.set()  # resolved, escalated, grade raised: now; other notes on the next tick
        return plan

    def complete(self, plan: Plan, now: float) -> Outcome:
        """Create the incident's run when the plan says so (an Airflow call), write the note when
        ``inline``, log the decision."""
        if plan.create:
            self._create(plan, now)
        if plan.note and plan.run_id and self.inline:
            self._write_note(plan.run_id, force=plan.force_note)
        outcome = self._outcome(plan)
        # In a storm most deliveries are updates or duplicates: the journal has them; the log says
        # what changed an incident.
        routine = outcome.outcome in ("update", "duplicate") and not plan.force_note
        log.log(
            logging.DEBUG if routine else logging.INFO,
            "delivery %d group %s: %s -> %s%s (%s %s%s)",
            outcome.delivery_id,
            plan.group,
            plan.summary,
            outcome.outcome,
            f" {outcome.run_id}" if outcome.run_id else "",
            outcome.grade,
            outcome.rule,
            ", escalated" if outcome.escalated else "",
        )
        return outcome

    def _outcome(self, plan: Plan) -> Outcome:
        graded = plan.graded
        esc = plan.escalation
        return Outcome(
            delivery_id=plan.delivery_id,
            outcome=plan.outcome,
            run_id=plan.run_id,
            dag_id=self.dag_id,
            grade=graded.grade.value if graded else "",
            rule=graded.rule if graded else "",
            escalated=bool(esc and esc.escalated),
            escalation_reason=esc.reason if esc else "",
            detail=plan.detail,
        )

    def _decide(self, tx: Tx, payload: WebhookPayload, body: bytes, now: float) -> Plan:
        group = payload.group_key
        sha = hashlib.sha256(body).hexdigest()
        delivery_id = tx.insert_delivery(now, body, sha, group, payload.status, len(payload.alerts))
        plan = Plan(delivery_id, "received")

        firing = payload.firing
        graded = self.grader.grade_group(a.labels for a in (firing or payload.alerts))
        resolved_news = tx.not_yet_resolved(a.fingerprint.lower() for a in payload.resolved)
        tx.upsert_alerts(
            group,
            [(a.fingerprint.lower(), a.status, dict(a.labels), iso(a.starts_at)) for a in payload.alerts],
            now,
        )
        occurrences = [a.occurrence for a in firing]
        new = tx.add_occurrences(
            group, [(*a.occurrence, self.grader.grade_alert(a.labels).grade.value) for a in firing], now
        )
        incident = tx.open_incident(group)
        plan.graded = graded

        if not firing:
            target = incident or tx.latest_incident(group, [a.fingerprint.lower() for a in payload.resolved])
            plan.run_id = target.run_id if target else None
            if not resolved_news:
                plan.outcome = "duplicate"
                plan.detail = "these alerts were already known resolved"
            else:
                plan.outcome = "resolved"
                plan.detail = f"{len(resolved_news)} alert(s) resolved"
                if target is not None:
                    plan.note = plan.force_note = True
                    tx.update_incident(
                        target.run_id,
                        resolved_at=now,
                        last_delivery_at=now,
                        updates=target.updates + 1,
                        note_dirty=2,
                    )
                    plan.detail += f"; annotated {target.run_id}"
                else:
                    plan.detail += "; no incident of this group to annotate"
        elif incident is not None:
            self._update(tx, plan, payload, incident, graded, new, resolved_news, now)
        elif not (uncovered := tx.uncovered(group, occurrences)):
            plan.outcome, plan.run_id = "duplicate", tx.covering_run(group, occurrences)
            plan.detail = "every firing alert is covered by an earlier incident"
        else:
            esc = self._escalation(tx, payload, graded.grade, now)
            plan.escalation = esc
            if not self.grader.policy(graded.grade).starts_incident and not esc.escalated:
                plan.outcome = "recorded"
                plan.detail = f"{graded.grade.value} is recorded and aggregated, no incident: {esc.reason}"
            else:
                run_id = incident_run_id(group, occurrences, _readable(payload))
                if tx.incident(run_id) is not None:  # a closed incident with this very id
                    plan.outcome, plan.run_id = "duplicate", run_id
                    plan.detail = "an incident for these firing alerts existed already"
                else:
                    conf = self._conf(payload, graded, esc, delivery_id, now)
                    tx.insert_incident(
                        run_id=run_id,
                        dag_id=self.dag_id,
                        group_key=group,
                        now=now,
                        grade=graded.grade.value,
                        rule=graded.rule,
                        escalated=esc.escalated,
                        escalation_rule=esc.rule,
                        escalation_reason=esc.reason,
                        conf=conf,
                    )
                    tx.cover(group, uncovered, run_id, now)
                    plan.outcome, plan.run_id, plan.create = "pending", run_id, True
                    plan.detail = f"new incident for {len(occurrences)} firing alert(s)"

        if plan.outcome == "duplicate" and (earlier := tx.earlier_same_body(sha, delivery_id)):
            plan.detail += f" (same body as delivery {earlier.id})"
        tx.finish_delivery(
            delivery_id,
            outcome=plan.outcome,
            run_id=plan.run_id,
            detail=plan.detail,
            now=now,
            grade=graded.grade.value,
            rule=graded.rule,
            escalated=bool(plan.escalation and plan.escalation.escalated),
        )
        return plan

    def _update(
        self,
        tx: Tx,
        plan: Plan,
        payload: WebhookPayload,
        incident: Incident,
        graded: Graded,
        new: list[tuple[str, str]],
        resolved_news: list[str],
        now: float,
    ) -> None:
        group = payload.group_key
        tx.cover(group, tx.uncovered(group, [a.occurrence for a in payload.firing]), incident.run_id, now)
        current = GradeId(incident.grade)
        raised = graded.grade.rank > current.rank
        grade = graded.grade if raised else current
        changes: dict[str, Any] = {"last_delivery_at": now}
        news = []
        if new:
            news.append(f"{len(new)} new firing alert(s)")
        if resolved_news:
            news.append(f"{len(resolved_news)} alert(s) resolved")
        if raised:
            news.append(f"grade raised {current.value} -> {grade.value} ({graded.rule})")
            changes.update(grade=grade.value, rule=graded.rule)
        if incident.escalated:
            plan.escalation = Escalation(True, incident.escalation_rule, incident.escalation_reason)
        else:
            esc = self._escalation(tx, payload, grade, now)
            plan.escalation = esc
            if esc.escalated:
                news.append(f"escalated: {esc.reason}")
                changes.update(
                    escalated=1, escalation_rule=esc.rule, escalation_reason=esc.reason, escalated_at=now
                )
                plan.force_note = True
        plan.graded = Graded(grade, graded.rule if raised else incident.rule)
        plan.run_id = incident.run_id
        if news:
            plan.outcome, plan.note = "update", True
            plan.force_note = plan.force_note or raised or bool(resolved_news)
            urgent = max(2 if plan.force_note else 1, incident.note_dirty)
            changes.update(updates=incident.updates + 1, note_dirty=urgent)
            plan.detail = "; ".join(news)
        else:
            plan.outcome, plan.detail = "duplicate", "no news for the open incident"
        if incident.state == "pending":
            # The incident's run does not exist yet: this delivery retries creating it.
            plan.then, plan.outcome, plan.create = plan.outcome, "pending", True
            plan.detail = f"{plan.detail}; incident not created yet"
        tx.update_incident(incident.run_id, **changes)

    def _escalation(self, tx: Tx, payload: WebhookPayload, grade: GradeId, now: float) -> Escalation:
        policy = self.grader.policy(grade).escalation
        facts = EscalationFacts()
        if isinstance(policy, Repeats):
            facts = EscalationFacts(repeats=tx.count_occurrences(payload.group_key, now - policy.within_s))
        elif isinstance(policy, Sustained):
            first = min(a.starts_at for a in payload.firing).timestamp()
            duration = max(0.0, now - first)
            services = None
            if duration > policy.longer_than_s:  # only then does the (costlier) count matter
                labels = tx.firing_labels(now - self.settings.alert_ttl_s)
                labels += [dict(a.labels) for a in payload.firing]
                services = len({s for s in map(self.grader.service_of, labels) if s is not None})
            facts = EscalationFacts(duration_s=duration, services=services)
        return self.grader.escalation(grade, facts)

    def _conf(
        self, payload: WebhookPayload, graded: Graded, esc: Escalation, delivery_id: int, now: float
    ) -> dict[str, Any]:
        return {
            "schema": CONF_SCHEMA,
            "source": "alertmanager",
            "group_key": payload.group_key,
            "receiver": payload.receiver,
            "status": payload.status,
            "external_url": payload.external_url,
            "group_labels": dict(payload.group_labels),
            "common_labels": dict(payload.common_labels),
            "common_annotations": dict(payload.common_annotations),
            "target": payload.label("target"),
            "version": payload.label("version"),
            "alerts": [a.as_conf() for a in payload.alerts],
            "fingerprints": sorted({a.fingerprint.lower() for a in payload.firing}),
            "truncated_alerts": payload.truncated_alerts,
            "grade": graded.grade.value,
            "grade_rule": graded.rule,
            "grade_title": self.grader.policy(graded.grade).title,
            "escalated": esc.escalated,
            "escalation_rule": esc.rule,
            "escalation_reason": esc.reason,
            "delivery_id": delivery_id,
            "received_at": _ts(now),
        }

    # --- side effects: runs and notes -------------------------------------------------------------

    def _create(self, plan: Plan, now: float) -> None:
        assert plan.run_id is not None
        # The delivery that opened the incident waits for the creation; later ones of the same group
        # do not queue behind a creation in progress (they are journaled; its owner answers for it).
        ok, detail = self._create_run(plan.run_id, now, wait=not plan.then)
        if ok is None:
            plan.outcome = plan.then
            plan.detail = f"{plan.detail}; run {detail}"
        elif ok:
            if plan.then == "update":  # news for an incident whose run did not exist until now
                plan.outcome = "update"
            else:  # a new incident, or a retry of its delivery
                plan.outcome = "created" if detail == "created" else "duplicate"
            plan.detail = f"{plan.detail}; run {detail}"
        else:
            plan.detail = f"{plan.detail}; run not created: {detail}"
        with self.journal.transaction() as tx:  # updated_at: when the run was created (or not)
            tx.finish_delivery(
                plan.delivery_id,
                outcome=plan.outcome,
                run_id=plan.run_id,
                detail=plan.detail,
                now=self.clock(),
            )

    def _create_run(self, run_id: str, now: float, wait: bool = True) -> tuple[bool | None, str]:
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
            note = self._render_note(incident, now)
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
                    run_id, "replayed", f"run {detail} at {_ts(now)} (attempt {incident.attempts + 1})", now
                )
        finally:
            lock.release()
        if replayed:
            log.info("incident %s: run %s; %d pending delivery(ies) replayed", run_id, detail, replayed)
        return True, detail

    def _refresh_open_incident(self, group_key: str, now: float) -> None:
        incident = self.journal.open_incident(group_key)
        if incident is not None and incident.state == "open":
            self._refresh(incident, now, self.settings.state_cache_s)

    def _refresh(self, incident: Incident, now: float, max_age_s: float) -> bool:
        """Check the run's state unless another caller did within ``max_age_s``. True if closed."""
        with self.journal.transaction() as tx:
            claimed = tx.claim_state_check(incident.run_id, now, max_age_s)
        return claimed and self._check_run(incident, now)

    def _check_run(self, incident: Incident, now: float) -> bool:
        """Ask Airflow for the run's state; close the incident when the run has finished. True if closed."""
        try:
            state = self.backend.run_state(incident.dag_id, incident.run_id)
        except BackendUnavailable as exc:
            log.warning("incident %s: run state unknown, kept open: %s", incident.run_id, exc)
            return False
        closed = state is None or state in TERMINAL_STATES
        released = 0
        with self.journal.transaction() as tx:
            if closed:
                current = tx.incident(incident.run_id)
                seen_running = (current or incident).last_running_at or incident.created_at
                tx.update_incident(
                    incident.run_id, state="closed", run_state=state or "missing", closed_at=now
                )
                released = tx.uncover_after(incident.run_id, seen_running)
            else:
                tx.update_incident(incident.run_id, run_state=state, last_running_at=now)
        if closed:
            log.info(
                "incident %s closed: run %s%s",
                incident.run_id,
                state or "no longer exists",
                f"; {released} alert(s) that arrived after it was last seen running go to a new incident"
                if released
                else "",
            )
        return closed

    def _write_note(self, run_id: str, force: bool) -> bool:
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
                self.backend.set_note(incident.dag_id, run_id, self._render_note(incident, now))
            except BackendUnavailable as exc:
                log.warning("incident %s: note not updated (kept for later): %s", run_id, exc)
                return False
            with self.journal.transaction() as tx:
                # A delivery that marked the note dirty while it was being written keeps it dirty.
                tx.c.execute(
                    "UPDATE incidents SET note_written_at = ?, note_dirty = 0 WHERE run_id = ? "
                    "AND last_delivery_at <= ?",
                    (now, run_id, incident.last_delivery_at),
                )
            return True

    def _render_note(self, incident: Incident, now: float) -> str:
        firing, resolved = self.journal.group_alert_counts(incident.group_key)
        labels = ", ".join(f"{k}={v}" for k, v in sorted(incident.group_labels.items()))
        escalation = (
            f"**escalated** ({incident.escalation_rule}): {incident.escalation_reason}"
            if incident.escalated
            else f"not escalated: {incident.escalation_reason}"
        )
        lines = [
            f"**{incident.grade}** {self.grader.policy(GradeId(incident.grade)).title}",
            f"rule `{incident.rule}` - {escalation}",
            f"alert group: {labels or incident.group_key}",
            f"alerts firing {firing}, resolved {resolved}; updates {incident.updates}; "
            f"last delivery {_ts(incident.last_delivery_at)}",
        ]
        if firing == 0 and incident.resolved_at:
            lines.append(f"all alerts resolved at {_ts(incident.resolved_at)}")
        lines.append(f"triage24 intake, {_ts(now)}")
        note = "\n\n".join(lines)
        return note if len(note) <= NOTE_MAX_CHARS else note[: NOTE_MAX_CHARS - 3] + "..."

    # --- replay -----------------------------------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """Create pending runs, close finished incidents, write stale notes, prune old history."""
        report = ReconcileReport()
        now = self.clock()
        self._retry_pending(now, report)
        report.closed, report.notes_written = self.maintain(now, max_age_s=0.0, force_notes=True)
        retention = self.settings.retention_days * 86_400
        report.pruned = self.journal.prune(now - retention, now - max(retention, self.settings.alert_ttl_s))
        return report

    def _retry_pending(self, now: float, report: ReconcileReport) -> None:
        for incident in self.journal.incidents(state="pending"):
            ok, detail = self._create_run(incident.run_id, now)
            if ok is None:
                continue
            if ok:
                report.replayed.append(incident.run_id)
            else:
                report.still_pending[incident.run_id] = detail

    def maintain(
        self, now: float | None = None, max_age_s: float | None = None, force_notes: bool = False
    ) -> tuple[list[str], int]:
        """One maintenance pass: close incidents whose run finished (states older than ``max_age_s``,
        default ``state_cache_s``), then write dirty notes (throttled unless urgent or forced)."""
        now = self.clock() if now is None else now
        max_age = self.settings.state_cache_s if max_age_s is None else max_age_s
        closed = [i.run_id for i in self.journal.incidents(state="open") if self._refresh(i, now, max_age)]
        written = sum(self._write_note(i.run_id, force=force_notes) for i in self.journal.dirty_notes())
        return closed, written

    def start(self, retry_pending_s: float = 30.0) -> None:
        """Start the maintainer thread (api-server): notes and run states off the request path, and a
        retry of pending incidents every ``retry_pending_s``."""
        if self._thread is not None:
            return
        self.inline = False

        def loop() -> None:
            last_retry = time.monotonic()
            tick = max(
                0.2, min(1.0, self.settings.state_cache_s or 1.0, self.settings.note_interval_s or 1.0)
            )
            while not self._stop.is_set():
                self._wake.wait(timeout=tick)
                self._wake.clear()
                try:
                    if time.monotonic() - last_retry >= retry_pending_s:
                        last_retry = time.monotonic()
                        self._retry_pending(self.clock(), ReconcileReport())
                    self.maintain()
                except Exception:  # the thread must survive anything: log it and try again
                    log.exception("intake maintenance pass failed; retrying")

        self._thread = threading.Thread(target=loop, name="triage24-intake-maintainer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def health(self) -> dict[str, Any]:
        try:
            backend = self.backend.ping(self.dag_id)
            ok = True
        except BackendUnavailable as exc:
            backend, ok = str(exc), False
        counts = self.journal.counts()
        pending = counts["incidents"].get("pending", 0)
        return {
            "status": "ok" if ok and not pending else "degraded",
            "dag_id": self.dag_id,
            "backend": backend,
            "journal": str(self.journal.path),
            "deliveries": counts["deliveries"],
            "incidents": counts["incidents"],
        }


def _readable(payload: WebhookPayload) -> str:
    """The group's label values, for people reading run ids (e.g. testbed-canary)."""
    values = [v for _, v in sorted(payload.group_labels.items())]
    return "-".join(values) or payload.label("alertname") or ""


def _group_name(payload: WebhookPayload) -> str:
    labels = payload.group_labels
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))[:200] or payload.group_key[:200]


def build_service(
    backend: RunBackend,
    settings: IntakeSettings | None = None,
    base: Settings | None = None,
    background: bool = False,
) -> IntakeService:
    """The service with the configured journal and grading rules (a RunbookError names a bad rule);
    ``background``: with its maintainer thread started (the api-server)."""
    settings = settings or IntakeSettings()
    base = base or Settings()
    grader = Grader(load_grading(settings.grading_path(base)))
    service = IntakeService(Journal(settings.journal_path(base)), backend, grader, settings)
    if background:
        service.start()
    return service
