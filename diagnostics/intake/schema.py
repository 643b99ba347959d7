"""The intake journal's SQLite schema, and the migration of a journal written by an older version.

Tables:
- ``deliveries``: one row per accepted delivery: raw body, received time, outcome, run id.
- ``incidents``: one row per incident run: state pending (run not created yet) / open / closed,
  grade, escalation, the conf to (re)create it with, note bookkeeping, the correlation key other
  groups find it by.
- ``incident_groups``: the alert groups that joined an incident opened by another group.
- ``occurrences``: each firing episode (fingerprint, startsAt) of a group and the run covering it.
- ``alerts``: the last known status of every alert (for counting impacted services).
- ``reevaluations``: new runs of an open incident on new evidence, and the gate answer they owe the
  run they supersede (:mod:`diagnostics.intake.reevaluate`).
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    body BLOB NOT NULL,
    body_sha256 TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    alerts INTEGER NOT NULL,
    grade TEXT,
    rule TEXT,
    escalated INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_sha ON deliveries (body_sha256);
CREATE INDEX IF NOT EXISTS deliveries_outcome ON deliveries (outcome);
CREATE INDEX IF NOT EXISTS deliveries_run ON deliveries (run_id);
CREATE INDEX IF NOT EXISTS deliveries_group ON deliveries (group_key);
CREATE TABLE IF NOT EXISTS incidents (
    run_id TEXT PRIMARY KEY,
    dag_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'open', 'closed')),
    run_state TEXT,
    created_at REAL NOT NULL,
    opened_at REAL,
    closed_at REAL,
    grade TEXT NOT NULL,
    rule TEXT NOT NULL,
    escalated INTEGER NOT NULL,
    escalation_rule TEXT NOT NULL,
    escalation_reason TEXT NOT NULL,
    escalated_at REAL,
    conf TEXT NOT NULL,
    group_labels TEXT NOT NULL DEFAULT '{}',
    updates INTEGER NOT NULL DEFAULT 0,
    resolved_at REAL,
    last_delivery_at REAL NOT NULL,
    note_dirty INTEGER NOT NULL DEFAULT 0,  -- 0 written, 1 to write (throttled), 2 to write at once
    note_written_at REAL,
    state_checked_at REAL,
    last_running_at REAL,  -- when the run was last seen not finished
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    correlation_key TEXT,  -- the opening group's correlation key (runbooks/grading.yaml correlation)
    correlation_rule TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open_per_group
    ON incidents (group_key) WHERE state != 'closed';
CREATE INDEX IF NOT EXISTS incidents_group ON incidents (group_key, created_at);
CREATE TABLE IF NOT EXISTS occurrences (
    group_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    first_seen REAL NOT NULL,
    grade TEXT NOT NULL,
    run_id TEXT,
    covered_at REAL,
    PRIMARY KEY (group_key, fingerprint, starts_at)
);
CREATE INDEX IF NOT EXISTS occurrences_seen ON occurrences (group_key, first_seen);
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    labels TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_group ON alerts (group_key);
CREATE TABLE IF NOT EXISTS incident_groups (
    run_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    group_labels TEXT NOT NULL DEFAULT '{}',
    joined_at REAL NOT NULL,
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (group_key, run_id)
);
CREATE INDEX IF NOT EXISTS incident_groups_run ON incident_groups (run_id);
CREATE TABLE IF NOT EXISTS reevaluations (
    run_id TEXT PRIMARY KEY,  -- its own run: <incident run id>__r<n>
    incident_run_id TEXT NOT NULL,
    previous_run_id TEXT NOT NULL,  -- the run it supersedes
    delivery_id INTEGER NOT NULL,  -- the delivery that called for it
    keys TEXT NOT NULL,  -- JSON list: what it was called for (grade:L3, gate:CanaryGate5xx)
    reason TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'triggered', 'done', 'skipped')),
    conf TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    superseded_gate TEXT  -- the previous run's gate it answered
);
CREATE INDEX IF NOT EXISTS reevaluations_incident ON reevaluations (incident_run_id, created_at);
CREATE INDEX IF NOT EXISTS reevaluations_state ON reevaluations (state);
"""

# Indexes on columns a version-1 journal lacks: created once the columns exist.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS incidents_correlation ON incidents (correlation_key, last_delivery_at) "
    "WHERE state != 'closed'",
)

# Columns added after version 1: (table, column, definition).
_ADDED = (
    ("incidents", "correlation_key", "TEXT"),
    ("incidents", "correlation_rule", "TEXT NOT NULL DEFAULT ''"),
)


def create(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema (autocommit connection). Several processes may open one journal
    at once: the upgrade runs in one write transaction that re-reads what exists."""
    conn.executescript(SCHEMA)  # new tables and indexes; a version-1 table keeps its columns
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, column, definition in _ADDED:
            present = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        for statement in INDEXES:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
