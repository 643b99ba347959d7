"""The decision's ``canary_watch_rejection`` rule: an incident the canary watch opened rolls back on
the fast path on the watch's own evidence, even when phase 1's windows show nothing yet; a malformed
or unconvincing watch alert is ignored with its reason; without one the rule does not apply."""

from __future__ import annotations

from typing import Any

from diagnostics.canary_watch.alert import alert_payload
from diagnostics.decision import Outcome, decide, inputs_from_results
from diagnostics.golden_window.canary_gate import CanaryGateResult, GateVerdict
from diagnostics.incident.model import GateAlert
from diagnostics.incident.results import Status
from tests.diagnostics.canary_watch.test_alert import _through_the_intake, rejection
from tests.diagnostics.decision.builders import POLICY, healthy
from tests.diagnostics.decision.test_policy import trace, with_policy

# Phase 1, ten seconds after the onset: the gate's windows hold too few canary requests to judge.
YOUNG_GATE = CanaryGateResult(
    verdict=GateVerdict.INSUFFICIENT_EVIDENCE,
    sustained_s=60,
    min_requests=50,
    reason="text: 12 canary requests < min_requests 50 in 60 s",
)


def watch_alert(**annotations: Any) -> GateAlert:
    r = rejection()
    return GateAlert(labels=r.labels(), annotations={**r.annotations(), **annotations})


def test_a_watch_rejection_rolls_back_on_the_fast_path_before_phase_1_sees_a_breach() -> None:
    d = decide(healthy(gate=YOUNG_GATE, phase2=None, gate_alerts=[watch_alert()]), POLICY)
    assert (d.outcome, d.status, d.rule, d.gate_breach) == (
        Outcome.ROLLBACK,
        Status.FAILED,
        "canary_watch_rejection",
        True,
    )
    assert d.rolls_back_without_human and not d.needs_human
    r = rejection()
    c = r.counts
    assert d.reasons[0] == (
        f"canary watch rejection (fast path): text errors_5xx: canary {c.canary_events:,.0f}/"
        f"{c.canary_requests:,.0f} vs stable {c.stable_events:,.0f}/{c.stable_requests:,.0f} "
        f"({c.canary_events / c.canary_requests:.2%} vs {c.stable_events / c.stable_requests:.2%}), "
        f"e={r.e_value:,.0f} ≥ 2,400 = 1/alpha (alpha 0.000417 per test), {r.looks} looks, release v2.4.1"
    )
    assert d.summary.startswith(
        "testbed: rollback (canary_watch_rejection, fast path): canary watch rejection"
    )
    # the gate's own rule saw nothing to act on; the watch's evidence decided by itself
    assert trace(d)["canary_gate_breach"] is False and trace(d)["insufficient_evidence"] is True


def test_the_rule_reads_the_watch_alert_from_the_incident_the_intake_made() -> None:
    inc = _through_the_intake(alert_payload(rejection()))
    inputs = inputs_from_results(inc.model_dump(mode="json"), None, None)
    assert [a.labels["alertname"] for a in inputs.gate_alerts] == ["CanaryWatchRejected"]
    d = decide(inputs, POLICY)  # no phase-1 result at all yet
    assert (d.outcome, d.rule, d.rolls_back_without_human) == (
        Outcome.ROLLBACK,
        "canary_watch_rejection",
        True,
    )


def test_a_malformed_watch_alert_is_ignored_with_its_reason() -> None:
    d = decide(healthy(gate_alerts=[watch_alert(e_value="a lot")]), POLICY)
    assert (d.outcome, d.rule) == (Outcome.CONTINUE, "continue")
    assert (
        "canary_watch_rejection: CanaryWatchRejected (testbed/canary/text) ignored: annotation e_value: "
        "expected a number, got 'a lot'" in d.reasons
    )


def test_a_watch_alert_that_shows_both_versions_alike_is_no_evidence() -> None:
    shared = watch_alert(stable_events="3000.0", stable_requests="3000.0")
    d = decide(healthy(gate=YOUNG_GATE, gate_alerts=[shared]), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE and d.needs_human
    (line,) = [r for r in d.reasons if r.startswith("canary_watch_rejection: ")]
    assert "is not above stable's 100.000%: a finding both versions share is not evidence" in line


def test_without_a_watch_alert_the_rule_does_not_apply() -> None:
    d = decide(healthy(), POLICY)
    assert trace(d)["canary_watch_rejection"] is False
    assert "canary_watch_rejection: no canary watch rejection among the incident's alerts" in d.reasons
    # a gate alert of Prometheus' own rules is the canary gate's business, not the watch's
    gate = GateAlert(labels={"alertname": "CanaryGate5xx", "gate": "rate_5xx", "version": "canary"})
    assert trace(decide(healthy(gate_alerts=[gate]), POLICY))["canary_watch_rejection"] is False


def test_a_sensitive_rollback_method_still_asks_a_human() -> None:
    sensitive = with_policy(**{"human_gate.sensitive_rollback_methods": ["gateway_weight"]})
    d = decide(healthy(gate_alerts=[watch_alert()]), sensitive)
    assert d.outcome is Outcome.ROLLBACK and d.needs_human and not d.rolls_back_without_human
