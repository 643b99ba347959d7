"""The reconciler's own record: how many passes ran, how each ended, when the last one (and the last
good one) ran. Kept in the journal's ``meta`` table, so every process that shares the journal (the
api-server's maintainer thread, ``POST /reconcile`` from the reconciler DAG, ``triage24 intake
reconcile``) adds to one record, and ``/metrics`` reports it (:mod:`diagnostics.telemetry`).

A pass ends ``ok`` (nothing left pending), ``degraded`` (it ran, but an incident or a re-evaluation is
still without its run: Airflow refused or was unreachable) or ``failed`` (it raised: the journal or
the code broke).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Literal

from diagnostics.intake.journal import Journal

Result = Literal["ok", "degraded", "failed"]
RESULTS: tuple[Result, ...] = ("ok", "degraded", "failed")
PREFIX = "reconciler."
LAST_RUN = f"{PREFIX}last_run_at"
LAST_SUCCESS = f"{PREFIX}last_success_at"

# The latest time wins, whichever process writes last (several api-server workers, the CLI).
_LATEST = (
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
    "CAST(MAX(CAST(value AS REAL), CAST(excluded.value AS REAL)) AS TEXT)"
)
_INCREMENT = (
    "INSERT INTO meta (key, value) VALUES (?, '1') "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
)


def _runs_key(result: str) -> str:
    return f"{PREFIX}runs.{result}"


@dataclass(frozen=True)
class ReconcilerRuns:
    """What the journal says about the reconciler's passes (zeros: it never ran)."""

    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    last_run_at: float = 0.0
    last_success_at: float = 0.0


def record_run(journal: Journal, result: Result, now: float) -> None:
    """Add one pass to the record (a JournalError when the journal cannot be written)."""
    if result not in RESULTS:
        raise ValueError(f"reconciler result {result!r}: expected one of {', '.join(RESULTS)}")
    with journal.transaction() as tx:
        tx.c.execute(_INCREMENT, (_runs_key(result),))
        tx.c.execute(_LATEST, (LAST_RUN, repr(float(now))))
        if result == "ok":
            tx.c.execute(_LATEST, (LAST_SUCCESS, repr(float(now))))


def read_runs(conn: sqlite3.Connection) -> ReconcilerRuns:
    """The record, read with any connection to the journal (the telemetry reads with its own)."""
    rows = conn.execute("SELECT key, value FROM meta WHERE key LIKE ?", (f"{PREFIX}%",)).fetchall()
    values = {str(r[0]): str(r[1]) for r in rows}

    def number(key: str) -> float:
        try:
            return float(values.get(key, "0"))
        except ValueError:  # a hand-edited value: treat as never
            return 0.0

    return ReconcilerRuns(
        runs={r: int(number(_runs_key(r))) for r in RESULTS},
        last_run_at=number(LAST_RUN),
        last_success_at=number(LAST_SUCCESS),
    )
