"""The count test of the canary watch, one look at a time: an immutable state and one look in, a new
state and a result out.

**What it tests.** For one channel and one kind of event (errors, 5xx, SLA-slow requests; see
:mod:`diagnostics.canary_watch.registry`): is the canary's event rate per request more than
``tolerance`` times stable's? ``H0: ρ <= ρ0`` against ``ρ > ρ0``, one-sided: a canary that does
better than stable never rejects.

**The guarantee.** The e-value ``E_t`` (:mod:`diagnostics.canary_watch.mixture`) is a nonnegative
supermartingale with ``E_0 = 1`` under ``H0``, so by Ville's inequality

    P(E_t >= 1/α for some t) <= α,

over unlimited looks, with any stopping or continuation rule: the watch may look every 5 seconds
for weeks and a healthy canary is rejected with probability at most ``α`` in all. ``min_events`` only
delays a rejection (a stopping rule), which keeps the bound.

**Assumptions.** Within a look, each version's events are Poisson in its requests with rates in a
fixed ratio ``ρ`` (a load change both versions see cancels out: only the canary's share of the events
is tested, given its share ``w_t`` of the requests). Then ``x_t | n_t ~ Binomial(n_t, ρw/(ρw+1-w))``.
With Bernoulli outcomes per request instead (each request fails or not) and ``ρ0 = 1``, the canary's
count given the total is hypergeometric, which is smaller than the binomial in the convex order
(Hoeffding, 1963): the likelihood ratio, convex in ``x_t``, keeps expectation ``<= 1`` and the bound
still holds. Traffic that differs between versions (sticky tenants, a different request mix) is
outside the model: ``tolerance`` is the margin for it.

**Missing data never rejects.** A look without a series for either version, a counter that went down
(a restart: reset), or counts that contradict each other (more events than requests since the last
look) pause the test: the look adds no evidence, the e-value is kept, and the next deltas start from a
fresh baseline (after a gap, the next complete look only sets the baseline). Whether a look is missing
or reset does not depend on how its events split between the versions, so multiplying in only the
complete looks keeps the supermartingale, and the bound is untouched.

**Cost per look.** Deltas of cumulative counters: 2 counter instant queries per channel per version
per test (its events counter and its requests counter; ``sla_slow``: the histogram's ``_count`` and
its ``_bucket{le=<SLA>}``). The requests counter is shared by ``errors`` and ``errors_5xx``, and one
instant query with ``sum by (version, channel)`` answers every channel and version at once: 4 queries
a look (requests, errors, 5xx, SLA bucket) cover the three tests of a whole target.
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from diagnostics.canary_watch.mixture import Mixture, log_e_value, log_lr_increment, mixture
from diagnostics.runbooks.canary_watch import CanaryWatchRunbook

MAX_LOG_E = 700.0  # e-values are reported up to e^700 (float range); the test uses log E


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WatchStatus(StrEnum):
    CONTINUE = "continue"  # no verdict yet: keep watching
    REJECT = "reject"  # the canary is worse than stable beyond the tolerance: roll it back
    PAUSED = "paused"  # this look added nothing (missing series, reset, contradictory counters)


class Counters(_Frozen):
    """One version's cumulative counter values at a look (Prometheus instant values)."""

    requests: float = Field(ge=0, allow_inf_nan=False)
    events: float = Field(ge=0, allow_inf_nan=False)


def slow_counters(count: float, at_or_below: float) -> Counters:
    """SLA-slow counters from a latency histogram: requests = ``_count``, events = ``_count`` minus
    the ``_bucket{le=<SLA bound>}`` value (requests not faster than the bound)."""
    if at_or_below > count:
        raise ValueError(
            f"histogram bucket {at_or_below:g} above its count {count:g}: the two values must come from "
            "the same scrape (query them in one instant query)"
        )
    return Counters(requests=count, events=count - at_or_below)


class Look(_Frozen):
    """Both versions' counters at one look; ``None`` where the version's series was missing."""

    canary: Counters | None
    stable: Counters | None
    reason: str | None = Field(default=None, max_length=300, description="why data is missing, if it is")


class CountTestParams(_Frozen):
    """The parameters of one (channel, test): its level and the mixture prior."""

    alpha: float = Field(gt=0, lt=1, description="this test's level: reject when E >= 1/alpha")
    tolerance: float = Field(default=1.0, ge=1, le=100)
    min_events: int = Field(default=5, ge=0)
    concentration: float = Field(default=2.0, gt=0, le=1000)
    grid_step: float = Field(default=0.02, gt=0, le=0.5)
    max_ratio: float = Field(default=10_000.0, gt=1, le=1e9)

    @classmethod
    def from_runbook(cls, book: CanaryWatchRunbook, channels: int | None = None) -> CountTestParams:
        """One test's parameters: ``alpha`` split over ``channels`` (default: the runbook's) × tests."""
        return cls(
            alpha=book.alpha_per_test(channels),
            tolerance=book.tolerance,
            min_events=book.min_events,
            concentration=book.prior.concentration,
            grid_step=book.prior.grid_step,
            max_ratio=book.prior.max_ratio,
        )

    @property
    def threshold(self) -> float:
        return 1.0 / self.alpha

    @property
    def mixture(self) -> Mixture:
        return mixture(self.concentration, self.tolerance, self.grid_step, self.max_ratio)


class WatchState(_Frozen):
    """Everything one test remembers between looks (immutable: each look makes a new one)."""

    log_lr: tuple[float, ...] = Field(default=(), description="cumulative log LR per grid point")
    baseline: Look | None = Field(default=None, description="the last complete look: deltas start here")
    canary_events: float = 0.0
    canary_requests: float = 0.0
    stable_events: float = 0.0
    stable_requests: float = 0.0
    looks: int = Field(default=0, ge=0, description="looks whose deltas were tested")
    paused_looks: int = Field(default=0, ge=0)
    log_e: float = 0.0
    rejected: bool = False


class WatchResult(_Frozen):
    status: WatchStatus
    test: str
    channel: str
    e_value: float = Field(description=f"the e-value (capped at e^{MAX_LOG_E:.0f})")
    log_e: float
    threshold: float = Field(description="1/alpha: the e-value that rejects")
    alpha: float
    canary_events: float
    canary_requests: float
    stable_events: float
    stable_requests: float
    looks: int
    paused_looks: int
    reason: str | None = Field(default=None, description="why the look paused")
    evidence: str = Field(description="one line for people")

    @model_validator(mode="after")
    def _reason_iff_paused(self) -> WatchResult:
        if (self.status is WatchStatus.PAUSED) != (self.reason is not None):
            raise ValueError("a paused result needs its reason, and only a paused one has one")
        return self


class WatchStep(_Frozen):
    state: WatchState
    result: WatchResult


def _count(x: float) -> str:
    return f"{round(x):,}"


def _e(log_e: float) -> str:
    e = math.exp(min(log_e, MAX_LOG_E))
    if e >= 1e6:
        return f"{e:.2e}"
    return f"{e:,.0f}" if e >= 100 else f"{e:.3g}"


class CountWatch:
    """One sequential count test for one channel: ``observe(state, look)`` is pure."""

    def __init__(self, test: str, channel: str, label: str, params: CountTestParams) -> None:
        self.test, self.channel, self.label, self.params = test, channel, label, params
        self._mix = params.mixture
        self._log_threshold = math.log(params.threshold)

    def start(self) -> WatchState:
        return WatchState(log_lr=(0.0,) * self._mix.points)

    def observe(self, state: WatchState, look: Look) -> WatchStep:
        if len(state.log_lr) != self._mix.points:
            raise ValueError(
                f"state has {len(state.log_lr)} grid points, this test's prior {self._mix.points}: "
                "a state belongs to the parameters it was started with (start a new one)"
            )
        if state.rejected:
            return self._step(state, None)
        if look.canary is None or look.stable is None:
            missing = [v for v, c in (("canary", look.canary), ("stable", look.stable)) if c is None]
            why = f"no {' and no '.join(missing)} series" + (f": {look.reason}" if look.reason else "")
            return self._pause(state, why, baseline=None)
        if state.baseline is None:  # the first look, or the first after a gap: deltas start here
            return self._step(state.model_copy(update={"baseline": look}), None)
        base_c, base_s = state.baseline.canary, state.baseline.stable
        assert base_c is not None and base_s is not None  # a baseline is a complete look
        dc_req, dc_ev = look.canary.requests - base_c.requests, look.canary.events - base_c.events
        ds_req, ds_ev = look.stable.requests - base_s.requests, look.stable.events - base_s.events
        deltas = (
            ("canary requests", dc_req),
            (f"canary {self.label}", dc_ev),
            ("stable requests", ds_req),
            (f"stable {self.label}", ds_ev),
        )
        went_down = [name for name, delta in deltas if delta < 0]
        if went_down:
            return self._pause(state, f"counter reset ({', '.join(went_down)} went down)", baseline=look)
        if dc_ev > dc_req or ds_ev > ds_req:
            why = f"more {self.label} than requests since the last look (counters out of step)"
            return self._pause(state, why, baseline=look)
        log_lr = np.asarray(state.log_lr)
        events, requests = dc_ev + ds_ev, dc_req + ds_req
        if events > 0:  # requests > 0 then, since events <= requests per version
            log_lr = log_lr + log_lr_increment(self._mix, dc_ev, events, dc_req / requests)
        new = state.model_copy(
            update={
                "log_lr": tuple(log_lr.tolist()),
                "baseline": look,
                "canary_events": state.canary_events + dc_ev,
                "canary_requests": state.canary_requests + dc_req,
                "stable_events": state.stable_events + ds_ev,
                "stable_requests": state.stable_requests + ds_req,
                "looks": state.looks + 1,
                "log_e": float(log_e_value(self._mix, log_lr)) if events > 0 else state.log_e,
            }
        )
        if new.log_e >= self._log_threshold and new.canary_events >= self.params.min_events:
            new = new.model_copy(update={"rejected": True})
        return self._step(new, None)

    def _pause(self, state: WatchState, reason: str, baseline: Look | None) -> WatchStep:
        new = state.model_copy(update={"baseline": baseline, "paused_looks": state.paused_looks + 1})
        return self._step(new, reason)

    def _step(self, state: WatchState, paused: str | None) -> WatchStep:
        status = (
            WatchStatus.REJECT
            if state.rejected
            else (WatchStatus.PAUSED if paused is not None else WatchStatus.CONTINUE)
        )
        result = WatchResult(
            status=status,
            test=self.test,
            channel=self.channel,
            e_value=math.exp(min(state.log_e, MAX_LOG_E)),
            log_e=state.log_e,
            threshold=self.params.threshold,
            alpha=self.params.alpha,
            canary_events=state.canary_events,
            canary_requests=state.canary_requests,
            stable_events=state.stable_events,
            stable_requests=state.stable_requests,
            looks=state.looks,
            paused_looks=state.paused_looks,
            reason=paused,
            evidence=self._evidence(state, status, paused),
        )
        return WatchStep(state=state, result=result)

    def _evidence(self, state: WatchState, status: WatchStatus, paused: str | None) -> str:
        canary = f"{_count(state.canary_events)}/{_count(state.canary_requests)}"
        stable = f"{_count(state.stable_events)}/{_count(state.stable_requests)}"
        counts = f"{self.channel}: canary {self.label} {canary} vs stable {stable}"
        e, threshold = _e(state.log_e), _e(self._log_threshold)
        if status is WatchStatus.REJECT:
            return f"{counts}, e={e} ≥ {threshold}"
        if status is WatchStatus.PAUSED:
            return f"{counts}, e={e} < {threshold}; paused: {paused}"
        if state.log_e >= self._log_threshold:  # over the threshold, but too few canary events yet
            return (
                f"{counts}, e={e} ≥ {threshold} but {_count(state.canary_events)} canary {self.label} "
                f"< min_events {self.params.min_events}"
            )
        return f"{counts}, e={e} < {threshold}"
