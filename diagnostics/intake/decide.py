"""The intake's decisions, as pure functions: no journal, no Airflow, no clock.

One delivery goes ``incoming`` (what the payload says) -> the service reads a :class:`Snapshot` of
the journal (:func:`escalation_lookup` says which escalation counts to read with it) -> :func:`decide`
-> a :class:`Decision`: the :class:`Plan` (the answer and what to do after the commit) and the
:class:`DeliveryRecord` to journal, in the delivery's one transaction.

- no firing alert -> ``resolved``: annotates the group's incident, never starts one (``duplicate``
  when the journal already knew them resolved);
- the group has an open incident (opened or joined; open while its alerts fire, see :func:`closes`)
  -> ``update`` on it when the delivery brings news (a new firing alert, a resolved one, a higher
  grade, an escalation), else ``duplicate``; news that raises the grade or carries a hard canary-gate
  alert also journals a re-evaluation (:mod:`diagnostics.intake.reevaluate`), started after the commit;
- every firing alert already covered by an earlier incident -> ``duplicate``;
- another group's open incident has the delivery's correlation key and a delivery within the rule's
  window (grading.yaml ``correlation``) -> ``joined``: an update of that incident that records the
  group, no new run;
- a grade that does not start incidents (L1) and has not escalated -> ``recorded`` (aggregated);
- otherwise a new incident, journaled ``pending`` until its run exists (:func:`after_creation`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from diagnostics.intake import reevaluate
from diagnostics.intake.grading import CorrelationKey, Escalation, EscalationFacts, Graded, Grader
from diagnostics.intake.payload import WebhookPayload, iso
from diagnostics.intake.records import (
    FINISHED_RUN_STATES,
    AlertRow,
    DeliveryRecord,
    EscalationLookup,
    GroupJoin,
    GroupLookup,
    Incident,
    IncidentWrite,
    NewIncident,
    NewReevaluation,
    Occurrence,
    Snapshot,
)
from diagnostics.intake.runid import incident_run_id
from diagnostics.runbooks.grading import GradeId, Repeats, Sustained

ConfFor = Callable[[Graded, Escalation], dict[str, Any]]  # a new run's conf (an incident, a re-evaluation)


@dataclass(frozen=True)
class Incoming:
    """What one delivery says, computed once from the payload."""

    group_key: str
    status: str
    body: bytes
    body_sha256: str
    received_at: float
    alert_count: int
    graded: Graded  # the group's grade: of its firing alerts (of all when none fires)
    alerts: tuple[AlertRow, ...]  # every alert, for the journal's alerts mirror
    firing: tuple[Occurrence, ...]  # the firing alerts' episodes, in payload order
    firing_grades: tuple[str, ...]  # each firing alert's own grade
    firing_rules: tuple[str, ...]  # the grading rule of each firing alert
    firing_labels: tuple[dict[str, str], ...]
    first_firing_at: float | None  # the earliest startsAt of a firing alert
    resolved: tuple[str, ...]  # fingerprints of the resolved alerts
    truncated: int  # alerts the sender left out (Alertmanager's max_alerts): graded on a partial group
    run_id: str | None  # the id a new incident for the firing alerts gets
    name: str  # the group, for the log
    summary: str
    group_labels: dict[str, str]
    correlation: CorrelationKey | None = None  # of the firing alerts (None: joins no other group)

    @property
    def lookup(self) -> GroupLookup:
        key = self.correlation.key if self.correlation else None
        return GroupLookup(self.group_key, self.body_sha256, self.firing, self.resolved, self.run_id, key)


@dataclass(frozen=True)
class Plan:
    """The decision's answer and what is left to do once it is committed."""

    delivery_id: int
    outcome: str  # created | pending | update | joined | duplicate | resolved | recorded
    run_id: str | None = None
    graded: Graded | None = None
    escalation: Escalation | None = None
    detail: str = ""
    create: bool = False  # create the incident's run
    then: str = ""  # the outcome once the pending incident's run exists (updates only)
    note: bool = False
    force_note: bool = False
    group: str = ""
    summary: str = ""
    correlation: str = ""  # the correlation key a new or joined incident is found by, for people
    reevaluate: str | None = None  # the run id of the re-evaluation this delivery journaled


@dataclass(frozen=True)
class Decision:
    plan: Plan
    record: DeliveryRecord


def incoming(payload: WebhookPayload, body: bytes, received_at: float, grader: Grader) -> Incoming:
    firing = payload.firing
    occurrences = tuple(a.occurrence for a in firing)
    graded = grader.grade_group(a.labels for a in (firing or payload.alerts))
    return Incoming(
        group_key=payload.group_key,
        status=payload.status,
        body=body,
        body_sha256=hashlib.sha256(body).hexdigest(),
        received_at=received_at,
        alert_count=len(payload.alerts),
        graded=graded,
        alerts=tuple((a.fingerprint, a.status, dict(a.labels), iso(a.starts_at)) for a in payload.alerts),
        firing=occurrences,
        firing_grades=tuple(grader.grade_alert(a.labels).grade.value for a in firing),
        firing_rules=tuple(grader.grade_alert(a.labels).rule for a in firing),
        firing_labels=tuple(dict(a.labels) for a in firing),
        first_firing_at=min(a.starts_at for a in firing).timestamp() if firing else None,
        resolved=tuple(a.fingerprint for a in payload.resolved),
        truncated=payload.truncated_alerts,
        run_id=payload_run_id(payload),
        name=_group_name(payload),
        summary=f"{len(payload.alerts)} alert(s) {payload.status}",
        group_labels=dict(payload.group_labels),
        correlation=grader.correlation([a.labels for a in firing], graded.grade),
    )


def payload_run_id(payload: WebhookPayload) -> str | None:
    """The run id of the incident the payload's firing alerts open (None when none fires): the one
    function the service and ``triage24 intake check`` both use."""
    occurrences = [a.occurrence for a in payload.firing]
    return incident_run_id(payload.group_key, occurrences, _readable(payload)) if occurrences else None


def partial_group(truncated: int, firing: bool) -> str:
    """What a delivery that left alerts out means for the incident ("" when it left none out)."""
    if not truncated:
        return ""
    what = "graded on a partial group" if firing else "a partial group"
    return f"{what}: the sender left out {truncated} alert(s) (Alertmanager's max_alerts)"


def escalation_lookup(
    d: Incoming, s: Snapshot, grader: Grader, alert_ttl_s: float
) -> EscalationLookup | None:
    """The counts :func:`decide` will need to decide escalation, if any (read them into ``s``)."""
    grade = _escalation_grade(d, s)
    if grade is None:
        return None
    policy = grader.policy(grade).escalation
    if isinstance(policy, Repeats):
        return EscalationLookup(repeats_since=d.received_at - policy.within_s)
    if isinstance(policy, Sustained) and _duration(d) > policy.longer_than_s:
        return EscalationLookup(firing_since=d.received_at - alert_ttl_s)  # only then the (costlier) count
    return None


def decide(d: Incoming, s: Snapshot, grader: Grader, dag_id: str, conf_for: ConfFor) -> Decision:
    resolved_news = [fp for fp in d.resolved if fp not in s.known_resolved]
    if not d.firing:
        plan, write = _resolved(d, s, resolved_news)
    elif s.open_incident is not None:
        plan, write = _update(d, s, s.open_incident, resolved_news, grader, conf_for)
    elif not (uncovered := _uncovered(d, s)):
        run_id = next((r for occ in d.firing if (r := s.runs.get(occ)) is not None), None)
        plan = _plan(d, s, "duplicate", run_id, "every firing alert is covered by an earlier incident")
        write = IncidentWrite()
    elif (other := joinable(d, s)) is not None:
        plan, write = _update(d, s, other, resolved_news, grader, conf_for, join=True)
    else:
        plan, write = _open(d, s, uncovered, grader, dag_id, conf_for)
    if plan.outcome == "duplicate" and s.earlier_same_body is not None:
        plan = replace(plan, detail=f"{plan.detail} (same body as delivery {s.earlier_same_body})")
    if partial := partial_group(d.truncated, bool(d.firing)):
        plan = replace(plan, detail=f"{plan.detail}; {partial}")
    record = DeliveryRecord(
        id=s.delivery_id,
        received_at=d.received_at,
        body=d.body,
        body_sha256=d.body_sha256,
        group_key=d.group_key,
        status=d.status,
        alert_count=d.alert_count,
        outcome=plan.outcome,
        run_id=plan.run_id,
        detail=plan.detail,
        grade=d.graded.grade.value,  # the delivery's own grade (the plan's is the incident's)
        rule=d.graded.rule,
        escalated=bool(plan.escalation and plan.escalation.escalated),
        alerts=d.alerts,
        occurrences=tuple((fp, starts, g) for (fp, starts), g in zip(d.firing, d.firing_grades, strict=True)),
        incident=write,
    )
    return Decision(plan, record)


def after_creation(plan: Plan, ok: bool | None, detail: str) -> Plan:
    """The plan once its run creation was tried: ``ok`` None when a concurrent delivery is creating
    it, ``detail`` how it went ("created", "existed in Airflow already", or why not)."""
    if ok is None:
        return replace(plan, outcome=plan.then, detail=f"{plan.detail}; run {detail}")
    if not ok:
        return replace(plan, detail=f"{plan.detail}; run not created: {detail}")
    # "update" / "joined": news for an incident whose run did not exist until now; otherwise a new
    # incident, or a retry of its delivery
    new = "created" if detail == "created" else "duplicate"
    outcome = plan.then if plan.then in ("update", "joined") else new
    return replace(plan, outcome=outcome, detail=f"{plan.detail}; run {detail}")


# --- the branches ---------------------------------------------------------------------------------


def _plan(d: Incoming, s: Snapshot, outcome: str, run_id: str | None, detail: str, **kw: Any) -> Plan:
    kw.setdefault("graded", d.graded)
    return Plan(s.delivery_id, outcome, run_id, detail=detail, group=d.name, summary=d.summary, **kw)


def _resolved(d: Incoming, s: Snapshot, resolved_news: list[str]) -> tuple[Plan, IncidentWrite]:
    target = s.open_incident or s.latest_incident
    run_id = target.run_id if target else None
    if not resolved_news:
        return _plan(d, s, "duplicate", run_id, "these alerts were already known resolved"), IncidentWrite()
    detail = f"{len(resolved_news)} alert(s) resolved"
    if target is None:
        detail += "; no incident of this group to annotate"
        return _plan(d, s, "resolved", None, detail), IncidentWrite()
    now = d.received_at
    write = IncidentWrite(
        update_run=target.run_id,
        update={"resolved_at": now, "last_delivery_at": now, "updates": target.updates + 1, "note_dirty": 2},
    )
    plan = _plan(d, s, "resolved", run_id, f"{detail}; annotated {target.run_id}", note=True, force_note=True)
    return plan, write


def _update(
    d: Incoming,
    s: Snapshot,
    incident: Incident,
    resolved_news: list[str],
    grader: Grader,
    conf_for: ConfFor,
    join: bool = False,
) -> tuple[Plan, IncidentWrite]:
    """News for ``incident``: the group's own, or (``join``) another group's it joins."""
    now = d.received_at
    current = GradeId(incident.grade)
    raised = d.graded.grade.rank > current.rank
    grade = d.graded.grade if raised else current
    changes: dict[str, Any] = {"last_delivery_at": now}
    news = []
    joined = None
    if join:
        assert d.correlation is not None
        joined = GroupJoin(
            incident.run_id, d.group_key, d.group_labels, d.correlation.rule, d.correlation.text
        )
        news.append(
            f"joined incident {incident.run_id} (rule {d.correlation.rule}: {d.correlation.text}; "
            f"its last delivery {now - incident.last_delivery_at:.0f} s ago)"
        )
    if new := _new(d, s):
        news.append(f"{len(new)} new firing alert(s)")
    if resolved_news:
        news.append(f"{len(resolved_news)} alert(s) resolved")
    if raised:
        news.append(f"grade raised {current.value} -> {grade.value} ({d.graded.rule})")
        changes.update(grade=grade.value, rule=d.graded.rule)
    force_note = False
    if incident.escalated:
        esc = Escalation(True, incident.escalation_rule, incident.escalation_reason)
    else:
        esc = _escalation(d, s, grade, grader)
        if esc.escalated:
            news.append(f"escalated: {esc.reason}")
            changes.update(
                escalated=1, escalation_rule=esc.rule, escalation_reason=esc.reason, escalated_at=now
            )
            force_note = True
    if news:
        outcome, detail = "joined" if join else "update", "; ".join(news)
        force_note = force_note or raised or bool(resolved_news) or join
        changes.update(
            updates=incident.updates + 1, note_dirty=max(2 if force_note else 1, incident.note_dirty)
        )
    else:
        outcome, detail = "duplicate", "no news for the open incident"
    then = ""
    again = None
    graded = Graded(grade, d.graded.rule if raised else incident.rule)
    if incident.state == "pending":  # its run does not exist yet: this delivery retries creating it
        then, outcome, detail = outcome, "pending", f"{detail}; incident not created yet"
    elif news and (again := _reevaluation(d, s, incident, graded, esc, conf_for)) is not None:
        # its run decided on older evidence: a new run decides on fresh evidence (after the commit)
        detail += f"; re-evaluation {again.run_id} of {again.previous_run_id}: {again.reason}"
    plan = _plan(
        d,
        s,
        outcome,
        incident.run_id,
        detail,
        graded=graded,
        escalation=esc,
        create=bool(then),
        then=then,
        note=bool(news),
        force_note=force_note,
        correlation=f"{d.correlation.rule}: {d.correlation.text}" if joined and d.correlation else "",
        reevaluate=again.run_id if again else None,
    )
    write = IncidentWrite(
        update_run=incident.run_id,
        update=changes,
        join=joined,
        cover=_uncovered(d, s),
        cover_run=incident.run_id,
        reevaluate=again,
    )
    return plan, write


def _reevaluation(
    d: Incoming,
    s: Snapshot,
    incident: Incident,
    graded: Graded,
    esc: Escalation,
    conf_for: ConfFor,
) -> NewReevaluation | None:
    """The re-evaluation the delivery calls for (None: none, or each reason was re-evaluated already)."""
    fresh = set(_uncovered(d, s))
    new_alerts = [
        (labels.get("alertname", ""), rule)
        for occ, labels, rule in zip(d.firing, d.firing_labels, d.firing_rules, strict=True)
        if occ in fresh
    ]
    names = [labels.get("alertname", "") for labels in d.firing_labels]
    history = s.reevaluations
    done = [k for r in history for k in r.keys]
    call = reevaluate.called_for(
        GradeId(incident.grade), incident.rule, graded.grade, new_alerts, done, names
    )
    if call is None:
        return None
    started = [r for r in history if r.state != "skipped"]  # a skipped one never had a run
    run_id = reevaluate.run_id_for(incident.run_id, len(history))
    conf = {
        **conf_for(graded, esc),
        "reevaluates": started[-1].run_id if started else incident.run_id,
        "reevaluation_reason": call.reason,
    }
    previous = str(conf["reevaluates"])
    return NewReevaluation(run_id, incident.run_id, previous, call.keys, call.reason, conf)


def _open(
    d: Incoming,
    s: Snapshot,
    uncovered: tuple[Occurrence, ...],
    grader: Grader,
    dag_id: str,
    conf_for: ConfFor,
) -> tuple[Plan, IncidentWrite]:
    graded = d.graded
    esc = _escalation(d, s, graded.grade, grader)
    if not grader.policy(graded.grade).starts_incident and not esc.escalated:
        detail = f"{graded.grade.value} is recorded and aggregated, no incident: {esc.reason}"
        return _plan(d, s, "recorded", None, detail, escalation=esc), IncidentWrite()
    assert d.run_id is not None
    if s.run_id_taken:  # a closed incident with this very id
        detail = "an incident for these firing alerts existed already"
        return _plan(d, s, "duplicate", d.run_id, detail, escalation=esc), IncidentWrite()
    new = NewIncident(
        run_id=d.run_id,
        dag_id=dag_id,
        group_key=d.group_key,
        grade=graded.grade.value,
        rule=graded.rule,
        escalated=esc.escalated,
        escalation_rule=esc.rule,
        escalation_reason=esc.reason,
        conf=conf_for(graded, esc),
        correlation_key=d.correlation.key if d.correlation else None,
        correlation_rule=d.correlation.rule if d.correlation else "",
    )
    detail = f"new incident for {len(d.firing)} firing alert(s)"
    key = f"{d.correlation.rule}: {d.correlation.text}" if d.correlation else ""
    plan = _plan(d, s, "pending", d.run_id, detail, escalation=esc, create=True, correlation=key)
    return plan, IncidentWrite(insert=new, cover=uncovered, cover_run=d.run_id)


# --- correlation and closing ----------------------------------------------------------------------


def joinable(d: Incoming, s: Snapshot) -> Incident | None:
    """Another group's open incident this delivery joins: the same correlation key (so the same
    rule applied to both), and a delivery to it within the rule's window."""
    other, key = s.correlated, d.correlation
    if other is None or key is None or other.correlation_key != key.key:
        return None
    return other if d.received_at - other.last_delivery_at <= key.window_s else None


def closes(
    run_state: str | None, firing: int, last_delivery_at: float, now: float, quiet_s: float
) -> tuple[bool, str]:
    """Whether an open incident closes now, and why (not): only once its run has ended, none of its
    alerts fires and no delivery came for ``quiet_s`` - a run that ended at "hold" while the fault
    persists leaves it open, so the same alerts firing again update it instead of opening another."""
    if run_state not in FINISHED_RUN_STATES:
        return False, f"run {run_state or 'not seen yet'}"
    if firing:
        return False, f"run {run_state}, {firing} alert(s) still firing"
    quiet = now - last_delivery_at
    if quiet < quiet_s:
        return False, f"run {run_state}, nothing firing, quiet for {quiet:.0f} s (< {quiet_s:g} s)"
    return True, f"run {run_state}, nothing firing, quiet for {quiet:.0f} s"


# --- escalation -----------------------------------------------------------------------------------


def _escalation_grade(d: Incoming, s: Snapshot) -> GradeId | None:
    """The grade whose escalation policy :func:`decide` applies (None: it decides no escalation)."""
    if not d.firing:
        return None
    incident = s.open_incident
    if incident is None:
        if not _uncovered(d, s):
            return None
        incident = joinable(d, s)
        if incident is None:
            return d.graded.grade
    if incident.escalated:
        return None
    current = GradeId(incident.grade)
    return d.graded.grade if d.graded.grade.rank > current.rank else current


def _escalation(d: Incoming, s: Snapshot, grade: GradeId, grader: Grader) -> Escalation:
    policy = grader.policy(grade).escalation
    facts = EscalationFacts()
    if isinstance(policy, Repeats):
        assert s.escalation is not None and s.escalation.repeats is not None, "escalation_lookup not read"
        # The journaled episodes in the window, and this delivery's new ones (first seen now).
        facts = EscalationFacts(repeats=s.escalation.repeats + len(_new(d, s)))
    elif isinstance(policy, Sustained):
        duration = _duration(d)
        services = None
        if duration > policy.longer_than_s:
            assert s.escalation is not None and s.escalation.firing_labels is not None, "lookup not read"
            # Alerts seen firing, as the journal has them once this delivery's alerts replace theirs.
            mine = {fp for fp, *_ in d.alerts}
            labels = [lb for fp, lb in s.escalation.firing_labels.items() if fp not in mine]
            labels += d.firing_labels
            services = len({v for v in map(grader.service_of, labels) if v is not None})
        facts = EscalationFacts(duration_s=duration, services=services)
    return grader.escalation(grade, facts)


def _duration(d: Incoming) -> float:
    assert d.first_firing_at is not None
    return max(0.0, d.received_at - d.first_firing_at)


# --- episodes -------------------------------------------------------------------------------------


def _new(d: Incoming, s: Snapshot) -> list[Occurrence]:
    """The delivery's firing episodes the journal has not seen before (each once)."""
    return [occ for occ in dict.fromkeys(d.firing) if occ not in s.runs]


def _uncovered(d: Incoming, s: Snapshot) -> tuple[Occurrence, ...]:
    """The delivery's firing episodes no incident covers (new ones included)."""
    return tuple(occ for occ in d.firing if s.runs.get(occ) is None)


def _readable(payload: WebhookPayload) -> str:
    """The group's label values, for people reading run ids (e.g. testbed-canary)."""
    values = [v for _, v in sorted(payload.group_labels.items())]
    return "-".join(values) or payload.label("alertname") or ""


def _group_name(payload: WebhookPayload) -> str:
    labels = payload.group_labels
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))[:200] or payload.group_key[:200]
