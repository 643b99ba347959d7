"""The phase-2 side of the decision benchmark (``benchmarks/decision.py``): the phase-2 evidence each
scenario carries, and the router_dispatch check's verdicts on simulated probes.

Scenarios, each a healthy canary (the A/A metrics) with phase 2 in one state:

- ``missing_phase2_*``: phase 2 not run, router_dispatch absent, clip_consistency crashed,
  router_dispatch insufficient (0 misroutes in 24 probes: the share is bounded at 11.7 %, over its
  5 % tolerance), phase 2 stale (summed up before phase 1 looked), only the canary's side of a
  failure (evidence without stable's) -> actions, goal 0 (counted in ``missing_data_actions``);
- ``shared_*``: level-2 drift, or a failed clip_consistency, on both versions (the canary no worse),
  the incident naming stable -> actions, goal 0 (``shared_degradation_actions``);
- ``canary_only_drift_level2``: level-2 drift on the canary alone -> rollback at the first look
  (``canary_only_rollback_rate``, goal 1).

``router_probe_verdicts``: the router_dispatch check's verdict on a router misrouting a share p of
requests, the rule before (24 probes, ok when the share is <= 5 %) against the check's (looks of 40
up to 120, exact bounds at 95 %).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from diagnostics.decision import Phase2Evidence
from diagnostics.decision.model import CheckEvidence
from diagnostics.deep_diagnosis import router_dispatch
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import Channel

CHANNEL = Channel.IMAGE
END = datetime(2026, 1, 1, tzinfo=UTC)  # the metrics' window end, when phase 1 looked
PHASE2_SCENARIOS = (  # (scenario, phase2_for kind)
    ("missing_phase2_not_run", "not_run"),
    ("missing_phase2_check_absent", "check_absent"),
    ("missing_phase2_check_crashed", "check_crashed"),
    ("missing_phase2_router_0_of_24", "router_0_of_24"),
    ("missing_phase2_stale", "stale"),
    ("missing_phase2_canary_side_only", "canary_side_only"),
    ("shared_drift_level2", "shared_drift"),
    ("shared_clip_failure", "shared_clip"),
    ("canary_only_drift_level2", "canary_drift"),
)
PHASE2_CHECKS: tuple[str, ...] = tuple(
    next(ph.checks for ph in load_runbooks().sop.phases if ph.id == "deep_diagnosis")
)
OK_BOTH = CheckEvidence(canary=Status.OK, stable=Status.OK, canary_worse=False)
NO_VERDICT = Status.INSUFFICIENT_EVIDENCE


def phase2_for(kind: str, checks: tuple[str, ...]) -> Phase2Evidence | None:
    """Phase 2's evidence in a scenario: every check ok on both versions (``healthy``), or broken one
    way; summed up an hour after phase 1 looked (at ``END``) unless stale."""
    every = dict.fromkeys(checks, OK_BOTH)
    drift, stable_drift, measured = {CHANNEL: 0}, {CHANNEL: 0}, END + timedelta(hours=1)
    if kind == "not_run":
        return None
    if kind == "canary_side_only":  # evidence.json without stable's side: nothing is shown worse
        return Phase2Evidence(drift={CHANNEL: 2}, consistency={"clip_consistency": Status.FAILED})
    if kind == "check_absent":
        del every["router_dispatch"]
    elif kind == "check_crashed":
        every["clip_consistency"] = CheckEvidence(canary=NO_VERDICT, crashed=True, measure="check crashed")
    elif kind == "router_0_of_24":
        every["router_dispatch"] = CheckEvidence(canary=NO_VERDICT, stable=NO_VERDICT, measure="0 of 24")
    elif kind == "stale":
        measured = END - timedelta(minutes=30)
    elif kind == "shared_clip":
        every["clip_consistency"] = CheckEvidence(
            canary=Status.FAILED, stable=Status.FAILED, canary_worse=False
        )
    elif kind in ("shared_drift", "canary_drift"):
        drift, stable_drift = {CHANNEL: 2}, {CHANNEL: 2 if kind == "shared_drift" else 0}
    every["drift"] = CheckEvidence(
        canary=Status.FAILED if drift[CHANNEL] == 2 else Status.OK,
        stable=Status.FAILED if stable_drift[CHANNEL] == 2 else Status.OK,
        canary_worse=drift[CHANNEL] > stable_drift[CHANNEL],
    )
    return Phase2Evidence(
        drift=drift,
        stable_drift=stable_drift,
        consistency={n: ev.canary for n, ev in every.items() if n != "drift" and ev.canary is not None},
        checks=every,
        measured_at=measured,
    )


def router_probe_verdicts(trials: int, rng: np.random.Generator) -> dict[str, Any]:
    """The router_dispatch check's verdicts on a router misrouting a share p of requests: the rule
    before (24 probes, ok when the misrouted share is <= 5 %, else failed) against the check's (looks of
    ``probes`` up to ``max_probes``, stopping when the exact bounds decide, else insufficient)."""
    th = router_dispatch.Thresholds()
    schedule = th.schedule()
    sizes = np.diff([0, *schedule])
    verdict = {(k, n): th.verdict(k, n).verdict.value for n in schedule for k in range(n + 1)}
    out: dict[str, Any] = {}
    for share in (0.0, 0.02, 0.05, 0.08, 0.12, 0.3):
        old = rng.binomial(24, share, trials) / 24 <= th.max_misrouted_share
        looks = np.cumsum(rng.binomial(sizes, share, (trials, len(sizes))), axis=1)
        tally = {"under": 0, "over": 0, "undecided": 0}
        probes = 0
        for row in looks:
            for n, k in zip(schedule, row, strict=True):
                v = verdict[(int(k), n)]
                if v != "undecided" or n == schedule[-1]:
                    tally[v] += 1
                    probes += n
                    break
        out[f"{share:g}"] = {
            "before_24_probes": {
                "ok": round(float(old.mean()), 4),
                "failed": round(float(1 - old.mean()), 4),
            },
            "now": {
                "ok": round(tally["under"] / trials, 4),
                "failed": round(tally["over"] / trials, 4),
                "insufficient": round(tally["undecided"] / trials, 4),
                "mean_probes": round(probes / trials, 1),
            },
        }
    return {
        "trials": trials,
        "rule": {"probes": th.probes, "max_probes": th.max_probes, "tolerance": th.max_misrouted_share,
                 "confidence": th.confidence, "looks": th.looks},
        "by_misrouted_share": out,
    }  # fmt: skip
