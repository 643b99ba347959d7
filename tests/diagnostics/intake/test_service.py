"""The intake's decisions on an in-memory Airflow: one incident per alert group at a time, duplicates
create nothing, resolved alerts annotate, L1 aggregates, escalation, nothing lost while Airflow is down,
and a durable journal."""

from __future__ import annotations

import json
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.intake.journal import Journal, JournalError
from diagnostics.intake.members import incident_alerts
from diagnostics.intake.payload import validate
from diagnostics.intake.service import CONF_SCHEMA, IntakeService, Outcome
from diagnostics.runbooks.grading import Correlation
from tests.diagnostics.intake.conftest import Clock, MemoryBackend, alert, body, delivery, real_payload

CANARY = {"alertname": "CanaryGate5xx", "target": "testbed", "version": "canary"}


def send(service: IntakeService, payload: dict[str, Any]) -> Outcome:
    return service.handle(validate(payload), body(payload))


def canary(fp: str, starts: float, channel: str = "image", **kw: Any) -> dict[str, Any]:
    return alert(fp, starts, **{**CANARY, "channel": channel, "severity": "critical", **kw})


def test_first_delivery_creates_one_run_with_the_normalised_group_grade_and_note(
    service: IntakeService, backend: MemoryBackend
) -> None:
    out = send(service, real_payload("firing"))
    assert out.outcome == "created" and out.http_status == 201
    assert (out.grade, out.rule, out.escalated) == ("L3", "canary_gate_breach", False)
    (run,) = backend.runs.values()
    assert run.run_id == out.run_id and run.dag_id == "incident_response"
    conf = run.conf
    assert conf["schema"] == CONF_SCHEMA and conf["source"] == "alertmanager"
    assert (conf["grade"], conf["grade_rule"], conf["escalated"]) == ("L3", "canary_gate_breach", False)
    assert conf["escalation_rule"] == "L3.sustained" and "2 service(s) (<= 2)" in conf["escalation_reason"]
    assert (conf["target"], conf["version"]) == ("testbed", "canary")
    assert conf["fingerprints"] == ["0df63d4b74dc1f30", "29d52bc6146ee80d"]
    assert [a["labels"]["channel"] for a in conf["alerts"]] == ["audio", "image"]
    assert conf["delivery_id"] == out.delivery_id and conf["group_labels"] == CANARY
    assert "**L3**" in run.note and "canary_gate_breach" in run.note and "not escalated" in run.note
    assert len(run.note) <= 1000
    (d,) = service.journal.deliveries()
    assert (d.outcome, d.run_id, d.grade) == ("created", out.run_id, "L3")
    assert service.journal.body(d.id) == body(real_payload("firing"))


def test_a_redelivery_is_a_duplicate_and_creates_nothing(
    service: IntakeService, backend: MemoryBackend
) -> None:
    first = send(service, real_payload())
    again = send(service, real_payload())
    assert (again.outcome, again.http_status, again.run_id) == ("duplicate", 200, first.run_id)
    assert len(backend.runs) == 1
    assert [d.outcome for d in service.journal.deliveries()] == ["duplicate", "created"]


def test_two_alerts_seconds_apart_open_one_incident(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    t0 = clock.now - 10
    a = send(service, delivery([canary("a1", t0)], CANARY))
    clock.advance(2)
    b = send(service, delivery([canary("a1", t0), canary("b2", t0 + 2, "audio")], CANARY))
    assert a.outcome == "created"
    assert (b.outcome, b.run_id) == ("update", a.run_id)
    assert b.detail == "1 new firing alert(s)"
    assert len(backend.runs) == 1
    # The note was rewritten with the update (2 s apart = the storm throttle).
    assert "updates 1" in backend.runs[a.run_id or ""].note


def test_an_incident_whose_run_ended_stays_open_while_its_alerts_fire(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    """A run that ends (at "hold": the run succeeds) does not close the incident while the fault
    persists: a repeat, a new alert of the group and the same alert firing again all update it."""
    t0 = clock.now - 10
    first = send(service, delivery([canary("a1", t0)], CANARY))
    backend.runs[first.run_id or ""].state = "success"
    clock.advance(5)
    repeat = send(service, delivery([canary("a1", t0, summary="x")], CANARY))
    assert (repeat.outcome, repeat.run_id) == ("duplicate", first.run_id)
    incident = service.journal.incident(first.run_id or "")
    assert incident is not None and (incident.state, incident.run_state) == ("open", "success")
    more = send(service, delivery([canary("a1", t0), canary("c3", clock.now)], CANARY))
    assert (more.outcome, more.run_id, more.detail) == ("update", first.run_id, "1 new firing alert(s)")
    clock.advance(60)
    refire = send(service, delivery([canary("a1", clock.now)], CANARY))  # a new episode (startsAt)
    assert (refire.outcome, refire.run_id) == ("update", first.run_id)
    assert len(backend.runs) == 1
    note = backend.runs[first.run_id or ""].note
    assert "run success; the incident stays open while its alerts fire" in note


def test_an_incident_closes_once_its_run_ended_and_its_alerts_are_quiet(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    t0 = clock.now - 10
    first = send(service, delivery([canary("a1", t0)], CANARY))
    run_id = first.run_id or ""
    clock.advance(60)
    assert service.maintain() == ([], 0), "running"
    backend.runs[run_id].state = "success"
    clock.advance(60)
    assert service.maintain()[0] == [], "its alert still fires"
    send(service, delivery([canary("a1", t0, status="resolved", ends=clock.now)], CANARY))
    quiet = service.grader.quiet_s
    assert quiet == 1800
    clock.advance(quiet - 1)
    assert service.maintain()[0] == [], "resolved, but not quiet for quiet_s yet"
    clock.advance(2)
    assert service.maintain()[0] == [run_id]
    closed = service.journal.incident(run_id)
    assert closed is not None and (closed.state, closed.run_state) == ("closed", "success")
    # Closed: the alert firing again is a new incident.
    again = send(service, delivery([canary("a1", clock.now)], CANARY))
    assert again.outcome == "created" and again.run_id != run_id


def test_one_fault_on_stable_is_one_incident_not_one_per_run(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    """Issue 19: one fault on stable opened four incidents in eight minutes (stable's 5xx twice, each
    as soon as the previous run had ended at "hold", and canary latency twice, from the load of those
    runs). Now: one incident per service version for as long as its alerts fire."""
    stable = {"target": "testbed", "version": "stable"}
    canary_group = {"target": "testbed", "version": "canary"}

    def burst(starts: float) -> dict[str, Any]:
        labels = {**stable, "channel": "text", "severity": "high", "problem": "http_5xx_burst"}
        return {**alert("5a", starts, **labels), "labels": {"alertname": "Http5xxBurst", **labels}}

    def latency(starts: float) -> dict[str, Any]:
        return alert("1a", starts, channel="image", severity="warning", **canary_group)

    outcomes = []
    t0 = clock.now
    outcomes.append(send(service, delivery([burst(t0)], stable)))
    clock.advance(60)
    outcomes.append(send(service, delivery([latency(clock.now)], canary_group)))
    for run in list(backend.runs.values()):
        run.state = "success"  # both runs ended at "hold"
    clock.advance(120)
    service.maintain()
    outcomes.append(send(service, delivery([burst(clock.now)], stable)))  # 5xx fires again
    clock.advance(60)
    outcomes.append(send(service, delivery([latency(clock.now)], canary_group)))  # the load again
    clock.advance(240)
    service.maintain()
    assert [o.outcome for o in outcomes] == ["created", "created", "update", "update"]
    assert len(backend.runs) == 2
    assert service.journal.counts()["incidents"] == {"open": 2}


def test_the_run_state_is_cached_between_deliveries(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    t0 = clock.now
    send(service, delivery([canary("a1", t0)], CANARY))
    for i in range(20):
        send(service, delivery([canary("a1", t0), canary(f"{i + 16:x}", t0)], CANARY))
    assert backend.calls.count("run_state") == 0, "known running at creation; the clock did not move"
    clock.advance(service.settings.state_cache_s + 0.5)
    send(service, delivery([canary("ff", t0)], CANARY))
    assert backend.calls.count("run_state") == 1


def test_alerts_taken_on_after_the_run_finished_stay_on_the_open_incident(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    """The state is cached: an alert can join an incident whose run has just finished. The incident
    stays open with it (its alerts fire), so nothing is lost in a finished incident."""
    t0 = clock.now
    first = send(service, delivery([canary("a1", t0)], CANARY))
    clock.advance(0.5)
    backend.runs[first.run_id or ""].state = "success"  # the run finishes ...
    late = send(service, delivery([canary("a1", t0), canary("b2", clock.now)], CANARY))
    assert (late.outcome, late.run_id) == ("update", first.run_id), "... but the cache still says running"
    clock.advance(service.settings.state_cache_s + 0.5)
    closed, _ = service.maintain()
    assert closed == []
    resend = send(service, delivery([canary("a1", t0), canary("b2", clock.now - 2.5)], CANARY))
    assert (resend.outcome, resend.run_id) == ("duplicate", first.run_id)
    alerts = incident_alerts(service.journal, [first.run_id or ""])[first.run_id or ""]
    assert [(a.fingerprint, a.status) for a in alerts.alerts] == [("a1", "firing"), ("b2", "firing")]


def test_the_maintainer_thread_keeps_notes_and_states_off_the_request_path(
    settings: IntakeSettings, backend: MemoryBackend, tmp_path: Path
) -> None:
    import time

    fast = settings.model_copy(update={"note_interval_s": 0.2, "state_cache_s": 0.2})
    grading = load_grading(settings.grading_path())
    at_once = grading.model_copy(update={"correlation": Correlation(quiet_s=0)})  # close when quiet
    svc = IntakeService(Journal(tmp_path / "bg.sqlite3"), backend, Grader(at_once), fast, inline=False)
    svc.start()
    try:
        t0 = time.time() - 5
        first = send(svc, delivery([canary("a1", t0)], CANARY))
        calls = len(backend.calls)
        update = send(svc, delivery([canary("a1", t0), canary("b2", t0)], CANARY))
        assert update.outcome == "update"
        deadline = time.monotonic() + 10
        while "updates 1" not in backend.runs[first.run_id or ""].note and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "updates 1" in backend.runs[first.run_id or ""].note, "the maintainer wrote the note"
        assert "set_note" in backend.calls[calls:]
        backend.runs[first.run_id or ""].state = "failed"
        resolved = [canary(fp, t0, status="resolved", ends=time.time()) for fp in ("a1", "b2")]
        send(svc, delivery(resolved, CANARY))
        while svc.journal.incident(first.run_id or "").state != "closed" and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.05)
        assert svc.journal.incident(first.run_id or "").state == "closed"  # type: ignore[union-attr]
    finally:
        svc.stop()


def test_resolved_annotates_the_incident_and_never_starts_one(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    lonely = send(service, real_payload("resolved"))
    assert (lonely.outcome, lonely.run_id) == ("resolved", None)
    assert backend.runs == {}
    t0 = clock.now - 60
    opened = send(service, delivery([canary("a1", t0)], CANARY))
    clock.advance(30)
    done = send(service, delivery([canary("a1", t0, status="resolved", ends=clock.now)], CANARY))
    assert (done.outcome, done.run_id) == ("resolved", opened.run_id)
    assert len(backend.runs) == 1
    note = backend.runs[opened.run_id or ""].note
    # The group (same group key as the recorded payload) knows both resolved alerts.
    assert "alerts firing 0, resolved 2" in note and "all alerts resolved at" in note


def test_a_partly_resolved_delivery_is_an_update(service: IntakeService, backend: MemoryBackend) -> None:
    created = send(service, real_payload("firing"))
    mixed = send(service, real_payload("partly-resolved"))
    assert (mixed.outcome, mixed.run_id, mixed.detail) == ("update", created.run_id, "1 alert(s) resolved")
    assert "alerts firing 1, resolved 1" in backend.runs[created.run_id or ""].note


def test_l1_is_aggregated_until_it_fires_5_times_within_an_hour(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    group = {"alertname": "InstanceCpuSpike", "target": "testbed"}

    def spike(n: int) -> Outcome:
        return send(service, delivery([alert("c1", clock.now, severity="info", **group)], group))

    old = spike(0)  # more than an hour before the others: does not count
    assert old.outcome == "recorded" and old.grade == "L1"
    clock.advance(3700)
    outcomes = []
    for i in range(5):
        outcomes.append(spike(i + 1))
        clock.advance(300)  # a new firing episode (new startsAt) every 5 minutes
    assert [o.outcome for o in outcomes] == ["recorded"] * 4 + ["created"]
    assert "fired 4 time(s) within 3600 s (< 5" in outcomes[3].escalation_reason
    run = backend.runs[outcomes[4].run_id or ""]
    assert (run.conf["grade"], run.conf["escalated"], run.conf["escalation_rule"]) == (
        "L1",
        True,
        "L1.repeats",
    )
    assert "**escalated** (L1.repeats)" in run.note


def test_l3_escalates_on_an_update_once_it_lasts_and_spreads(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    t0 = clock.now - 5
    first = send(service, delivery([canary("a1", t0, "image")], CANARY))
    assert first.outcome == "created" and not first.escalated
    clock.advance(200)
    two = send(service, delivery([canary("a1", t0, "image"), canary("b2", t0, "audio")], CANARY))
    assert two.outcome == "update" and not two.escalated
    assert two.escalation_reason == "firing for 205 s (> 180 s) on 2 service(s) (<= 2)"
    # Another group's firing alert on a third service counts as impact too.
    other = {"alertname": "LatencySLABreach", "target": "testbed", "version": "stable"}
    send(service, delivery([alert("c3", t0, channel="router", severity="warning", **other)], other))
    clock.advance(1)
    three = send(
        service, delivery([canary("a1", t0, "image"), canary("b2", t0, "audio"), canary("d4", t0)], CANARY)
    )
    assert three.outcome == "update" and three.escalated
    assert "escalated: firing for 206 s (> 180 s) on 3 service(s) (> 2)" in three.detail
    incident = service.journal.incident(first.run_id or "")
    assert incident is not None and incident.escalated and incident.escalation_rule == "L3.sustained"
    assert "**escalated** (L3.sustained)" in backend.runs[first.run_id or ""].note


def test_l4_escalates_at_once(service: IntakeService, backend: MemoryBackend, clock: Clock) -> None:
    group = {"alertname": "ModelNotLoaded", "target": "testbed", "version": "canary"}
    out = send(
        service, delivery([alert("e1", clock.now, impact="core_path", severity="critical", **group)], group)
    )
    assert (out.outcome, out.grade, out.rule, out.escalated) == ("created", "L4", "core_path_failing", True)
    assert backend.runs[out.run_id or ""].conf["escalation_rule"] == "L4.immediate"


def test_a_higher_grade_joining_raises_the_incident(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    group = {"alertname": "Mixed", "target": "testbed"}
    first = send(service, delivery([alert("a1", clock.now, severity="warning", **group)], group))
    assert first.grade == "L2"
    clock.advance(3)
    worse = send(
        service,
        delivery(
            [
                alert("a1", clock.now - 3, severity="warning", **group),
                alert("b2", clock.now, impact="core_path", **group),
            ],
            group,
        ),
    )
    assert (worse.outcome, worse.grade, worse.rule, worse.escalated) == (
        "update",
        "L4",
        "core_path_failing",
        True,
    )
    assert "grade raised L2 -> L4" in worse.detail
    assert "**L4**" in backend.runs[first.run_id or ""].note


def test_nothing_is_lost_while_airflow_is_down(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    backend.down = "metadata DB unreachable"
    first = send(service, real_payload())
    assert (first.outcome, first.http_status) == ("pending", 503)
    assert "run not created: metadata DB unreachable" in first.detail
    retry = send(service, real_payload())  # Alertmanager retries the 503
    assert retry.outcome == "pending" and retry.run_id == first.run_id
    update = send(service, real_payload("partly-resolved"))
    assert update.outcome == "pending" and "incident not created yet" in update.detail
    assert backend.runs == {}
    assert service.journal.incident(first.run_id or "").state == "pending"  # type: ignore[union-attr]
    report = service.reconcile()
    assert report.still_pending == {first.run_id: "metadata DB unreachable"}

    backend.down = None
    report = service.reconcile()
    assert report.replayed == [first.run_id] and report.still_pending == {}
    assert list(backend.runs) == [first.run_id]
    assert backend.runs[first.run_id or ""].conf["delivery_id"] == first.delivery_id
    assert {d.outcome for d in service.journal.deliveries()} == {"replayed"}
    incident = service.journal.incident(first.run_id or "")
    assert (
        incident is not None and incident.state == "open" and incident.attempts == 5
    )  # 3 deliveries, 2 reconciles
    # After the replay the same body is a plain duplicate.
    assert send(service, real_payload()).outcome == "duplicate"


def test_a_retry_after_recovery_creates_the_run_itself(
    service: IntakeService, backend: MemoryBackend
) -> None:
    backend.down = "locked"
    assert send(service, real_payload()).outcome == "pending"
    backend.down = None
    again = send(service, real_payload())
    assert again.outcome == "created" and len(backend.runs) == 1
    assert [d.outcome for d in service.journal.deliveries()] == ["created", "replayed"]


def test_a_missing_dag_keeps_deliveries_pending_until_it_is_deployed(
    service: IntakeService, backend: MemoryBackend
) -> None:
    backend.dags = set()
    out = send(service, real_payload())
    assert out.outcome == "pending" and "is not loaded" in out.detail
    assert service.health()["status"] == "degraded"
    backend.dags = {"incident_response"}
    assert service.reconcile().replayed == [out.run_id]
    assert service.health()["status"] == "ok"


def test_notes_that_could_not_be_written_are_flushed_by_the_reconciler(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    t0 = clock.now
    first = send(service, delivery([canary("a1", t0)], CANARY))
    backend.down = "db locked"
    clock.advance(3)
    assert send(service, delivery([canary("a1", t0), canary("b2", t0)], CANARY)).outcome == "update"
    assert "updates 0" in backend.runs[first.run_id or ""].note
    backend.down = None
    assert service.reconcile().notes_written == 1
    assert "updates 1" in backend.runs[first.run_id or ""].note


def test_a_run_that_exists_in_airflow_but_not_in_the_journal_is_not_created_twice(
    settings: IntakeSettings, backend: MemoryBackend, clock: Clock, tmp_path: Path
) -> None:
    grader = Grader(load_grading(settings.grading_path()))
    one = IntakeService(Journal(tmp_path / "a.sqlite3"), backend, grader, settings, clock=clock)
    two = IntakeService(Journal(tmp_path / "b.sqlite3"), backend, grader, settings, clock=clock)
    assert send(one, real_payload()).outcome == "created"
    lost = send(two, real_payload())  # e.g. a restored, older journal
    assert lost.outcome == "duplicate" and "existed in Airflow already" in lost.detail
    assert len(backend.runs) == 1


def test_concurrent_deliveries_of_three_groups_make_exactly_three_runs(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    groups = [{**CANARY, "version": f"v{g}"} for g in range(3)]

    def post(i: int) -> Outcome:
        g = groups[i % 3]
        return send(service, delivery([alert(f"{i + 1:04x}", clock.now, severity="critical", **g)], g))

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(post, range(300)))
    assert len(backend.runs) == 3
    assert sorted(o.outcome for o in outcomes if o.outcome != "update") == ["created"] * 3
    assert len(service.journal.deliveries(limit=1000)) == 300
    assert service.journal.counts()["incidents"] == {"open": 3}


def test_the_journal_is_durable_private_and_survives_a_reopen(
    settings: IntakeSettings, tmp_path: Path
) -> None:
    path = settings.journal_path()
    journal = Journal(path)
    with journal.transaction() as tx:
        tx.insert_delivery(1.0, b"{}", "00", "g", "firing", 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert journal._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync at every commit
    journal.close()
    # Another process (a plain sqlite3 connection) sees the committed entry.
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT group_key, outcome FROM deliveries").fetchall() == [("g", "received")]


def test_one_open_incident_per_group_is_enforced_by_the_database(settings: IntakeSettings) -> None:
    journal = Journal(settings.journal_path())
    kw: dict[str, Any] = dict(
        dag_id="d", group_key="g", now=1.0, grade="L2", rule="r", escalated=False, escalation_rule="x",
        escalation_reason="y", conf={},
    )  # fmt: skip
    with journal.transaction() as tx:
        tx.insert_incident(run_id="r1", **kw)
    with (
        pytest.raises(JournalError, match=r"UNIQUE constraint failed: incidents\.group_key"),
        journal.transaction() as tx,
    ):
        tx.insert_incident(run_id="r2", **kw)
    with journal.transaction() as tx:  # once the first is closed, the group may open another
        tx.update_incident("r1", state="closed")
        tx.insert_incident(run_id="r2", **kw)


def test_prune_keeps_pending_work(service: IntakeService, backend: MemoryBackend, clock: Clock) -> None:
    backend.down = "down"
    send(service, real_payload())
    backend.down = None
    t0 = clock.now
    send(service, delivery([canary("a1", t0, version="v2")], {**CANARY, "version": "v2"}))
    backend.down = "down"
    clock.advance(31 * 86_400)
    report = service.reconcile()
    assert report.pruned["deliveries"] == 1, "the finished delivery is pruned"
    assert [d.outcome for d in service.journal.deliveries()] == ["pending"], "pending work is kept"


def test_conf_is_json_serialisable_and_carries_unicode(
    service: IntakeService, backend: MemoryBackend
) -> None:
    data = real_payload()
    data["alerts"][0]["annotations"]["summary"] = "图像通道 p99 延迟 1.5 s > 1.2 s ✓"
    send(service, data)
    (run,) = backend.runs.values()
    assert json.loads(json.dumps(run.conf))["alerts"][0]["annotations"]["summary"].startswith("图像通道")
