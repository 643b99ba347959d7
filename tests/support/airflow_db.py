"""Reading a local stack's Airflow metadata DB (SQLite) after the fact: what the scheduler recorded
for a run, also once the stack is down (the scenario runner stops its stack before a test asserts)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path


def open_deadline_hours(db: Path, run_id: str) -> list[float]:
    """Hours from queueing to each Deadline of the run that is still open (not missed, not pruned)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.deadline_time, r.queued_at FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id "
            "WHERE r.run_id = ? AND NOT d.missed",
            (run_id,),
        ).fetchall()
    return [
        (datetime.fromisoformat(str(d)) - datetime.fromisoformat(str(q))).total_seconds() / 3600
        for d, q in rows
    ]


def task_states(db: Path, run_id: str) -> dict[str, str | None]:
    """Each task of the run and its state, as the scheduler left it."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT task_id, state FROM task_instance WHERE run_id = ?", (run_id,)).fetchall()
    return {str(task): (None if state is None else str(state)) for task, state in rows}
