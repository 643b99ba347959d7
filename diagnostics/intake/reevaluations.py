"""The intake's re-evaluations after the commit: create the new run, then answer the gate of the run it
supersedes. :mod:`diagnostics.intake.reevaluate` decides each step from what Airflow says; this module
only asks Airflow, acts and journals.

A journaled re-evaluation goes ``pending`` -> ``triggered`` (its run exists) -> ``done`` (the previous
run's gate answered, or there was none to answer), or ``pending`` -> ``skipped`` (the previous run
rolls back itself). An Airflow that cannot be reached leaves it where it was, with the error: the
reconciler's next pass (:mod:`diagnostics.intake.reconcile`) takes it on from there. Never lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from diagnostics.intake import reevaluate
from diagnostics.intake.backend import BackendUnavailable, RunBackend
from diagnostics.intake.journal import Journal
from diagnostics.intake.records import Reevaluation
from diagnostics.intake.reevaluate import RunFacts
from diagnostics.intake.runs import EXISTED, RunKeeper, ts
from diagnostics.runbooks.decision import SUPERSEDED_OPTION

log = logging.getLogger("triage24.intake")

BUSY = "being advanced by another thread"


class Reevaluator:
    def __init__(
        self, journal: Journal, backend: RunBackend, runs: RunKeeper, clock: Callable[[], float]
    ) -> None:
        self.journal = journal
        self.backend = backend
        self.runs = runs
        self.clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def advance(self, run_id: str) -> tuple[str, str]:
        """Take the re-evaluation as far as it goes now: (its state, what became of it)."""
        with self._guard:
            lock = self._locks.setdefault(run_id, threading.Lock())
        if not lock.acquire(blocking=False):
            return "pending", BUSY
        try:
            rec = self.journal.reevaluation(run_id)
            if rec is None:
                return "missing", "no such re-evaluation in the journal"
            if rec.state == "pending":
                rec = self._start(rec)
            if rec.state == "triggered":
                rec = self._supersede(rec)
            return rec.state, rec.last_error or rec.detail
        finally:
            lock.release()

    def retry(self) -> dict[str, tuple[str, str]]:
        """Advance every re-evaluation with something left to do, oldest first (a later one may wait
        for an earlier one's run): run id -> (state, what became of it)."""
        return {r.run_id: self.advance(r.run_id) for r in self.journal.unfinished_reevaluations()}

    # --- the steps ------------------------------------------------------------------------------------

    def _facts(self, dag_id: str, run_id: str) -> RunFacts:
        earlier = self.journal.reevaluation(run_id)
        if earlier is not None and earlier.state == "pending":
            return RunFacts(run_id, None, {}, not_created=True)
        state = self.backend.run_state(dag_id, run_id)
        tasks = self.backend.task_states(dag_id, run_id) if state is not None else None
        return RunFacts(run_id, state, tasks or {})

    def _start(self, rec: Reevaluation) -> Reevaluation:
        """Create the re-evaluation's run when the run it supersedes is not already acting."""
        now = self.clock()
        incident = self.journal.incident(rec.incident_run_id)
        if incident is None or incident.state == "closed":
            return self._move(rec, now, state="skipped", detail="its incident is closed")
        try:
            verdict = reevaluate.judge(self._facts(incident.dag_id, rec.previous_run_id))
            if verdict.kind == "wait":
                return self._move(rec, now, detail=f"waiting: {verdict.why}", last_error="")
            if verdict.kind == "skip":
                log.info("re-evaluation %s not needed: %s", rec.run_id, verdict.why)
                return self._move(rec, now, state="skipped", detail=f"not needed: {verdict.why}")
            created = self.backend.create_run(incident.dag_id, rec.run_id, rec.conf, self._note(rec, now))
        except BackendUnavailable as exc:
            log.warning(
                "re-evaluation %s not started yet (attempt %d): %s", rec.run_id, rec.attempts + 1, exc
            )
            return self._move(rec, now, attempts=rec.attempts + 1, last_error=str(exc)[:1000])
        detail = f"run {'created' if created else EXISTED} at {ts(now)}: {verdict.why}"
        log.info("incident %s re-evaluated by %s (%s): %s", incident.run_id, rec.run_id, rec.reason, detail)
        with self.journal.transaction() as tx:
            moved = tx.update_reevaluation(
                rec.run_id, "pending", now, state="triggered", attempts=rec.attempts + 1, last_error="",
                detail=detail,
            )  # fmt: skip
            if moved:  # the incident's state follows the new run; its note names it
                tx.update_incident(incident.run_id, run_state="queued", last_running_at=now, note_dirty=2)
        return self.journal.reevaluation(rec.run_id) or rec

    def _supersede(self, rec: Reevaluation) -> Reevaluation:
        """Answer the previous run's waiting gate "Superseded by new evidence" (once it asks)."""
        now = self.clock()
        incident = self.journal.incident(rec.incident_run_id)
        dag_id = incident.dag_id if incident else self.runs.settings.dag_id
        try:
            verdict = reevaluate.supersede(self._facts(dag_id, rec.previous_run_id))
            if verdict.kind == "wait":
                return self._move(rec, now, detail=f"{_head(rec)}; {verdict.why}", last_error="")
            if verdict.kind == "skip":
                return self._move(rec, now, state="done", detail=f"{_head(rec)}; {verdict.why}")
            assert verdict.gate is not None
            params = reevaluate.supersede_params(rec.run_id, rec.reason)
            answered = self.backend.answer_gate(
                dag_id, rec.previous_run_id, verdict.gate, SUPERSEDED_OPTION, params
            )
        except BackendUnavailable as exc:
            log.warning("re-evaluation %s: previous run's gate not answered yet: %s", rec.run_id, exc)
            return self._move(rec, now, attempts=rec.attempts + 1, last_error=str(exc)[:1000])
        if not answered:
            why = f"{verdict.gate} of {rec.previous_run_id} no longer waits (answered or timed out)"
            return self._move(rec, now, state="done", detail=f"{_head(rec)}; {why}")
        log.info("run %s's %s answered: superseded by %s", rec.previous_run_id, verdict.gate, rec.run_id)
        return self._move(
            rec, now, state="done", superseded_gate=verdict.gate, last_error="",
            detail=f"{_head(rec)}; answered {verdict.gate} of {rec.previous_run_id}: {SUPERSEDED_OPTION!r}",
        )  # fmt: skip

    def _move(self, rec: Reevaluation, now: float, **fields: object) -> Reevaluation:
        with self.journal.transaction() as tx:
            tx.update_reevaluation(rec.run_id, rec.state, now, **fields)
        return self.journal.reevaluation(rec.run_id) or rec

    def _note(self, rec: Reevaluation, now: float) -> str:
        """The new run's note: why it runs, then the incident's own note."""
        incident = self.journal.incident(rec.incident_run_id)
        head = f"**re-evaluation** of {rec.previous_run_id} (delivery {rec.delivery_id}): {rec.reason}"
        return head if incident is None else f"{head}\n\n{self.runs.render_note(incident, now)}"


def _head(rec: Reevaluation) -> str:
    """What the run creation said (kept as the detail's first part once it is triggered)."""
    return rec.detail.split("; ", 1)[0] if rec.detail.startswith("run ") else f"run of {rec.run_id}"
