"""Schema of ``runbooks/canary_watch.yaml``: the canary watch's sequential tests and their parameters.

The watch (:mod:`diagnostics.canary_watch`) compares canary and stable on every look, per channel and
per test (errors, 5xx, SLA-slow requests), with anytime-valid e-processes. ``alpha`` bounds the
probability that a healthy canary is ever rolled back by the watch, over every channel and test of
one rollout and any number of looks: each (channel, test) runs at ``alpha / (channels × tests)``.

The file is read with :func:`load_canary_watch` (``file:line: field: what is expected`` on a mistake);
it is not one of the files ``load_runbooks()`` cross-checks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from diagnostics.runbooks.loader import load_yaml_model
from diagnostics.runbooks.schemas import Channel, Identifier, Strict

TestName = Literal["errors", "errors_5xx", "sla_slow"]
TEST_NAMES: tuple[str, ...] = get_args(TestName)
MAX_GRID_POINTS = 5000


class MixturePrior(Strict):
    """The mixing law over the rate ratio ``ρ`` (canary rate / stable rate) under the alternative.

    ``Beta(c/2, c/2)`` on ``q = r / (1 + r)``, ``r = ρ / tolerance``, kept to ``r > 1``: ``q`` is the
    share of the events the canary would produce with as many requests as stable. A larger
    concentration ``c`` puts the prior near ``ρ = tolerance`` (faster on small regressions, slower on
    large ones); ``c = 2`` is uniform in ``q``. The law is discretised on ``log r`` in steps of
    ``grid_step`` up to ``max_ratio`` (the mass beyond it sits on the last point)."""

    concentration: float = Field(
        default=2.0, gt=0, le=1000, description="c of the Beta(c/2, c/2) prior on r/(1+r); 2 = uniform"
    )
    grid_step: float = Field(
        default=0.02, gt=0, le=0.5, description="spacing of the grid on log(ρ/tolerance), in nats"
    )
    max_ratio: float = Field(
        default=10_000.0, gt=1, le=1e9, description="the largest ρ/tolerance on the grid (tail lumped there)"
    )

    @model_validator(mode="after")
    def _grid_size(self) -> MixturePrior:
        points = self.grid_points
        if points > MAX_GRID_POINTS:
            raise ValueError(
                f"grid_step {self.grid_step} up to max_ratio {self.max_ratio:g} makes {points} grid points "
                f"(at most {MAX_GRID_POINTS}); raise grid_step or lower max_ratio"
            )
        return self

    @property
    def grid_points(self) -> int:
        return max(1, math.ceil(math.log(self.max_ratio) / self.grid_step))


class ChannelWatch(Strict):
    """One channel's settings. ``slow_above_ms`` must be a bucket bound (``le``) of the service's
    latency histogram: a request is SLA-slow when it is not in the ``le`` bucket of that bound."""

    slow_above_ms: float = Field(gt=0, le=3_600_000, description="SLA bound: slower requests are SLA-slow")


class TargetWatchOverride(Strict):
    channels: dict[Channel, ChannelWatch] = Field(default_factory=dict)


class CanaryWatchRunbook(Strict):
    version: int = Field(ge=1)
    alpha: float = Field(
        gt=0,
        lt=0.5,
        description="P(a healthy canary is ever rolled back by the watch), over every channel and test "
        "of one rollout and unlimited looks; e.g. 0.005",
    )
    tolerance: float = Field(
        default=1.0,
        ge=1,
        le=100,
        description="the null is ρ <= tolerance: a canary up to this many times stable's rate is not "
        "a regression (1 = any excess, given enough events)",
    )
    min_events: int = Field(
        default=5, ge=0, le=1_000_000, description="canary events of a test before it may reject"
    )
    look_every_s: float = Field(default=5.0, ge=1, le=3600, description="seconds between looks")
    prior: MixturePrior = Field(default_factory=MixturePrior)
    tests: list[TestName] = Field(min_length=1, description=f"the tests run per channel: {TEST_NAMES}")
    channels: dict[Channel, ChannelWatch] = Field(min_length=1)
    target_overrides: dict[Identifier, TargetWatchOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> CanaryWatchRunbook:
        dupes = sorted({t for t in self.tests if self.tests.count(t) > 1})
        if dupes:
            raise ValueError(f"tests lists {', '.join(dupes)} more than once; list each test once")
        for target, override in self.target_overrides.items():
            unknown = sorted(c.value for c in override.channels if c not in self.channels)
            if unknown:
                raise ValueError(
                    f"target_overrides.{target}.channels: {', '.join(unknown)} not watched; "
                    f"channels defines: {', '.join(sorted(c.value for c in self.channels))}"
                )
        return self

    def alpha_per_test(self, channels: int | None = None) -> float:
        """The level of one (channel, test): ``alpha`` split evenly (Bonferroni: valid for e-values
        whatever their dependence) over ``channels`` (default: every watched channel) × the tests."""
        n = len(self.channels) if channels is None else channels
        if n < 1:
            raise ValueError("channels must be at least 1")
        return self.alpha / (n * len(self.tests))

    def channels_for(self, target: str) -> dict[Channel, ChannelWatch]:
        """The channel settings for ``target``: the defaults with the target's overrides on top."""
        override = self.target_overrides.get(target)
        return {**self.channels, **(override.channels if override else {})}


def load_canary_watch(path: Path) -> CanaryWatchRunbook:
    """``runbooks/canary_watch.yaml`` (or ``path``), validated; :class:`RunbookError` names the file,
    the line and the field of every mistake."""
    return load_yaml_model(path, CanaryWatchRunbook)
