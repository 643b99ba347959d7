"""The intake's reconciler: nothing journaled stays without its effect in Airflow.

- :meth:`Reconciler.reconcile` (``POST /reconcile``, the reconciler DAG, ``triage24 intake
  reconcile``): create the runs of pending incidents (and replay their deliveries), advance unfinished
  re-evaluations (:mod:`diagnostics.intake.reevaluations`), close incidents whose run finished, write
  stale notes, prune old history;
- :meth:`Reconciler.start`: the same off the request path in the api-server, as a maintainer thread
  (run states and notes every tick, pending incidents every ``retry_pending_s``).

An incident whose run has finished stays open while its alerts fire (and ``quiet_s`` after its last
delivery, grading.yaml ``correlation``): alerts it takes on after its run ended are on it, not lost.

Every pass that retries pending work (each :meth:`~Reconciler.reconcile`, and the maintainer's retry
every ``retry_pending_s``) is recorded in the journal: ok / degraded / failed, and when
(:mod:`diagnostics.intake.reconciler_runs`), which ``/metrics`` reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.journal import Journal
from diagnostics.intake.reconciler_runs import Result, record_run
from diagnostics.intake.reevaluations import Reevaluator
from diagnostics.intake.runs import RunKeeper

log = logging.getLogger("triage24.intake")


@dataclass
class ReconcileReport:
    replayed: list[str] = field(default_factory=list)
    still_pending: dict[str, str] = field(default_factory=dict)  # run id -> why (incidents, re-evaluations)
    reevaluations: dict[str, str] = field(default_factory=dict)  # run id -> "state: what became of it"
    closed: list[str] = field(default_factory=list)
    notes_written: int = 0
    pruned: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def result(self) -> Result:
        """How the pass ended: ``degraded`` while something is still without its run."""
        return "degraded" if self.still_pending or self.errors else "ok"


class Reconciler:
    def __init__(
        self,
        journal: Journal,
        runs: RunKeeper,
        settings: IntakeSettings,
        clock: Callable[[], float],
        reevaluator: Reevaluator | None = None,
    ) -> None:
        self.journal = journal
        self.runs = runs
        self.reevaluator = reevaluator or Reevaluator(journal, runs.backend, runs, clock)
        self.settings = settings
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reconcile(self) -> ReconcileReport:
        """Create pending runs, close finished incidents, write stale notes, prune old history."""
        report = ReconcileReport()
        now = self.clock()
        try:
            self.retry_pending(now, report)
            report.closed, report.notes_written = self.maintain(now, max_age_s=0.0, force_notes=True)
            retention = self.settings.retention_days * 86_400
            report.pruned = self.journal.prune(
                now - retention, now - max(retention, self.settings.alert_ttl_s)
            )
        except Exception:
            self._record("failed")
            raise
        self._record(report.result)
        return report

    def retry_pass(self) -> ReconcileReport:
        """The maintainer's periodic retry of pending work, recorded like a full pass."""
        report = ReconcileReport()
        try:
            self.retry_pending(self.clock(), report)
        except Exception:
            self._record("failed")
            raise
        self._record(report.result)
        return report

    def _record(self, result: Result) -> None:
        try:
            record_run(self.journal, result, self.clock())
        except Exception as exc:  # the record must never break the pass it records
            log.warning("could not record the reconciler pass (%s): %s", result, exc)

    def retry_pending(self, now: float, report: ReconcileReport) -> None:
        for incident in self.journal.incidents(state="pending"):
            ok, detail = self.runs.create(incident.run_id, now)
            if ok is None:
                continue
            if ok:
                report.replayed.append(incident.run_id)
            else:
                report.still_pending[incident.run_id] = detail
        # after the incidents: a re-evaluation of an incident created just now may start at once
        for run_id, (state, what) in self.reevaluator.retry().items():
            report.reevaluations[run_id] = f"{state}: {what}"
            again = self.journal.reevaluation(run_id)
            if again is not None and again.state in ("pending", "triggered") and again.last_error:
                report.still_pending[run_id] = f"re-evaluation {state}: {again.last_error}"

    def maintain(
        self, now: float | None = None, max_age_s: float | None = None, force_notes: bool = False
    ) -> tuple[list[str], int]:
        """One maintenance pass: close incidents whose run finished (states older than ``max_age_s``,
        default ``state_cache_s``), then write dirty notes (throttled unless urgent or forced)."""
        now = self.clock() if now is None else now
        max_age = self.settings.state_cache_s if max_age_s is None else max_age_s
        runs = self.runs
        closed = [i.run_id for i in self.journal.incidents(state="open") if runs.refresh(i, now, max_age)]
        written = sum(runs.write_note(i.run_id, force=force_notes) for i in self.journal.dirty_notes())
        return closed, written

    # --- the maintainer thread ------------------------------------------------------------------------

    def wake(self) -> None:
        """Run a maintenance pass now (a note that must not wait for the next tick)."""
        self._wake.set()

    def start(self, retry_pending_s: float = 30.0) -> None:
        """Start the maintainer thread: notes and run states every tick, pending incidents every
        ``retry_pending_s``."""
        if self._thread is not None:
            return

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
                        self.retry_pass()
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
