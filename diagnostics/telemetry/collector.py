"""Triage24's own metrics, computed at scrape time from durable state.

The intake journal (:mod:`~diagnostics.telemetry.journal_state`), the runs' artifacts
(:mod:`~diagnostics.telemetry.runs`) and, where the plugin supplies it, Airflow's record of failed
phase-2 tasks: every api-server replica that reads the same state reports the same numbers, and a
restart loses none. Counters are totals over the state still kept (the journal's and the artifacts'
retention); a pruned entry leaves them, which Prometheus reads as a counter reset.

One reading answers every scrape for ``cache_s`` seconds. A source that cannot be read leaves its
metrics out and says so in ``triage24_telemetry_source_up{source}``: a scrape never fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

from diagnostics.intake.reconciler_runs import RESULTS
from diagnostics.telemetry.journal_state import (
    DELIVERY_OUTCOMES,
    GRADES,
    OPEN_STATES,
    PENDING_OUTCOMES,
    JournalState,
    JournalUnreadable,
    read_journal,
)
from diagnostics.telemetry.runs import RunCache, RunFacts, grade_label, name_label

log = logging.getLogger("triage24.telemetry")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # Prometheus' text format, read by every Prometheus release
# Alert to decision, alert to rollback: seconds (the fast path decides in about a minute, a human gate
# waits up to its timeout, phase 2 may take hours; the SOP ends at 24 h).
DURATION_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0)
Phase2Failures = Callable[[], Mapping[str, int]]


@dataclass(frozen=True)
class TelemetrySources:
    """Where the state is. ``journal``: the intake journal's file; ``artifacts``: the artifact root;
    ``phase2_failures``: failed phase-2 tasks by check (the plugin reads Airflow's metadata DB)."""

    journal: Path | None = None
    artifacts: Path | None = None
    phase2_failures: Phase2Failures | None = None


@dataclass(frozen=True)
class Snapshot:
    """One reading of every source; None: that source could not be read."""

    at: float
    journal: JournalState | None
    runs: list[RunFacts] | None
    phase2_failures: Mapping[str, int] | None
    up: dict[str, bool] = field(default_factory=dict)
    read_s: float = 0.0


class Telemetry:
    """The metrics of one intake app: a fresh :class:`CollectorRegistry` holding one collector."""

    def __init__(
        self,
        sources: TelemetrySources,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources = sources
        self.cache_s = cache_s
        self.clock = clock
        self.monotonic = monotonic
        self._runs = RunCache(sources.artifacts) if sources.artifacts is not None else None
        self._cached: tuple[float, Snapshot] | None = None
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def snapshot(self) -> Snapshot:
        """The current reading (re-read once ``cache_s`` has passed; concurrent scrapes share one)."""
        with self._lock:
            if self._cached is not None and self.monotonic() - self._cached[0] < self.cache_s:
                return self._cached[1]
            started = self.monotonic()
            snap = self._read()
            snap = replace(snap, read_s=self.monotonic() - started)
            self._cached = (self.monotonic(), snap)
            return snap

    def render(self) -> bytes:
        """The exposition (Prometheus text format, :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def _read(self) -> Snapshot:
        up: dict[str, bool] = {}
        runs: list[RunFacts] | None = None
        if self._runs is not None:
            try:
                runs = self._runs.read()
                up["artifacts"] = True
            except OSError as exc:
                log.warning("metrics: artifact root unreadable: %s", exc)
                up["artifacts"] = False
        journal: JournalState | None = None
        if self.sources.journal is not None:
            waiting = [r.run_id for r in runs or () if r.gate is not None]
            try:
                journal = read_journal(self.sources.journal, ask_ended=waiting)
                up["journal"] = True
            except JournalUnreadable as exc:
                log.warning("metrics: %s", exc)
                up["journal"] = False
        failures: Mapping[str, int] | None = None
        if self.sources.phase2_failures is not None:
            try:
                failures = dict(self.sources.phase2_failures())
                up["airflow"] = True
            except Exception as exc:  # Airflow's DB down: the other metrics still count
                log.warning("metrics: phase-2 task failures unreadable: %s: %s", type(exc).__name__, exc)
                up["airflow"] = False
        return Snapshot(at=self.clock(), journal=journal, runs=runs, phase2_failures=failures, up=up)


class _Collector:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        snap = self.telemetry.snapshot()
        if snap.journal is not None:
            yield from journal_metrics(snap.journal)
        if snap.runs is not None:
            ended = snap.journal.ended_runs if snap.journal is not None else frozenset()
            yield from run_metrics(snap.runs, snap.at, ended)
        yield from phase2_metrics(snap.runs, snap.phase2_failures)
        up = GaugeMetricFamily(
            "triage24_telemetry_source_up",
            "Whether the source was readable at the last reading",
            labels=["source"],
        )
        for source, ok in sorted(snap.up.items()):
            up.add_metric([source], 1.0 if ok else 0.0)
        yield up
        yield GaugeMetricFamily(
            "triage24_telemetry_read_seconds", "Time the last reading of the sources took", value=snap.read_s
        )


# --- the metric families ----------------------------------------------------------------------------


def journal_metrics(j: JournalState) -> Iterator[Metric]:
    deliveries = CounterMetricFamily(
        "triage24_deliveries",
        "Alertmanager deliveries journaled by the intake, by final outcome (a pending one counts once "
        "its run exists, as replayed)",
        labels=["outcome"],
    )
    final = {o: n for o, n in j.deliveries.items() if o not in PENDING_OUTCOMES}
    for outcome in sorted({*DELIVERY_OUTCOMES, *final}):
        deliveries.add_metric([name_label(outcome)], float(final.get(outcome, 0)))
    yield deliveries
    yield GaugeMetricFamily(
        "triage24_deliveries_pending",
        "Deliveries journaled whose incident run could not be created yet (answered 503; retried)",
        value=float(j.pending),
    )
    yield GaugeMetricFamily(
        "triage24_oldest_pending_delivery_timestamp_seconds",
        "When the oldest pending delivery was received (unix seconds; 0: none pending)",
        value=j.oldest_pending_at or 0.0,
    )
    incidents = GaugeMetricFamily(
        "triage24_open_incidents",
        "Incidents not closed, by grade and state (pending: no run yet; open: run created)",
        labels=["grade", "state"],
    )
    counts: Counter[tuple[str, str]] = Counter()
    for (grade, state), n in j.open_incidents.items():
        counts[(grade_label(grade), state)] += n
    for key in sorted({*((g, s) for g in GRADES for s in OPEN_STATES), *counts}):
        incidents.add_metric(list(key), float(counts.get(key, 0)))
    yield incidents
    rec = j.reconciler
    runs = CounterMetricFamily(
        "triage24_reconciler_runs",
        "Reconciler passes by result (ok; degraded: work left pending; failed: the pass raised)",
        labels=["result"],
    )
    for result in RESULTS:
        runs.add_metric([result], float(rec.runs.get(result, 0)))
    yield runs
    # Absent until the first pass: "never ran" is a fresh intake, not a stopped reconciler.
    if rec.last_run_at > 0:
        yield GaugeMetricFamily(
            "triage24_reconciler_last_run_timestamp_seconds", "When a reconciler pass last ran",
            value=rec.last_run_at,
        )  # fmt: skip
    if rec.last_success_at > 0:
        yield GaugeMetricFamily(
            "triage24_reconciler_last_success_timestamp_seconds",
            "When a reconciler pass last left nothing pending",
            value=rec.last_success_at,
        )


def histogram(
    name: str, documentation: str, label: str, samples: Iterable[tuple[str, float]], keys: Sequence[str] = ()
) -> HistogramMetricFamily:
    """Cumulative buckets (:data:`DURATION_BUCKETS`, +Inf) and sum of ``samples`` (label value, seconds),
    one series per label value (``keys`` are exported even when empty)."""
    by_key: dict[str, list[float]] = {k: [] for k in keys}
    for key, value in samples:
        by_key.setdefault(key, []).append(value)
    family = HistogramMetricFamily(name, documentation, labels=[label])
    for key in sorted(by_key):
        values = by_key[key]
        buckets = [(f"{b:g}", float(sum(v <= b for v in values))) for b in DURATION_BUCKETS]
        family.add_metric([key], [*buckets, ("+Inf", float(len(values)))], sum_value=float(sum(values)))
    return family


def run_metrics(runs: Sequence[RunFacts], now: float, ended: frozenset[str]) -> Iterator[Metric]:
    decided = CounterMetricFamily(
        "triage24_incidents",
        "Incident runs decided, by grade, outcome (the decision's, or the human gate's choice) and who "
        "decided (fast_path, policy, human, timeout); a re-evaluation run decides again",
        labels=["grade", "outcome", "decided_by"],
    )
    for (grade, outcome, by), n in sorted(
        Counter((r.grade, r.decided.outcome, r.decided.by) for r in runs if r.decided).items()
    ):
        decided.add_metric([grade, outcome, by], float(n))
    yield decided
    yield histogram(
        "triage24_time_to_decision_seconds",
        "From the alert's start to the incident run's decision",
        "grade",
        ((r.grade, t) for r in runs if (t := r.time_to_decision_s) is not None),
        GRADES,
    )
    yield histogram(
        "triage24_time_to_mitigation_seconds",
        "From the alert's start to the rollback in effect",
        "grade",
        ((r.grade, t) for r in runs if (t := r.time_to_mitigation_s) is not None),
        GRADES,
    )
    rollbacks = CounterMetricFamily(
        "triage24_rollbacks", "Rollbacks attempted, by method and result", labels=["method", "result"]
    )
    for (method, result), n in sorted(
        Counter((r.rollback.method, r.rollback.result) for r in runs if r.rollback).items()
    ):
        rollbacks.add_metric([method, result], float(n))
    yield rollbacks
    yield from gate_metrics([r for r in runs if r.gate is not None and r.run_id not in ended], now)


def gate_metrics(waiting: Sequence[RunFacts], now: float) -> Iterator[Metric]:
    count = GaugeMetricFamily(
        "triage24_human_gates_waiting", "Human gates waiting for an answer, by grade", labels=["grade"]
    )
    overdue = GaugeMetricFamily(
        "triage24_human_gates_overdue",
        "Human gates waiting longer than their own timeout (the timeout's default should have applied)",
        labels=["grade"],
    )
    waits: Counter[str] = Counter()
    late: Counter[str] = Counter()
    oldest = 0.0
    for r in waiting:
        assert r.gate is not None
        age = max(0.0, now - r.gate.asked_at)
        oldest = max(oldest, age)
        waits[r.grade] += 1
        if r.gate.timeout_s is not None and age > r.gate.timeout_s:
            late[r.grade] += 1
    for grade in sorted({*GRADES, *waits}):
        count.add_metric([grade], float(waits[grade]))
        overdue.add_metric([grade], float(late[grade]))
    yield count
    yield overdue
    yield GaugeMetricFamily(
        "triage24_human_gate_oldest_wait_seconds", "How long the longest-waiting human gate has waited",
        value=oldest,
    )  # fmt: skip


def phase2_metrics(runs: Sequence[RunFacts] | None, tasks: Mapping[str, int] | None) -> Iterator[Metric]:
    """Failed phase-2 tasks (Airflow's record, when supplied: every phase-2 task it ran, with its
    failures, often 0) and checks that crashed inside a task that itself succeeded (their stored result
    says so), by check."""
    if runs is None and tasks is None:
        return
    family = CounterMetricFamily(
        "triage24_phase2_failures",
        "Phase-2 (deep diagnosis) failures by check: task_failed (the Airflow task failed) or "
        "check_crashed (the check raised; its result says so)",
        labels=["check", "reason"],
    )
    # Every check seen is exported, from zero, so increase() sees its first failure.
    counts: Counter[tuple[str, str]] = Counter()
    for check, n in (tasks or {}).items():
        counts[(name_label(check), "task_failed")] += int(n)
    for r in runs or ():
        for check in r.phase2_checks:
            counts[(check, "check_crashed")] += 0
        for check in r.crashed_checks:
            counts[(check, "check_crashed")] += 1
    for (check, reason), n in sorted(counts.items()):
        family.add_metric([check, reason], float(n))
    yield family
