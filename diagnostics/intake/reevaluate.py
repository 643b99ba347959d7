"""Re-evaluating an open incident on new evidence, as pure functions (issue 19).

An incident whose run stopped short of acting (it waits at a human gate, or its fast path ended at
insufficient evidence, or the run ended at hold or continue) must not sit on news that changes the
picture. A delivery that raises its grade or carries a hard canary-gate alert calls for a
re-evaluation: a new run of the same incident (``<incident run id>__r<n>``) whose phase 1 reads fresh
evidence and whose fast path rolls back on a gate breach as any run's does. The previous run's waiting
gate is then answered "Superseded by new evidence" (it holds without escalating).

- :func:`called_for`, in the delivery's decision: whether it calls for one, and why. Each grade level
  and each gate alert counts once per incident (the re-evaluation's ``keys``): a re-notified alert
  does not storm.
- :func:`judge`, after the commit, on the previous run's task states: act now, wait (its phase 1 is
  still deciding, or its own run is not created yet), or skip (it already rolls back).
- :func:`supersede`, once the new run exists: the previous run's gate to answer, wait until it asks,
  or nothing left to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from diagnostics.incident import task_ids as T
from diagnostics.runbooks.grading import GradeId

GATE_RULE = "canary_gate_breach"  # grading.yaml: the rule that marks the hard canary-gate alerts
SUFFIX = "__r"
_NUMBERED = re.compile(r"^(?P<base>.+)__r(?P<n>[0-9]+)$")
FINISHED = frozenset({"success", "failed"})
WAITING = frozenset({"awaiting_input", "deferred"})  # a HITL gate parked for its answer
NOT_RUN = frozenset({"skipped", "upstream_failed", "removed"})
# (branch task, the choice it leads to): a branch that finished and did not skip the choice chose it
_ROLLBACK_CHOICES = (
    (T.FAST_GATE, T.ROLLBACK_NOW),
    (T.DECIDE, T.GO_ROLLBACK),
)
_ROLLBACK_TASKS = (T.ROLLBACK_NOW, f"{T.RESPONSE}.rollback", T.human_choice("rollback"))


@dataclass(frozen=True)
class Call:
    keys: tuple[str, ...]  # grade:L3, gate:CanaryGate5xx - not yet re-evaluated for this incident
    reason: str  # "CanaryGate5xx, ErrorRateHigh raised L2 -> L3"


def called_for(
    current: GradeId,
    rule: str,
    grade: GradeId,
    new_alerts: Sequence[tuple[str, str]],
    done: Iterable[str],
    firing_names: Sequence[str] = (),
) -> Call | None:
    """Whether a delivery calls for a re-evaluation of an open incident of grade ``current`` and
    grading rule ``rule``. ``grade``: the incident's grade with the delivery; ``new_alerts``:
    (alertname, grading rule) of the firing alerts no incident covered yet; ``done``: the keys of its
    earlier re-evaluations."""
    raised = grade.rank > current.rank
    keys = [f"grade:{grade.value}"] if raised else []
    if rule != GATE_RULE:  # an incident graded by a gate breach had its runs told of one already
        keys += [f"gate:{n}" for n in dict.fromkeys(n for n, r in new_alerts if r == GATE_RULE)]
    seen = set(done)
    fresh = tuple(k for k in keys if k not in seen)
    if not fresh:
        return None
    names = ", ".join(dict.fromkeys(n for n, _ in new_alerts if n)) or ", ".join(firing_names) or "alerts"
    if raised:
        return Call(fresh, f"{names} raised {current.value} -> {grade.value}")
    return Call(fresh, f"{names}: hard canary gate breached ({grade.value})")


def run_id_for(incident_run_id: str, earlier: int) -> str:
    """The run id of an incident's re-evaluation after ``earlier`` ones (its first run is r1)."""
    return f"{incident_run_id}{SUFFIX}{earlier + 2}"


def later_run_ids(run_id: str, how_many: int = 8) -> list[str]:
    """The ids a re-evaluation superseding ``run_id`` can have (the DAG asks whether one exists)."""
    m = _NUMBERED.match(run_id)
    base, n = (m.group("base"), int(m.group("n"))) if m else (run_id, 1)
    return [f"{base}{SUFFIX}{k}" for k in range(n + 1, n + 1 + how_many)]


# --- the previous run, after the commit -------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """The previous run as Airflow has it."""

    run_id: str
    state: str | None  # None: no such run (deleted, or not created yet)
    tasks: Mapping[str, str | None]  # task id -> state (None: not scheduled yet)
    not_created: bool = False  # it is a re-evaluation whose own run does not exist yet


@dataclass(frozen=True)
class Verdict:
    kind: Literal["act", "wait", "skip"]
    why: str
    gate: str | None = None  # the previous run's gate waiting for an answer


def _rolling_back(tasks: Mapping[str, str | None]) -> str | None:
    """The evidence that the run rolls back (or did, or tried): None when it does not."""
    for task in _ROLLBACK_TASKS:
        state = tasks.get(task)
        if state is not None and state not in NOT_RUN:
            return f"{task} {state}"
    for branch, choice in _ROLLBACK_CHOICES:  # chosen, not scheduled yet
        if tasks.get(branch) == "success" and tasks.get(choice) not in NOT_RUN:
            return f"{branch} chose {choice}"
    return None


def waiting_gate(tasks: Mapping[str, str | None]) -> str | None:
    return next(
        (t for t, s in sorted(tasks.items()) if t.startswith(T.HUMAN_GATE_PREFIX) and s in WAITING), None
    )


def judge(prev: RunFacts) -> Verdict:
    """Whether to start the re-evaluation now, given the run it would supersede."""
    if prev.not_created:
        return Verdict("wait", f"run {prev.run_id} (an earlier re-evaluation) is not created yet")
    if (rolling := _rolling_back(prev.tasks)) is not None:
        return Verdict("skip", f"run {prev.run_id} already rolls back ({rolling})")
    if (gate := waiting_gate(prev.tasks)) is not None:
        return Verdict("act", f"run {prev.run_id} waits at {gate}", gate)
    if prev.state is None:
        return Verdict("act", f"run {prev.run_id} is not in Airflow")
    if prev.state in FINISHED:
        return Verdict("act", f"run {prev.run_id} ended {prev.state} without rolling back")
    if prev.tasks.get(T.FAST_GATE) == "success":
        # its fast path ended at insufficient evidence: its full decision waits for phase 2
        return Verdict("act", f"run {prev.run_id}'s fast path did not roll back; phase 2 still runs")
    fast = prev.tasks.get(T.FAST_GATE) or "not started"
    return Verdict("wait", f"run {prev.run_id}'s phase 1 is still deciding (fast gate {fast})")


def supersede(prev: RunFacts) -> Verdict:
    """Once the re-evaluation's run exists: answer the previous run's gate, or wait until it asks."""
    if (gate := waiting_gate(prev.tasks)) is not None:
        return Verdict("act", f"run {prev.run_id} waits at {gate}", gate)
    if prev.state is None or prev.state in FINISHED:
        return Verdict("skip", f"run {prev.run_id} {prev.state or 'is not in Airflow'}: no gate to answer")
    if (rolling := _rolling_back(prev.tasks)) is not None:
        return Verdict("skip", f"run {prev.run_id} rolls back itself ({rolling}): no gate to answer")
    answered = [t for t, s in prev.tasks.items() if t.startswith(T.HUMAN_GATE_PREFIX) and s == "success"]
    if answered:
        return Verdict("skip", f"run {prev.run_id}'s {answered[0]} was answered already")
    return Verdict("wait", f"run {prev.run_id} has not reached its human gate yet")


def supersede_params(run_id: str, reason: str) -> dict[str, str]:
    """What the gate's answer carries (HITL ``params_input``): the DAG records it."""
    return {"superseded_by": run_id, "reason": reason}
