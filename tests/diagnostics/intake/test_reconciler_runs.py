"""The reconciler records every pass in the journal (ok / degraded / failed, and when), shared by every
process on the journal; recording never breaks the pass it records."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from diagnostics.intake import reconcile as reconcile_module
from diagnostics.intake.journal import Journal, JournalError
from diagnostics.intake.payload import validate
from diagnostics.intake.reconciler_runs import ReconcilerRuns, read_runs, record_run
from diagnostics.intake.service import IntakeService
from tests.diagnostics.intake.conftest import Clock, MemoryBackend, body, real_payload


def runs_of(journal: Journal) -> ReconcilerRuns:
    with closing(sqlite3.connect(journal.path)) as conn:
        return read_runs(conn)


def test_a_journal_that_never_reconciled_says_so(service: IntakeService) -> None:
    assert runs_of(service.journal) == ReconcilerRuns(runs={"ok": 0, "degraded": 0, "failed": 0})


def test_a_pass_that_leaves_nothing_pending_is_ok_and_a_success(service: IntakeService, clock: Clock) -> None:
    service.reconcile()
    clock.advance(30)
    service.reconcile()
    assert runs_of(service.journal) == ReconcilerRuns(
        runs={"ok": 2, "degraded": 0, "failed": 0}, last_run_at=clock.now, last_success_at=clock.now
    )


def test_a_pass_that_cannot_create_a_pending_run_is_degraded(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    service.reconcile()
    ok_at = clock.now
    backend.down = "metadata DB unreachable"
    raw = real_payload()
    assert service.handle(validate(raw), body(raw)).outcome == "pending"
    clock.advance(60)
    report = service.reconcile()
    assert report.result == "degraded" and list(report.still_pending)
    clock.advance(30)
    service.reconciler.retry_pass()  # the api-server's maintainer, every 30 s
    assert runs_of(service.journal) == ReconcilerRuns(
        runs={"ok": 1, "degraded": 2, "failed": 0}, last_run_at=clock.now, last_success_at=ok_at
    )
    backend.down = None
    assert service.reconciler.retry_pass().result == "ok"
    assert runs_of(service.journal).last_success_at == clock.now


def test_a_pass_that_raises_is_recorded_as_failed_and_still_raises(
    service: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> dict[str, int]:
        raise RuntimeError("prune broke")

    monkeypatch.setattr(service.journal, "prune", broken)
    with pytest.raises(RuntimeError, match="prune broke"):
        service.reconcile()
    assert runs_of(service.journal).runs == {"ok": 0, "degraded": 0, "failed": 1}
    assert runs_of(service.journal).last_success_at == 0.0


def test_a_record_that_cannot_be_written_does_not_break_the_pass(
    service: IntakeService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full_disk(*_: object) -> None:
        raise JournalError("disk full")

    monkeypatch.setattr(reconcile_module, "record_run", full_disk)
    assert service.reconcile().result == "ok"
    assert "could not record the reconciler pass (ok): disk full" in caplog.text


def test_every_process_on_the_journal_adds_to_one_record(service: IntakeService, clock: Clock) -> None:
    other = Journal(service.journal.path)  # another api-server worker, the CLI
    try:
        record_run(other, "degraded", clock.now + 5)
        service.reconcile()
    finally:
        other.close()
    runs = runs_of(service.journal)
    assert runs.runs == {"ok": 1, "degraded": 1, "failed": 0}
    assert runs.last_run_at == clock.now + 5, "the latest pass, whichever process recorded it last"
    with pytest.raises(ValueError, match="expected one of ok, degraded, failed"):
        record_run(service.journal, "fine", clock.now)  # type: ignore[arg-type]
