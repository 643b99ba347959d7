"""The intake's delivery path: one validated delivery in, one journaled outcome out.

Per delivery, in one journal transaction committed before the answer:

1. read: one :class:`~diagnostics.intake.records.Snapshot` of what the decision needs (the group's
   open incident, which of its alerts the journal knows, escalation counts);
2. decide: :func:`diagnostics.intake.decide.decide`, pure code (the rules are described there);
3. write: one :class:`~diagnostics.intake.records.DeliveryRecord` (the delivery, its alerts, its
   incident change).

Then, after the commit, the side effects (:mod:`diagnostics.intake.runs`): a new incident's run is
created; if Airflow cannot create it the outcome stays ``pending`` (HTTP 503, so Alertmanager
retries) and the reconciler (:mod:`diagnostics.intake.reconcile`) replays it later. An update that
journaled a re-evaluation (a raised grade, a gate breach: :mod:`diagnostics.intake.reevaluate`) starts
it at once (:mod:`diagnostics.intake.reevaluations`); one Airflow cannot take now stays journaled and
the reconciler retries it (the delivery itself is journaled: its answer stays 200).

An incident stays open while its run runs and while any of its alerts fires (then ``quiet_s`` more,
grading.yaml ``correlation``), so two alerts of one group seconds apart, or the same alerts firing
again after a run that ended at "hold", never open two incidents; a new group with the same
correlation key joins it. The request path only touches the journal and, for a new incident,
creates the run; notes and run states are kept up to date by a maintainer thread in the api-server
(``inline=False``) so a busy Airflow metadata DB never slows the webhook down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from diagnostics.config import Settings
from diagnostics.incident.conf import INTAKE_SCHEMA, ConfAlert, IncidentConf
from diagnostics.intake import decide
from diagnostics.intake.backend import BackendUnavailable, RunBackend
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.decide import Incoming, Plan
from diagnostics.intake.grading import Escalation, Graded, Grader, load_grading
from diagnostics.intake.journal import Journal, Tx
from diagnostics.intake.payload import WebhookPayload
from diagnostics.intake.reconcile import Reconciler, ReconcileReport
from diagnostics.intake.records import Snapshot
from diagnostics.intake.reevaluations import Reevaluator
from diagnostics.intake.runs import EXISTED, RunKeeper, ts

__all__ = [
    "CONF_SCHEMA",
    "EXISTED",
    "HTTP_STATUS",
    "IntakeService",
    "Outcome",
    "Plan",
    "ReconcileReport",
    "build_service",
]

log = logging.getLogger("triage24.intake")

CONF_SCHEMA = INTAKE_SCHEMA  # the conf model's version (diagnostics/incident/conf.py)
HTTP_STATUS = {"created": 201, "pending": 503}


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    outcome: str  # created | pending | update | joined | duplicate | resolved | recorded
    run_id: str | None
    dag_id: str
    grade: str
    rule: str
    escalated: bool
    escalation_reason: str
    detail: str
    correlation: str = ""  # a new or joined incident: the rule and key other groups join it by
    reevaluation: str | None = None  # the re-evaluation run this delivery started (or journaled)

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
            "correlation": self.correlation,
            "reevaluation": self.reevaluation,
        }


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
        self.runs = RunKeeper(journal, backend, grader, settings, clock)
        self.reevaluator = Reevaluator(journal, backend, self.runs, clock)
        self.reconciler = Reconciler(journal, self.runs, settings, clock, self.reevaluator)

    @property
    def dag_id(self) -> str:
        return self.settings.dag_id

    # --- the delivery path ------------------------------------------------------------------------

    def handle(self, payload: WebhookPayload, body: bytes, received_at: float | None = None) -> Outcome:
        """Journal the delivery, decide, create the run if needed; the answer to give."""
        now = received_at if received_at is not None else self.clock()
        return self.complete(self.accept(payload, body, now), now)

    def accept(self, payload: WebhookPayload, body: bytes, now: float) -> Plan:
        """Read, decide and journal the delivery in one durable transaction (journal only, no Airflow
        call unless ``inline``). The webhook runs this on its one journal thread."""
        if self.inline:
            self.runs.refresh_open(payload.group_key, now)
        incoming = decide.incoming(payload, body, now, self.grader)
        with self.journal.transaction() as tx:
            snapshot = self._read(tx, incoming)
            delivery_id = snapshot.delivery_id

            def conf_for(graded: Graded, esc: Escalation) -> dict[str, Any]:
                return self._conf(payload, graded, esc, delivery_id, now)

            decision = decide.decide(incoming, snapshot, self.grader, self.dag_id, conf_for)
            tx.record(decision.record)
        plan = decision.plan
        if plan.note and plan.run_id and not self.inline and plan.force_note:
            self.reconciler.wake()  # resolved, escalated, grade raised: now; other notes on the next tick
        return plan

    def _read(self, tx: Tx, incoming: Incoming) -> Snapshot:
        """The read step: the group's state, and the escalation counts the decision will need."""
        snapshot = tx.group_state(incoming.lookup)
        needs = decide.escalation_lookup(incoming, snapshot, self.grader, self.settings.alert_ttl_s)
        if needs is None:
            return snapshot
        return replace(snapshot, escalation=tx.escalation_state(incoming.group_key, needs))

    def complete(self, plan: Plan, now: float) -> Outcome:
        """Create the incident's run when the plan says so (an Airflow call), write the note when
        ``inline``, log the decision."""
        if plan.create:
            plan = self._create(plan, now)
        if plan.reevaluate:
            plan = self._reevaluate(plan)
        if plan.note and plan.run_id and self.inline:
            self.runs.write_note(plan.run_id, force=plan.force_note)
        outcome = self._outcome(plan)
        # In a storm most deliveries are updates or duplicates: the journal has them; the log says
        # what changed an incident.
        routine = outcome.outcome in ("update", "duplicate") and not plan.force_note
        log.log(
            logging.DEBUG if routine else logging.INFO,
            "delivery %d group %s: %s -> %s%s (%s %s%s)%s",
            outcome.delivery_id,
            plan.group,
            plan.summary,
            outcome.outcome,
            f" {outcome.run_id}" if outcome.run_id else "",
            outcome.grade,
            outcome.rule,
            ", escalated" if outcome.escalated else "",
            f"; {plan.detail}" if outcome.outcome == "joined" else "",
        )
        return outcome

    def _create(self, plan: Plan, now: float) -> Plan:
        assert plan.run_id is not None
        # The delivery that opened the incident waits for the creation; later ones of the same group
        # do not queue behind a creation in progress (they are journaled; its owner answers for it).
        ok, detail = self.runs.create(plan.run_id, now, wait=not plan.then)
        plan = decide.after_creation(plan, ok, detail)
        with self.journal.transaction() as tx:  # updated_at: when the run was created (or not)
            tx.finish_delivery(
                plan.delivery_id,
                outcome=plan.outcome,
                run_id=plan.run_id,
                detail=plan.detail,
                now=self.clock(),
            )
        return plan

    def _reevaluate(self, plan: Plan) -> Plan:
        """Start the re-evaluation the delivery journaled (an Airflow call), say how it went."""
        assert plan.reevaluate is not None
        state, what = self.reevaluator.advance(plan.reevaluate)
        plan = replace(plan, detail=f"{plan.detail} ({state}: {what})")
        with self.journal.transaction() as tx:
            tx.finish_delivery(
                plan.delivery_id,
                outcome=plan.outcome,
                run_id=plan.run_id,
                detail=plan.detail,
                now=self.clock(),
            )
        return plan

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
            correlation=plan.correlation,
            reevaluation=plan.reevaluate,
        )

    def _conf(
        self, payload: WebhookPayload, graded: Graded, esc: Escalation, delivery_id: int, now: float
    ) -> dict[str, Any]:
        """The run's conf: the one typed IncidentConf every task of the run parses back."""
        return IncidentConf(
            source="alertmanager",
            # who sent it (an extra key of the conf): "alertmanager", or "grafana" through its adapter
            origin=payload.origin,
            group_key=payload.group_key,
            receiver=payload.receiver,
            status=payload.status,
            external_url=payload.external_url,
            group_labels=dict(payload.group_labels),
            common_labels=dict(payload.common_labels),
            common_annotations=dict(payload.common_annotations),
            target=payload.label("target"),
            version=payload.label("version"),
            alerts=[ConfAlert.model_validate(a.as_conf()) for a in payload.alerts],
            fingerprints=sorted({a.fingerprint for a in payload.firing}),
            truncated_alerts=payload.truncated_alerts,
            grade=graded.grade.value,
            grade_rule=graded.rule,
            grade_title=self.grader.policy(graded.grade).title,
            escalated=esc.escalated,
            escalation_rule=esc.rule,
            escalation_reason=esc.reason,
            delivery_id=delivery_id,
            received_at=ts(now),
        ).as_conf()

    # --- the reconciler and health --------------------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """Create pending runs, close finished incidents, write stale notes, prune old history."""
        return self.reconciler.reconcile()

    def maintain(
        self, now: float | None = None, max_age_s: float | None = None, force_notes: bool = False
    ) -> tuple[list[str], int]:
        """One maintenance pass (see :meth:`Reconciler.maintain`): (closed run ids, notes written)."""
        return self.reconciler.maintain(now, max_age_s, force_notes)

    def start(self, retry_pending_s: float = 30.0) -> None:
        """Start the maintainer thread (api-server): notes and run states off the request path, and a
        retry of pending incidents every ``retry_pending_s``."""
        self.inline = False
        self.reconciler.start(retry_pending_s)

    def stop(self) -> None:
        self.reconciler.stop()

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
            "reevaluations": counts["reevaluations"],
        }


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
