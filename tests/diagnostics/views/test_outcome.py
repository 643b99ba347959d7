"""What the response did and when, from the alert: the time to mitigate (the rollback applied) and the
time to recover (the recovery verified), never 0 for want of a time; the action taken; open incidents
first in the list."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from diagnostics.incident.store import write_json
from diagnostics.views import incidents as view
from diagnostics.views.artifacts import RunArtifacts
from diagnostics.views.models import TaskRecord
from diagnostics.views.outcome import action_taken, mitigation, recovery
from tests.diagnostics.views.test_incidents import (
    APPLIED_AT,
    PHASE1_DONE,
    SOP,
    T0,
    VERIFIED_AT,
    at,
    run,
    tasks,
    write_incident,
    write_recovery,
    write_rollback,
)

RID = "incident__testbed-canary__out1"


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "artifacts"


def _art(root: Path) -> RunArtifacts:
    return RunArtifacts(root, RID)


def test_both_times_run_from_the_alert_not_from_the_verification(root: Path) -> None:
    write_rollback(root, RID, APPLIED_AT)
    waited = write_recovery(root, RID)
    mitigated, recovered = mitigation(_art(root), T0), recovery(_art(root), T0)
    assert (mitigated.at, mitigated.after_s, mitigated.text) == (APPLIED_AT, 1650.0, "rolled back")
    assert (recovered.at, recovered.after_s, recovered.text, recovered.done) == (
        VERIFIED_AT, 1725.0, "recovered", True,
    )  # fmt: skip
    assert waited == 10.0 and recovered.after_s != waited, "the verification's own wait is not the outage"


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"dry_run": True, "outcome": "applied", "changed": False},
         "not mitigated: dry run, nothing was changed"),
        ({"outcome": "failed", "status": "failed", "changed": False}, "not mitigated: the rollback failed"),
        ({"outcome": "rate_limited", "status": "failed", "changed": False},
         "not mitigated: the rollback rate limited"),
        ({"outcome": "noop", "changed": False}, "the canary already was out of traffic"),
        ({"outcome": "already_applied", "changed": False},
         "rolled back by an earlier try (its time is in the rollback audit log)"),
    ],
)  # fmt: skip
def test_a_rollback_that_did_not_take_the_canary_out_now_has_no_time(
    root: Path, changes: dict[str, Any], text: str
) -> None:
    write_rollback(root, RID, APPLIED_AT, **changes)
    mitigated = mitigation(_art(root), T0)
    assert (mitigated.at, mitigated.after_s, mitigated.text) == (None, None, text)


def test_no_rollback_and_no_verification_say_so(root: Path) -> None:
    write_incident(root, RID)
    assert mitigation(_art(root), T0) == mitigation(_art(root), None)
    assert (mitigation(_art(root), T0).after_s, mitigation(_art(root), T0).text) == (None, "not mitigated")
    nothing = recovery(_art(root), T0)
    assert (nothing.at, nothing.after_s, nothing.text, nothing.done) == (None, None, "not verified", None)


def test_a_recovery_not_verified_has_no_time_to_recover(root: Path) -> None:
    write_recovery(root, RID)
    path = root / RID / "response" / "recovery_verification.json"
    stored = json.loads(path.read_text())
    write_json(path, {**stored, "recovered": False, "escalate": True, "verdict": "capacity",
                      "time_to_recover_s": None})  # fmt: skip
    bad = recovery(_art(root), T0)
    assert (bad.at, bad.after_s, bad.text, bad.done) == (
        None,
        None,
        "NOT recovered (capacity), escalated",
        False,
    )
    write_json(path, {k: v for k, v in stored.items() if k != "recovered"})
    odd = recovery(_art(root), T0)
    assert (odd.after_s, odd.text, odd.done) == (
        None,
        "not verified: the verification stored no verdict",
        None,
    )


def test_an_unknown_alert_time_leaves_the_durations_unknown(root: Path) -> None:
    write_rollback(root, RID, APPLIED_AT)
    write_recovery(root, RID)
    assert mitigation(_art(root), None).after_s is None and mitigation(_art(root), None).at == APPLIED_AT
    assert recovery(_art(root), None).after_s is None and recovery(_art(root), None).at == VERIFIED_AT


def test_the_action_taken_in_a_few_words(root: Path) -> None:
    art, response = _art(root), root / RID / "response"
    continued = [TaskRecord(task_id="response.continue_release", state="success")]
    assert action_taken(art, []) is None
    assert action_taken(art, continued) == "release continued"
    write_json(
        response / "superseded.json", {"check": "superseded", "details": {"superseded_by": "incident__x__2"}}
    )
    assert action_taken(art, continued) == "superseded by incident__x__2"
    write_json(
        response / "hold.json", {"check": "hold", "details": {"decided_by": "admin", "escalate": True}}
    )
    assert action_taken(art, []) == "held, escalated"
    write_json(response / "promotion.json", {"check": "promotion", "outcome": "applied", "dry_run": False,
                                             "after": {"canary_weight": 25.0}})  # fmt: skip
    assert action_taken(art, []) == "promoted to 25 %"
    write_rollback(root, RID, APPLIED_AT, dry_run=True, changed=False)
    assert action_taken(art, []) == "rollback, dry run: nothing changed"
    write_rollback(root, RID, APPLIED_AT)
    assert action_taken(art, []) == "rolled back"
    os.remove(response / "rollback.json")
    write_rollback(root, RID, APPLIED_AT, outcome="refused", status="failed", changed=False)
    assert action_taken(art, []) == "rollback refused"


def test_open_incidents_come_first_then_the_newest_alert(root: Path) -> None:
    """An incident whose run is over sorts below an older one still open, whatever its alert's age."""
    old_open, new_over = "incident__a__open", "incident__b__over"
    write_incident(root, old_open, t0=T0)
    write_incident(root, new_over, t0=T0 + timedelta(hours=2))
    runs = [run(new_over, "success", end_date=at(150)), run(old_open, "running")]
    by_run = {new_over: tasks(**PHASE1_DONE), old_open: tasks(**PHASE1_DONE)}
    data = view.list_incidents(runs, by_run, root, SOP, now=at(200))
    assert [(r.run_id, r.open) for r in data.rows] == [(old_open, True), (new_over, False)]
