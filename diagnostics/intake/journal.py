"""The intake journal: a durable record of every accepted delivery and of the incidents they opened.

SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk (the WAL is fsynced) before the
webhook answers 2xx. One connection per process, guarded by a lock; transactions are ``BEGIN
IMMEDIATE`` so deciding "is there an open incident for this group?" and opening one is atomic, also
across processes (several api-server workers). A partial unique index lets at most one incident per
alert group be open at a time, whatever the code above does.

A delivery is one transaction: :meth:`Tx.group_state` (and :meth:`Tx.escalation_state`) read what its
decision needs, :meth:`Tx.record` writes the decided outcome (types in ``records``). A group's open
incident is the one it opened or the one it joined (``incident_groups``); a group without one finds
another group's by its correlation key. The tables are described in :mod:`diagnostics.intake.schema`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from diagnostics.intake import schema
from diagnostics.intake.records import (
    AlertRow,
    Delivery,
    DeliveryRecord,
    EscalationLookup,
    EscalationState,
    GroupLookup,
    Incident,
    NewReevaluation,
    Occurrence,
    Reevaluation,
    Snapshot,
)


class JournalError(RuntimeError):
    """The journal cannot be opened or written (disk full, permissions, corrupt file)."""


_DELIVERY_COLS = (
    "id, received_at, body_sha256, group_key, status, alerts, grade, rule, escalated, run_id, outcome, "
    "detail, updated_at"
)


def _delivery(row: Sequence[Any]) -> Delivery:
    fields = dict(zip((c.strip() for c in _DELIVERY_COLS.split(",")), row, strict=True))
    fields["escalated"] = bool(fields["escalated"])
    fields["body_sha256"] = str(fields["body_sha256"])
    return Delivery(**fields)


def reevaluation_row(row: sqlite3.Row) -> Reevaluation:
    data = dict(row)
    data["keys"] = tuple(json.loads(data["keys"]))
    data["conf_json"] = data.pop("conf")
    return Reevaluation(**data)


def _incident(row: sqlite3.Row) -> Incident:
    data = dict(row)
    data["escalated"] = bool(data["escalated"])
    data["conf_json"] = data.pop("conf")
    data["group_labels_json"] = data.pop("group_labels")
    return Incident(**data)


_NEXT_DELIVERY_ID = (
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0), "
    "COALESCE((SELECT MAX(id) FROM deliveries), 0)) + 1"
)


OPEN_INCIDENT_OF_GROUP = (
    "SELECT * FROM incidents WHERE state != 'closed' AND (group_key = ? OR run_id IN "
    "(SELECT run_id FROM incident_groups WHERE group_key = ?)) ORDER BY created_at DESC LIMIT 1"
)
CORRELATED_INCIDENT = (
    "SELECT * FROM incidents WHERE correlation_key = ? AND state != 'closed' "
    "ORDER BY last_delivery_at DESC LIMIT 1"
)
REEVALUATIONS_OF = "SELECT * FROM reevaluations WHERE incident_run_id = ? ORDER BY created_at, rowid"
# The run an incident's state follows: its newest re-evaluation whose run was created, else its own.
LATEST_RUN = (
    "SELECT run_id FROM reevaluations WHERE incident_run_id = ? AND state IN ('triggered', 'done') "
    "ORDER BY created_at DESC, rowid DESC LIMIT 1"
)
GROUP_KEYS_OF_INCIDENT = (
    "SELECT group_key FROM (SELECT group_key, 0 AS o, 0 AS t FROM incidents WHERE run_id = ? "
    "UNION ALL SELECT group_key, 1, joined_at FROM incident_groups WHERE run_id = ?) ORDER BY o, t"
)


class Tx:
    """Statements run inside one journal transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn

    # --- one delivery: read, then write -----------------------------------------------------------

    def group_state(self, q: GroupLookup) -> Snapshot:
        """Everything a delivery's decision needs from the journal (reads only). The delivery id is
        the one AUTOINCREMENT would give: this transaction holds the write lock until it commits."""
        open_incident = self.open_incident(q.group_key)
        correlated = None
        if q.firing and open_incident is None and q.correlation_key is not None:
            correlated = self.correlated_incident(q.correlation_key)
        latest = None
        if not q.firing and open_incident is None:
            latest = self.latest_incident(q.group_key, q.resolved)
        taken = q.run_id is not None and open_incident is None and self.incident(q.run_id) is not None
        target = open_incident or correlated
        history = self.c.execute(REEVALUATIONS_OF, (target.run_id,)).fetchall() if target else []
        earlier = self.c.execute(
            "SELECT id FROM deliveries WHERE body_sha256 = ? AND outcome NOT IN ('pending', 'received') "
            "ORDER BY id DESC LIMIT 1",
            (q.body_sha256,),
        ).fetchone()
        return Snapshot(
            delivery_id=int(self.c.execute(_NEXT_DELIVERY_ID).fetchone()[0]),
            known_resolved=frozenset(fp for fp in set(q.resolved) if self._alert_status(fp) == "resolved"),
            runs=self._occurrence_runs(q.group_key, q.firing),
            open_incident=open_incident,
            latest_incident=latest,
            run_id_taken=taken,
            earlier_same_body=int(earlier[0]) if earlier else None,
            correlated=correlated,
            reevaluations=tuple(reevaluation_row(r) for r in history),
        )

    def escalation_state(self, group_key: str, q: EscalationLookup) -> EscalationState:
        repeats = labels = None
        if q.repeats_since is not None:
            row = self.c.execute(
                "SELECT COUNT(*) FROM occurrences WHERE group_key = ? AND first_seen >= ?",
                (group_key, q.repeats_since),
            ).fetchone()
            repeats = int(row[0])
        if q.firing_since is not None:
            rows = self.c.execute(
                "SELECT fingerprint, labels FROM alerts WHERE status = 'firing' AND last_seen >= ?",
                (q.firing_since,),
            ).fetchall()
            labels = {str(r[0]): json.loads(r[1]) for r in rows}
        return EscalationState(repeats=repeats, firing_labels=labels)

    def record(self, r: DeliveryRecord) -> None:
        """Journal a decided delivery: the delivery, its alerts and episodes, its incident change."""
        self.c.execute(
            "INSERT INTO deliveries (id, received_at, body, body_sha256, group_key, status, alerts, grade, "
            "rule, escalated, run_id, outcome, detail, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                r.id, r.received_at, r.body, r.body_sha256, r.group_key, r.status, r.alert_count, r.grade,
                r.rule, r.escalated, r.run_id, r.outcome, r.detail[:2000], r.received_at,
            ),
        )  # fmt: skip
        self.upsert_alerts(r.group_key, r.alerts, r.received_at)
        self.c.executemany(
            "INSERT OR IGNORE INTO occurrences (group_key, fingerprint, starts_at, first_seen, grade) "
            "VALUES (?, ?, ?, ?, ?)",
            [(r.group_key, fp, starts, r.received_at, grade) for fp, starts, grade in r.occurrences],
        )
        change = r.incident
        if (new := change.insert) is not None:
            self.insert_incident(
                run_id=new.run_id,
                dag_id=new.dag_id,
                group_key=new.group_key,
                now=r.received_at,
                grade=new.grade,
                rule=new.rule,
                escalated=new.escalated,
                escalation_rule=new.escalation_rule,
                escalation_reason=new.escalation_reason,
                conf=new.conf,
                correlation=(new.correlation_key, new.correlation_rule),
            )
        if (join := change.join) is not None:
            self.c.execute(
                "INSERT OR IGNORE INTO incident_groups (run_id, group_key, group_labels, joined_at, rule, "
                "key) VALUES (?, ?, ?, ?, ?, ?)",
                (join.run_id, join.group_key, json.dumps(dict(join.group_labels), ensure_ascii=False),
                 r.received_at, join.rule, join.key),
            )  # fmt: skip
        if change.update_run is not None:
            self.update_incident(change.update_run, **change.update)
        if change.cover_run is not None:
            self.cover(r.group_key, change.cover, change.cover_run, r.received_at)
        if (again := change.reevaluate) is not None:
            self.insert_reevaluation(again, r.id, r.received_at)

    def _alert_status(self, fingerprint: str) -> str | None:
        row = self.c.execute("SELECT status FROM alerts WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return str(row[0]) if row else None

    def _occurrence_runs(
        self, group_key: str, occurrences: Iterable[Occurrence]
    ) -> dict[Occurrence, str | None]:
        out: dict[Occurrence, str | None] = {}
        for fp, starts in dict.fromkeys(occurrences):
            row = self.c.execute(
                "SELECT run_id FROM occurrences WHERE group_key = ? AND fingerprint = ? AND starts_at = ?",
                (group_key, fp, starts),
            ).fetchone()
            if row is not None:
                out[(fp, starts)] = None if row[0] is None else str(row[0])
        return out

    # --- deliveries -------------------------------------------------------------------------------

    def insert_delivery(
        self, received_at: float, body: bytes, sha: str, group_key: str, status: str, alerts: int
    ) -> int:
        cur = self.c.execute(
            "INSERT INTO deliveries (received_at, body, body_sha256, group_key, status, alerts, outcome, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, 'received', ?)",
            (received_at, body, sha, group_key, status, alerts, received_at),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        outcome: str,
        run_id: str | None,
        detail: str,
        now: float,
        grade: str | None = None,
        rule: str | None = None,
        escalated: bool | None = None,
    ) -> None:
        self.c.execute(
            "UPDATE deliveries SET outcome = ?, run_id = ?, detail = ?, updated_at = ?, "
            "grade = COALESCE(?, grade), rule = COALESCE(?, rule), escalated = COALESCE(?, escalated) "
            "WHERE id = ?",
            (outcome, run_id, detail[:2000], now, grade, rule, escalated, delivery_id),
        )

    def replay_pending(self, run_id: str, outcome: str, detail: str, now: float) -> int:
        cur = self.c.execute(
            "UPDATE deliveries SET outcome = ?, detail = ?, updated_at = ? "
            "WHERE run_id = ? AND outcome = 'pending'",
            (outcome, detail, now, run_id),
        )
        return cur.rowcount

    # --- alerts mirror and occurrences ------------------------------------------------------------

    def upsert_alerts(self, group_key: str, alerts: Iterable[AlertRow], now: float) -> None:
        self.c.executemany(
            "INSERT INTO alerts (fingerprint, group_key, status, labels, starts_at, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
            "group_key = excluded.group_key, status = excluded.status, labels = excluded.labels, "
            "starts_at = excluded.starts_at, last_seen = excluded.last_seen",
            [
                (fp, group_key, status, json.dumps(labels), starts, now)
                for fp, status, labels, starts in alerts
            ],
        )

    def cover(self, group_key: str, occurrences: Iterable[Occurrence], run_id: str, now: float) -> None:
        self.c.executemany(
            "UPDATE occurrences SET run_id = ?, covered_at = ? WHERE group_key = ? AND fingerprint = ? "
            "AND starts_at = ? AND run_id IS NULL",
            [(run_id, now, group_key, fp, starts) for fp, starts in occurrences],
        )

    # --- incidents --------------------------------------------------------------------------------

    def open_incident(self, group_key: str) -> Incident | None:
        """The group's unclosed incident: the one it opened, or the one it joined."""
        row = self.c.execute(OPEN_INCIDENT_OF_GROUP, (group_key, group_key)).fetchone()
        return _incident(row) if row else None

    def correlated_incident(self, correlation_key: str) -> Incident | None:
        """The unclosed incident with this correlation key that was delivered to last."""
        row = self.c.execute(CORRELATED_INCIDENT, (correlation_key,)).fetchone()
        return _incident(row) if row else None

    def group_keys(self, run_id: str) -> list[str]:
        """The incident's alert groups: the one that opened it, then those that joined it."""
        rows = self.c.execute(GROUP_KEYS_OF_INCIDENT, (run_id, run_id)).fetchall()
        return [str(r[0]) for r in rows]

    def firing_alerts(self, run_id: str, seen_since: float) -> int:
        """Alerts of the incident's groups last delivered firing, no earlier than ``seen_since``."""
        keys = self.group_keys(run_id)
        marks = ",".join("?" * len(keys))
        row = self.c.execute(
            f"SELECT COUNT(*) FROM alerts WHERE status = 'firing' AND last_seen >= ? "  # noqa: S608
            f"AND group_key IN ({marks})",
            (seen_since, *keys),
        ).fetchone()
        return int(row[0])

    def incident(self, run_id: str) -> Incident | None:
        row = self.c.execute("SELECT * FROM incidents WHERE run_id = ?", (run_id,)).fetchone()
        return _incident(row) if row else None

    def latest_incident(self, group_key: str, fingerprints: Iterable[str]) -> Incident | None:
        """The newest incident of the group that covered one of these alerts (else the group's newest)."""
        fps = list(fingerprints)
        if fps:
            marks = ",".join("?" * len(fps))
            row = self.c.execute(
                f"SELECT i.* FROM incidents i JOIN occurrences o ON o.run_id = i.run_id "  # noqa: S608
                f"WHERE o.group_key = ? AND o.fingerprint IN ({marks}) ORDER BY i.created_at DESC LIMIT 1",
                (group_key, *fps),
            ).fetchone()
            if row:
                return _incident(row)
        row = self.c.execute(
            "SELECT * FROM incidents WHERE group_key = ? OR run_id IN "
            "(SELECT run_id FROM incident_groups WHERE group_key = ?) ORDER BY created_at DESC LIMIT 1",
            (group_key, group_key),
        ).fetchone()
        return _incident(row) if row else None

    def insert_incident(
        self,
        *,
        run_id: str,
        dag_id: str,
        group_key: str,
        now: float,
        grade: str,
        rule: str,
        escalated: bool,
        escalation_rule: str,
        escalation_reason: str,
        conf: dict[str, Any],
        correlation: tuple[str | None, str] = (None, ""),
    ) -> None:
        self.c.execute(
            "INSERT INTO incidents (run_id, dag_id, group_key, state, created_at, grade, rule, escalated, "
            "escalation_rule, escalation_reason, escalated_at, conf, group_labels, last_delivery_at, "
            "correlation_key, correlation_rule) "
            "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                dag_id,
                group_key,
                now,
                grade,
                rule,
                int(escalated),
                escalation_rule,
                escalation_reason,
                now if escalated else None,
                json.dumps(conf, ensure_ascii=False),
                json.dumps(conf.get("group_labels", {}), ensure_ascii=False),
                now,
                *correlation,
            ),
        )

    def update_incident(self, run_id: str, **fields: Any) -> None:
        allowed = {
            "state", "run_state", "opened_at", "closed_at", "grade", "rule", "escalated", "escalation_rule",
            "escalation_reason", "escalated_at", "updates", "resolved_at", "last_delivery_at", "note_dirty",
            "note_written_at", "state_checked_at", "last_running_at", "attempts", "last_error",
        }  # fmt: skip
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not incident columns: {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.c.execute(f"UPDATE incidents SET {sets} WHERE run_id = ?", (*fields.values(), run_id))  # noqa: S608

    def close_open_incidents(self, now: float) -> list[str]:
        """Close every unclosed incident (an operator's or a test harness's fresh start: the next alert
        opens a new incident instead of joining one); the run ids closed."""
        ids = [str(r[0]) for r in self.c.execute("SELECT run_id FROM incidents WHERE state != 'closed'")]
        for run_id in ids:
            self.update_incident(run_id, state="closed", closed_at=now)
        return ids

    # --- re-evaluations ---------------------------------------------------------------------------

    def insert_reevaluation(self, new: NewReevaluation, delivery_id: int, now: float) -> None:
        self.c.execute(
            "INSERT INTO reevaluations (run_id, incident_run_id, previous_run_id, delivery_id, keys, reason, "
            "state, conf, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
            (new.run_id, new.incident_run_id, new.previous_run_id, delivery_id, json.dumps(list(new.keys)),
             new.reason[:2000], json.dumps(new.conf, ensure_ascii=False), now, now),
        )  # fmt: skip

    def update_reevaluation(self, run_id: str, state_was: str, now: float, **fields: Any) -> bool:
        """Update it if it is still in ``state_was`` (another process may have moved it on)."""
        allowed = {"state", "attempts", "last_error", "detail", "superseded_gate"}
        if unknown := set(fields) - allowed:
            raise ValueError(f"not re-evaluation columns: {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        cur = self.c.execute(
            f"UPDATE reevaluations SET {sets}, updated_at = ? WHERE run_id = ? AND state = ?",  # noqa: S608
            (*fields.values(), now, run_id, state_was),
        )
        return cur.rowcount == 1

    def note_written(self, run_id: str, now: float, last_delivery_at: float) -> None:
        """The note is written, unless a delivery marked it dirty while it was being written."""
        self.c.execute(
            "UPDATE incidents SET note_written_at = ?, note_dirty = 0 WHERE run_id = ? "
            "AND last_delivery_at <= ?",
            (now, run_id, last_delivery_at),
        )

    def claim_state_check(self, run_id: str, now: float, max_age_s: float) -> bool:
        """True for the one caller that should ask Airflow for the run's state now."""
        cur = self.c.execute(
            "UPDATE incidents SET state_checked_at = ? WHERE run_id = ? AND state = 'open' "
            "AND (state_checked_at IS NULL OR state_checked_at <= ?)",
            (now, run_id, now - max_age_s),
        )
        return cur.rowcount == 1


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # bodies are internal data: owner only
            os.close(fd)
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._conn.row_factory = sqlite3.Row
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{path}: SQLite refused WAL mode (got {mode}); use a local disk")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            schema.create(self._conn)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open the intake journal {path}: {exc}") from exc
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One atomic, durable transaction (fsynced at commit). Any SQLite failure is a JournalError."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise JournalError(f"intake journal {self.path} is not writable: {exc}") from exc
            try:
                yield Tx(self._conn)
                self._conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise JournalError(f"intake journal {self.path}: {exc}") from exc
                raise

    # --- reads (each in its own snapshot) ---------------------------------------------------------

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """One read statement in its own snapshot (a JournalError when SQLite fails)."""
        with self._lock:
            try:
                return list(self._conn.execute(sql, args).fetchall())
            except sqlite3.Error as exc:
                raise JournalError(f"intake journal {self.path}: {exc}") from exc

    def open_incident(self, group_key: str) -> Incident | None:
        rows = self.read(OPEN_INCIDENT_OF_GROUP, (group_key, group_key))
        return _incident(rows[0]) if rows else None

    def correlated_incident(self, correlation_key: str) -> Incident | None:
        rows = self.read(CORRELATED_INCIDENT, (correlation_key,))
        return _incident(rows[0]) if rows else None

    def incident(self, run_id: str) -> Incident | None:
        rows = self.read("SELECT * FROM incidents WHERE run_id = ?", (run_id,))
        return _incident(rows[0]) if rows else None

    def incidents(self, state: str | None = None, limit: int = 1000) -> list[Incident]:
        if state:
            rows = self.read(
                "SELECT * FROM incidents WHERE state = ? ORDER BY created_at DESC LIMIT ?", (state, limit)
            )
        else:
            rows = self.read("SELECT * FROM incidents ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_incident(r) for r in rows]

    def alert_counts(self, run_id: str) -> tuple[int, int]:
        """(firing, resolved) alerts the journal knows for the incident's groups."""
        rows = self.read(
            f"SELECT status, COUNT(*) FROM alerts WHERE group_key IN ({GROUP_KEYS_OF_INCIDENT}) "  # noqa: S608
            "GROUP BY status",
            (run_id, run_id),
        )
        counts = {str(r[0]): int(r[1]) for r in rows}
        return counts.get("firing", 0), counts.get("resolved", 0)

    def joined_groups(self, run_id: str) -> list[dict[str, str]]:
        """The group labels of the groups that joined the incident, as they joined."""
        rows = self.read(
            "SELECT group_labels FROM incident_groups WHERE run_id = ? ORDER BY joined_at", (run_id,)
        )
        return [json.loads(r[0]) for r in rows]

    def reevaluation(self, run_id: str) -> Reevaluation | None:
        rows = self.read("SELECT * FROM reevaluations WHERE run_id = ?", (run_id,))
        return reevaluation_row(rows[0]) if rows else None

    def reevaluations(self, incident_run_id: str) -> list[Reevaluation]:
        """The incident's re-evaluations, oldest first."""
        return [reevaluation_row(r) for r in self.read(REEVALUATIONS_OF, (incident_run_id,))]

    def unfinished_reevaluations(self) -> list[Reevaluation]:
        """Re-evaluations with something left to do (a run to create, a gate to answer), oldest first."""
        rows = self.read(
            "SELECT * FROM reevaluations WHERE state IN ('pending', 'triggered') ORDER BY created_at, rowid"
        )
        return [reevaluation_row(r) for r in rows]

    def latest_run(self, incident_run_id: str) -> str:
        """The run an incident's state follows: its newest re-evaluation's once created, else its own."""
        rows = self.read(LATEST_RUN, (incident_run_id,))
        return str(rows[0][0]) if rows else incident_run_id

    def dirty_notes(self) -> list[Incident]:
        rows = self.read("SELECT * FROM incidents WHERE note_dirty > 0 AND state != 'pending'")
        return [_incident(r) for r in rows]

    def deliveries(
        self, outcome: str | None = None, group_key: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        where, args = [], []
        if outcome:
            where.append("outcome = ?")
            args.append(outcome)
        if group_key:
            where.append("group_key = ?")
            args.append(group_key)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.read(
            f"SELECT {_DELIVERY_COLS} FROM deliveries {clause} ORDER BY id DESC LIMIT ?",  # noqa: S608
            (*args, limit),
        )
        return [_delivery(tuple(r)) for r in rows]

    def body(self, delivery_id: int) -> bytes | None:
        rows = self.read("SELECT body FROM deliveries WHERE id = ?", (delivery_id,))
        return bytes(rows[0][0]) if rows else None

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for table, col in (("deliveries", "outcome"), ("incidents", "state"), ("reevaluations", "state")):
            rows = self.read(f"SELECT {col}, COUNT(*) FROM {table} GROUP BY {col}")  # noqa: S608
            out[table] = {str(r[0]): int(r[1]) for r in rows}
        return out

    def prune(self, older_than: float, alerts_older_than: float) -> dict[str, int]:
        """Drop finished history older than the retention; never a pending delivery or incident."""
        with self.transaction() as tx:
            d = tx.c.execute(
                "DELETE FROM deliveries WHERE received_at < ? AND outcome NOT IN ('pending', 'received')",
                (older_than,),
            ).rowcount
            i = tx.c.execute(
                "DELETE FROM incidents WHERE state = 'closed' AND created_at < ?", (older_than,)
            ).rowcount
            o = tx.c.execute("DELETE FROM occurrences WHERE first_seen < ?", (older_than,)).rowcount
            a = tx.c.execute("DELETE FROM alerts WHERE last_seen < ?", (alerts_older_than,)).rowcount
            g = tx.c.execute(
                "DELETE FROM incident_groups WHERE run_id NOT IN (SELECT run_id FROM incidents)"
            ).rowcount  # the joins of pruned incidents
            r = tx.c.execute(
                "DELETE FROM reevaluations WHERE incident_run_id NOT IN (SELECT run_id FROM incidents)"
            ).rowcount
        return {
            "deliveries": d, "incidents": i, "occurrences": o, "alerts": a, "incident_groups": g,
            "reevaluations": r,
        }  # fmt: skip
