"""Triage24's metrics at scrape time: what the journal and the runs' artifacts say, in Prometheus' text
format, named by Prometheus' conventions; a source that cannot be read never fails the scrape; one
reading serves scrapes for ``cache_s``; and what a scrape costs over 200 incidents."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService, Outcome
from diagnostics.telemetry import Telemetry, TelemetrySources
from diagnostics.telemetry.collector import DURATION_BUCKETS
from tests.diagnostics.intake.conftest import Clock, MemoryBackend, body, other_version, real_payload
from tests.diagnostics.telemetry.conftest import T0, Runs

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Tick:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def scrape(telemetry: Telemetry) -> Samples:
    text = telemetry.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def send(service: IntakeService, payload: dict[str, Any]) -> Outcome:
    return service.handle(validate(payload), body(payload))


@pytest.fixture
def telemetry(service: IntakeService, runs: Runs, clock: Clock) -> Iterator[Telemetry]:
    yield Telemetry(
        TelemetrySources(journal=service.journal.path, artifacts=runs.root), cache_s=0, clock=clock
    )


def test_deliveries_pending_since_when_then_replayed_and_the_reconciler_s_record(
    telemetry: Telemetry, service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    backend.down = "metadata DB unreachable"
    first_at = clock.now
    assert send(service, real_payload()).outcome == "pending"
    clock.advance(20)
    assert send(service, other_version(real_payload(), "canary-2")).outcome == "pending"
    clock.advance(20)
    assert send(service, real_payload()).outcome == "pending"  # Alertmanager's retry of the 503
    m = scrape(telemetry)
    assert value(m, "triage24_deliveries_pending") == 3
    assert value(m, "triage24_oldest_pending_delivery_timestamp_seconds") == first_at
    assert value(m, "triage24_deliveries_total", outcome="created") == 0
    assert value(m, "triage24_open_incidents", grade="L3", state="pending") == 2
    assert value(m, "triage24_open_incidents", grade="L1", state="open") == 0
    assert ("triage24_reconciler_last_run_timestamp_seconds", frozenset()) not in m, "never ran: absent"

    backend.down = None
    clock.advance(30)
    service.reconcile()
    m = scrape(telemetry)
    assert value(m, "triage24_deliveries_pending") == 0
    assert value(m, "triage24_oldest_pending_delivery_timestamp_seconds") == 0
    assert value(m, "triage24_deliveries_total", outcome="replayed") == 3
    assert value(m, "triage24_open_incidents", grade="L3", state="open") == 2
    assert value(m, "triage24_reconciler_runs_total", result="ok") == 1
    assert value(m, "triage24_reconciler_runs_total", result="failed") == 0
    assert value(m, "triage24_reconciler_last_run_timestamp_seconds") == clock.now
    assert value(m, "triage24_reconciler_last_success_timestamp_seconds") == clock.now
    assert value(m, "triage24_telemetry_source_up", source="journal") == 1


def test_decisions_by_grade_outcome_and_who_their_times_and_the_rollbacks(
    telemetry: Telemetry, runs: Runs
) -> None:
    runs.add("incident__a__1").incident("L3").decision(at=T0 + 95).rollback(at=T0 + 140)
    runs.add("incident__b__1").incident("L2").decision(at=T0 + 60, needs_human=True).no_rollback().answer(
        "rollback", by="oncall-ann", at=T0 + 700
    )
    runs.add("incident__c__1").incident("L4").fast_decision(at=T0 + 40).decision(at=T0 + 900).rollback(
        at=T0 + 50
    )
    runs.add("incident__d__1").incident("L2").decision(at=T0 + 30, outcome="continue").rollback("dry_run")
    runs.add("incident__e__1").incident(None).no_decision().no_rollback()  # a manual run, undecided
    m = scrape(telemetry)
    assert value(m, "triage24_incidents_total", grade="L3", outcome="rollback", decided_by="policy") == 1
    assert value(m, "triage24_incidents_total", grade="L2", outcome="rollback", decided_by="human") == 1
    assert value(m, "triage24_incidents_total", grade="L4", outcome="rollback", decided_by="fast_path") == 1
    assert value(m, "triage24_incidents_total", grade="L2", outcome="continue", decided_by="policy") == 1
    assert sum(v for (name, _), v in m.items() if name == "triage24_incidents_total") == 4

    def bucket(name: str, grade: str, le: float) -> float:
        return value(m, f"{name}_bucket", grade=grade, le=f"{le:g}" if le != float("inf") else "+Inf")

    decision = "triage24_time_to_decision_seconds"
    assert [bucket(decision, "L2", b) for b in (30.0, 60.0, 600.0, 1800.0)] == [1, 1, 1, 2]
    assert value(m, f"{decision}_count", grade="L2") == 2
    assert value(m, f"{decision}_sum", grade="L2") == pytest.approx(730)
    assert bucket(decision, "L3", 60.0) == 0 and bucket(decision, "L3", 120.0) == 1
    assert bucket(decision, "L4", 30.0) == 0 and bucket(decision, "L4", 60.0) == 1
    assert value(m, f"{decision}_count", grade="L1") == 0, "every grade exported, from zero"
    mitigation = "triage24_time_to_mitigation_seconds"
    assert value(m, f"{mitigation}_sum", grade="L3") == pytest.approx(140)
    assert value(m, f"{mitigation}_sum", grade="L4") == pytest.approx(50)
    assert value(m, f"{mitigation}_count", grade="L2") == 0, "a dry run mitigates nothing"
    assert bucket(mitigation, "L3", float("inf")) == 1
    assert value(m, "triage24_rollbacks_total", method="gateway_weight", result="applied") == 2
    assert value(m, "triage24_rollbacks_total", method="gateway_weight", result="dry_run") == 1
    assert len(DURATION_BUCKETS) + 1 == sum(
        1 for (name, labels) in m if name == f"{decision}_bucket" and ("grade", "L2") in labels
    )


def test_gates_waiting_overdue_by_their_own_timeout_and_the_oldest_wait(
    telemetry: Telemetry, runs: Runs, clock: Clock
) -> None:
    now = clock.now
    runs.add("incident__w__1").incident("L4").decision(
        at=now - 900, needs_human=True, timeout_s=600
    ).no_rollback()
    runs.add("incident__w__2").incident("L2").decision(
        at=now - 60, needs_human=True, timeout_s=1800
    ).no_rollback()
    runs.add("incident__w__3").incident("L2").decision(at=now - 4000, needs_human=True).no_rollback().phase3()
    m = scrape(telemetry)
    assert value(m, "triage24_human_gates_waiting", grade="L4") == 1
    assert value(m, "triage24_human_gates_waiting", grade="L2") == 1
    assert value(m, "triage24_human_gates_overdue", grade="L4") == 1
    assert value(m, "triage24_human_gates_overdue", grade="L2") == 0
    assert value(m, "triage24_human_gate_oldest_wait_seconds") == pytest.approx(900, abs=1)


def test_a_gate_of_a_run_the_journal_knows_has_ended_is_not_waiting(
    telemetry: Telemetry, service: IntakeService, runs: Runs, clock: Clock
) -> None:
    created = send(service, real_payload())
    assert created.outcome == "created" and created.run_id is not None
    runs.add(created.run_id).incident("L3").decision(
        at=clock.now - 4000, needs_human=True, timeout_s=600
    ).no_rollback()
    assert value(scrape(telemetry), "triage24_human_gates_overdue", grade="L3") == 1
    with service.journal.transaction() as tx:
        tx.close_open_incidents(clock.now)
    m = scrape(telemetry)
    assert value(m, "triage24_human_gates_waiting", grade="L3") == 0
    assert value(m, "triage24_human_gates_overdue", grade="L3") == 0


def test_phase_2_failures_from_airflow_and_from_crashed_checks_each_check_from_zero(
    service: IntakeService, runs: Runs
) -> None:
    runs.add("incident__p__1").phase2(crashed=("clip_consistency",), ok=("asr_check",))
    runs.add("incident__p__2").phase2(crashed=("clip_consistency",), ok=("drift",))
    telemetry = Telemetry(
        TelemetrySources(
            journal=service.journal.path,
            artifacts=runs.root,
            phase2_failures=lambda: {"clip_consistency": 1, "drift": 0},
        ),
        cache_s=0,
    )
    m = scrape(telemetry)
    failures = "triage24_phase2_failures_total"
    assert value(m, failures, check="clip_consistency", reason="check_crashed") == 2
    assert value(m, failures, check="asr_check", reason="check_crashed") == 0
    assert value(m, failures, check="clip_consistency", reason="task_failed") == 1
    assert value(m, failures, check="drift", reason="task_failed") == 0
    assert value(m, "triage24_telemetry_source_up", source="airflow") == 1


def test_a_source_that_cannot_be_read_is_down_and_the_others_still_count(
    tmp_path: Path, runs: Runs, caplog: pytest.LogCaptureFixture
) -> None:
    runs.add("incident__x__1").incident("L1").decision(at=T0 + 10)
    bad_journal = tmp_path / "journal.sqlite3"
    bad_journal.write_bytes(b"not a database, " * 100)

    def airflow_down() -> dict[str, int]:
        raise ConnectionError("metadata DB unreachable")

    telemetry = Telemetry(
        TelemetrySources(journal=bad_journal, artifacts=runs.root, phase2_failures=airflow_down), cache_s=0
    )
    m = scrape(telemetry)
    up = {
        dict(labels)["source"]: v for (name, labels), v in m.items() if name == "triage24_telemetry_source_up"
    }
    assert up == {"journal": 0, "airflow": 0, "artifacts": 1}
    assert not any(name.startswith("triage24_deliveries") for name, _ in m), "no journal, no journal metrics"
    assert value(m, "triage24_incidents_total", grade="L1", outcome="rollback", decided_by="policy") == 1
    assert "metadata DB unreachable" in caplog.text


def test_an_intake_that_journaled_nothing_yet_reports_zeros(tmp_path: Path) -> None:
    telemetry = Telemetry(
        TelemetrySources(journal=tmp_path / "none" / "journal.sqlite3", artifacts=tmp_path / "none")
    )
    m = scrape(telemetry)
    assert value(m, "triage24_deliveries_pending") == 0
    assert value(m, "triage24_telemetry_source_up", source="journal") == 1
    assert not (tmp_path / "none").exists(), "a scrape creates nothing"


def test_one_reading_serves_the_scrapes_of_cache_s(service: IntakeService, backend: MemoryBackend) -> None:
    tick = Tick()
    telemetry = Telemetry(TelemetrySources(journal=service.journal.path), cache_s=5.0, monotonic=tick)
    backend.down = "down"
    assert value(scrape(telemetry), "triage24_deliveries_pending") == 0
    send(service, real_payload())
    tick.now += 4.9
    assert value(scrape(telemetry), "triage24_deliveries_pending") == 0, "still the cached reading"
    tick.now += 0.2
    assert value(scrape(telemetry), "triage24_deliveries_pending") == 1


def test_names_follow_prometheus_conventions(telemetry: Telemetry, runs: Runs) -> None:
    runs.add("incident__n__1").phase2(crashed=("drift",))
    text = telemetry.render().decode()
    families = list(text_string_to_metric_families(text))
    assert families and all(f.name.startswith("triage24_") for f in families)
    for f in families:
        if f.type == "counter":
            assert {s.name for s in f.samples} == {f"{f.name}_total"}, f.name
        if f.type == "histogram":
            assert f.name.endswith("_seconds"), f.name
        if re.search(r"time_to|timestamp|_wait_|_read_", f.name):
            assert f.name.endswith("_seconds"), f"{f.name}: a duration or a time is in seconds"
    assert "# TYPE triage24_deliveries_total counter" in text


def test_scrape_cost_over_200_incidents(service: IntakeService, runs: Runs, clock: Clock) -> None:
    """A measurement, printed (run with -s): the journal's 200 incidents and their 200 run folders."""
    for i in range(200):
        payload = other_version(real_payload(), f"v{i}")
        outcome = send(service, payload)
        assert outcome.run_id is not None
        run = runs.add(outcome.run_id).incident(f"L{1 + i % 4}").decision(at=T0 + i, needs_human=i % 3 == 0)
        run.phase2(ok=("asr_check", "drift"))
        if i % 3 == 0:
            run.no_rollback()  # waiting at its gate
        clock.advance(1)
    telemetry = Telemetry(TelemetrySources(journal=service.journal.path, artifacts=runs.root), cache_s=0)
    started = time.perf_counter()
    first = scrape(telemetry)
    cold = time.perf_counter() - started
    warm = []
    for _ in range(5):
        started = time.perf_counter()
        scrape(telemetry)
        warm.append(time.perf_counter() - started)
    assert sum(v for (name, _), v in first.items() if name == "triage24_incidents_total") == 200 - 67
    assert sum(v for (name, _), v in first.items() if name == "triage24_human_gates_waiting") == 67
    print(
        f"\nscrape of 200 incidents: cold {cold * 1000:.0f} ms (every folder read), "
        f"warm {min(warm) * 1000:.0f}-{max(warm) * 1000:.0f} ms (stat only); "
        f"reading {value(first, 'triage24_telemetry_read_seconds') * 1000:.0f} ms of the cold one"
    )
