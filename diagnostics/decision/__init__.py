"""The canary decision: Bayesian risk per channel, the precedence of rules in ``runbooks/decision.yaml``
and the three outcomes ``rollback`` / ``continue`` / ``insufficient_evidence``; what the evidence says
against the canary, and what each outcome requires, in ``evidence.py``. Pure: no Airflow, no I/O.

    books = load_runbooks()
    inputs = inputs_from_results(incident, metrics_sla, phase_summary, phase2, target=target)
    decision = decide(inputs, books.decision)
"""

from diagnostics.decision.inputs import inputs_from_results
from diagnostics.decision.model import (
    CHECK,
    ChannelCounts,
    CheckEvidence,
    Decision,
    DecisionInputs,
    FindingBrief,
    Phase1Evidence,
    Phase2Evidence,
    RuleResult,
    ThresholdsUsed,
    VersionCounts,
)
from diagnostics.decision.policy import decide
from diagnostics.decision.risk import (
    BetaParams,
    ChannelRisk,
    Counts,
    RiskKind,
    RiskVerdict,
    channel_risk,
    posterior,
    prior_from_reference,
    prob_greater,
    prob_greater_closed_form,
    prob_greater_monte_carlo,
)
from diagnostics.runbooks.decision import DecisionPolicy, HumanChoice, HumanGateDefault, Outcome

__all__ = [
    "CHECK",
    "BetaParams",
    "ChannelCounts",
    "ChannelRisk",
    "CheckEvidence",
    "Counts",
    "Decision",
    "DecisionInputs",
    "DecisionPolicy",
    "FindingBrief",
    "HumanChoice",
    "HumanGateDefault",
    "Outcome",
    "Phase1Evidence",
    "Phase2Evidence",
    "RiskKind",
    "RiskVerdict",
    "RuleResult",
    "ThresholdsUsed",
    "VersionCounts",
    "channel_risk",
    "decide",
    "inputs_from_results",
    "posterior",
    "prior_from_reference",
    "prob_greater",
    "prob_greater_closed_form",
    "prob_greater_monte_carlo",
]
