"""The decision's reasons on the incident page: the deciding rule's first, every other rule's notes
folded by rule (a <details> element, no script), nothing hidden from a decision stored without a trace."""

from __future__ import annotations

import re
from pathlib import Path

from diagnostics.incident.store import write_json
from diagnostics.views import incidents as view
from diagnostics.views.artifacts import RunArtifacts
from diagnostics.views.decision import decision_data, decision_detail, split_reasons
from diagnostics.views.web.site import templates
from tests.diagnostics.views.test_incidents import (
    PHASE1_DONE,
    PHASE2_DONE,
    SOP,
    at,
    run,
    tasks,
    write_decision,
    write_incident,
)

RID = "incident__testbed-canary__dec1"


def test_the_deciding_rules_reasons_come_first_and_the_others_fold_by_rule(tmp_path: Path) -> None:
    stored = write_decision(tmp_path, RID, "rollback")
    d = decision_detail(*decision_data(RunArtifacts(tmp_path, RID)))
    assert d is not None and d.rule == "critical_canary_finding"
    assert d.deciding_reasons == [
        "critical canary finding: critical model_not_loaded on embedding (canary): checksum mismatch"
    ]
    assert [(o.rule, o.matched) for o in d.other_rules] == [
        ("canary_gate_breach", False),
        ("canary_watch_rejection", False),
        ("bayesian_risk", False),
        ("phase2_evidence", False),
        ("insufficient_evidence", False),
        ("continue", True),  # it applies, but critical_canary_finding comes first
    ]
    # nothing is lost: deciding + folded are every stored reason, each once
    folded = [f"{o.rule}: {r}" for o in d.other_rules for r in o.reasons]
    assert sorted(d.deciding_reasons + folded) == sorted(stored["reasons"]) == sorted(d.reasons)


def test_notes_on_the_decision_itself_stay_with_the_deciding_reasons() -> None:
    trace = [
        {"rule": "canary_gate_breach", "outcome": "rollback", "matched": False, "reasons": ["gate pass"]},
        {
            "rule": "critical_canary_finding",
            "outcome": "rollback",
            "matched": True,
            "reasons": ["critical x"],
        },
        {"rule": "continue", "outcome": "continue", "matched": True, "reasons": []},
    ]
    reasons = [
        "critical x",
        "canary_gate_breach: gate pass",
        "dry run: the decision is recorded, no change is applied",
    ]
    deciding, others = split_reasons("critical_canary_finding", reasons, trace)
    assert deciding == ["critical x", "dry run: the decision is recorded, no change is applied"]
    assert [(o.rule, o.reasons) for o in others] == [("canary_gate_breach", ["gate pass"])], "no empty rule"


def test_a_decision_without_a_trace_shows_every_reason_unfolded() -> None:
    reasons = ["a", "b: c"]
    assert split_reasons("x", reasons, []) == (reasons, [])
    assert split_reasons("x", reasons, [{"rule": "other", "reasons": ["c"]}]) == (reasons, []), (
        "no deciding rule"
    )
    assert split_reasons(None, reasons, [{"rule": "b", "reasons": ["c"]}]) == (reasons, [])
    assert split_reasons("x", reasons, ["junk", {"rule": None}, {"rule": "x", "reasons": ["a"]}]) == (
        reasons,
        [],
    )


def test_the_page_folds_the_other_rules_in_a_details_element(tmp_path: Path) -> None:
    write_incident(tmp_path, RID)
    write_decision(tmp_path, RID, "rollback")
    states = {**PHASE1_DONE, **PHASE2_DONE, "decision__decide": "success"}
    detail = view.incident_detail(run(RID, "running"), tasks(**states), tmp_path, SOP, now=at(30))
    html = (
        templates()
        .get_template("incident.html")
        .render(
            d=detail,
            nonce="n",
            user=None,
            ui=lambda p: p,
            airflow=lambda p: p,
            dag_id="incident_response",
            status=200,
        )
    )
    section = html[
        html.index('<section id="decision">') : html.index("</section>", html.index('id="decision"'))
    ]
    # the exact opening tag: no "open" attribute, so the other rules are folded until clicked
    shown, folded = section.split('<details class="reasons" id="other-reasons">')
    assert "critical canary finding: critical model_not_loaded on embedding" in shown
    assert "nothing argues for rollback" not in shown and "nothing argues for rollback" in folded
    summary = re.search(r"<summary>(.*?)</summary>", folded)
    assert summary and summary.group(1) == "6 more reason(s) from 6 rule(s) that did not decide"
    assert "<script" not in section, "HTML alone folds it"
    assert '<li data-rule="continue"><code>continue</code> → continue' in folded
    assert "applied, but critical_canary_finding comes first" in folded and "did not apply" in folded


def test_a_decision_stored_without_a_trace_renders_every_reason(tmp_path: Path) -> None:
    write_incident(tmp_path, RID)
    stored = write_decision(tmp_path, RID, "rollback")
    write_json(
        tmp_path / RID / "decision" / "decision.json", {k: v for k, v in stored.items() if k != "trace"}
    )
    detail = view.incident_detail(run(RID, "running"), tasks(**PHASE1_DONE), tmp_path, SOP, now=at(30))
    assert detail.decision is not None and detail.decision.deciding_reasons == stored["reasons"]
    assert detail.decision.other_rules == []
