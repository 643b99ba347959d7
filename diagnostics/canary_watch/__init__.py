"""Canary watch: continuous, anytime-valid comparison of canary and stable (pure: numpy, scipy,
pydantic; no Airflow).

Per channel and per test (errors, 5xx, SLA-slow requests), a mixture e-process on the canary's share
of the events, given each version's share of the requests (Lindon, Sanden & Shirikian, KDD 2022,
"Rapid Regression Detection in Software Deployments through Sequential Testing"; Lindon & Malek,
"Anytime-Valid Inference for Multinomial Count Data", NeurIPS 2022). A look is the deltas of
cumulative counters since the last one; a healthy canary is rejected with probability at most
``alpha`` over any number of looks (Ville's inequality), and missing data pauses, never rejects.

- :mod:`~diagnostics.canary_watch.mixture`: the e-process as vectorised numpy (grid, prior, increments);
- :mod:`~diagnostics.canary_watch.sequential`: the guarantee and its assumptions, the immutable state,
  one look in and a result out (:class:`CountWatch`);
- :mod:`~diagnostics.canary_watch.registry`: the tests by name, and one watch per (channel, test) from
  ``runbooks/canary_watch.yaml`` (:mod:`diagnostics.runbooks.canary_watch`).
"""

from __future__ import annotations

from diagnostics.canary_watch.registry import REGISTRY, WatchTest, build_watches, overall
from diagnostics.canary_watch.sequential import (
    Counters,
    CountTestParams,
    CountWatch,
    Look,
    WatchResult,
    WatchState,
    WatchStatus,
    WatchStep,
    slow_counters,
)

__all__ = [
    "REGISTRY",
    "CountTestParams",
    "CountWatch",
    "Counters",
    "Look",
    "WatchResult",
    "WatchState",
    "WatchStatus",
    "WatchStep",
    "WatchTest",
    "build_watches",
    "overall",
    "slow_counters",
]
