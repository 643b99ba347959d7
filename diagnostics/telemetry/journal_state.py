"""The intake journal as the metrics read it: deliveries by outcome, what is pending and since when,
unclosed incidents by grade, the reconciler's record, and which runs have ended.

Read with a connection of its own, opened read-only for each reading (SQLite WAL: readers never block
the intake's writer, and a scrape never creates or migrates a journal). An absent journal is an intake
that has journaled nothing yet: all zeros.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from diagnostics.intake.reconciler_runs import ReconcilerRuns, read_runs
from diagnostics.intake.records import FINISHED_RUN_STATES

PENDING_OUTCOMES = frozenset({"pending", "received"})  # journaled, waiting for their incident's run
# Every final outcome a delivery can have (decide.py; ``replayed``: a pending one whose run was created
# later): exported from zero, so ``increase()`` sees the first one.
DELIVERY_OUTCOMES = ("created", "update", "joined", "duplicate", "resolved", "recorded", "replayed")
OPEN_STATES = ("pending", "open")
GRADES = ("L1", "L2", "L3", "L4")


class JournalUnreadable(RuntimeError):
    """The journal exists but cannot be read (locked beyond the timeout, corrupt, not a journal)."""


@dataclass(frozen=True)
class JournalState:
    deliveries: dict[str, int] = field(default_factory=dict)  # outcome -> deliveries (every outcome)
    oldest_pending_at: float | None = None  # received_at of the oldest delivery still pending
    open_incidents: dict[tuple[str, str], int] = field(default_factory=dict)  # (grade, state) -> count
    reconciler: ReconcilerRuns = field(default_factory=ReconcilerRuns)
    ended_runs: frozenset[str] = frozenset()  # of the runs asked about: those whose run is over

    @property
    def pending(self) -> int:
        return sum(n for outcome, n in self.deliveries.items() if outcome in PENDING_OUTCOMES)


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)


def _ended(conn: sqlite3.Connection, run_ids: Iterable[str]) -> frozenset[str]:
    """Of ``run_ids``, those the journal knows are over: their incident is closed, or the run the
    incident follows (its own, or its newest created re-evaluation) has finished in Airflow."""
    ended = set()
    for run_id in run_ids:
        row = conn.execute(
            "SELECT run_id, state, run_state FROM incidents WHERE run_id = ? OR run_id = "
            "(SELECT incident_run_id FROM reevaluations WHERE run_id = ?)",
            (run_id, run_id),
        ).fetchone()
        if row is None:
            continue  # a manual investigation: the journal knows nothing of it
        incident, state, run_state = str(row[0]), str(row[1]), row[2]
        latest = conn.execute(
            "SELECT run_id FROM reevaluations WHERE incident_run_id = ? AND state IN ('triggered', 'done') "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (incident,),
        ).fetchone()
        follows = str(latest[0]) if latest else incident
        # closed; superseded by a newer run; or the run the incident follows has finished
        if state == "closed" or follows != run_id or run_state in FINISHED_RUN_STATES:
            ended.add(run_id)
    return frozenset(ended)


def read_journal(path: Path, ask_ended: Iterable[str] = (), timeout_s: float = 2.0) -> JournalState:
    """The journal's counts; ``ask_ended``: run ids to look up in :attr:`JournalState.ended_runs`."""
    if not path.exists():
        return JournalState()
    try:
        with closing(_connect(path, timeout_s)) as conn:
            rows = conn.execute(
                "SELECT outcome, COUNT(*), MIN(received_at) FROM deliveries GROUP BY outcome"
            ).fetchall()
            deliveries = {str(r[0]): int(r[1]) for r in rows}
            pending_since = [float(r[2]) for r in rows if str(r[0]) in PENDING_OUTCOMES and r[2] is not None]
            incidents = conn.execute(
                "SELECT grade, state, COUNT(*) FROM incidents WHERE state != 'closed' GROUP BY grade, state"
            ).fetchall()
            return JournalState(
                deliveries=deliveries,
                oldest_pending_at=min(pending_since) if pending_since else None,
                open_incidents={(str(r[0]), str(r[1])): int(r[2]) for r in incidents},
                reconciler=read_runs(conn),
                ended_runs=_ended(conn, ask_ended),
            )
    except sqlite3.Error as exc:
        raise JournalUnreadable(f"intake journal {path}: {exc}") from exc
