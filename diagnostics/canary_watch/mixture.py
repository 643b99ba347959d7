"""The mixture e-process of the count test, as plain vectorised numpy (the stateful API is
:mod:`diagnostics.canary_watch.sequential`; the simulation benchmark calls these functions directly).

Model, per look ``t``: canary events ``x_t`` among ``n_t`` events of both versions, canary share of the
requests ``w_t``. With Poisson events at rates ``λ_c = ρ·λ_s`` per request, conditionally on ``n_t``

    x_t ~ Binomial(n_t, p_t(ρ)),   p_t(ρ) = ρ·w_t / (ρ·w_t + 1 - w_t).

Against ``ρ0`` (the tolerance) the likelihood ratio of one look at ``ρ = ρ0·e^u`` is

    log LR_t(u) = x_t·u - n_t·[log(1 + (ρ - 1)·w_t) - log(1 + (ρ0 - 1)·w_t)],

a product over looks is a nonnegative martingale under ``ρ = ρ0`` (a supermartingale under
``ρ < ρ0`` when ``u > 0``: the expectation of the ratio falls with the true ``p``), whatever ``w_t`` is,
as long as the share is known before the look's events are counted (here: the same look's requests,
which the binomial conditions on). The e-process is the mixture ``E_t = Σ_k π_k · Π_s LR_s(u_k)`` over
a fixed grid ``u_k > 0``: a mixture of test martingales is a test martingale, so the grid is part of
the test's definition (an exact, discrete prior), not an approximation that validity relies on.

The prior ``π`` discretises ``Beta(a, a)``, ``a = concentration / 2``, on ``q = r/(1+r)``,
``r = ρ/ρ0 = e^u``, kept to ``q > 1/2``: point ``k`` sits at the middle of the cell
``[k·h, (k+1)·h)`` of ``u`` and carries the Beta mass of that cell, the last point the whole tail.
With the share fixed at ``w = 1/(1+ρ0)`` it is, up to the grid, the truncated conjugate Beta-binomial
Bayes factor of Lindon et al.'s count test (tested against the closed form); the grid lets the share
move from look to look, which the conjugate form cannot. The grid costs power only when the posterior
of ``u`` is narrower than the step ``h`` (its width is about ``1/sqrt(canary events)``): with
``h = 0.02``, beyond ~2,500 canary events, and even there the e-value is off the continuous mixture's
by about ``exp(±events·h²/8)`` at most (the likelihood's peak half a step from the nearest point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import special

from diagnostics.stats.arrays import FloatArray


@dataclass(frozen=True)
class Mixture:
    """The grid and the prior weights of one parameter set (immutable, cached by :func:`mixture`)."""

    tolerance: float
    log_ratio: FloatArray  # u_k = log(ρ_k / ρ0), increasing, > 0
    ratio_minus_one: FloatArray  # ρ_k - 1
    log_weight: FloatArray  # log π_k, logsumexp = 0

    @property
    def points(self) -> int:
        return int(self.log_ratio.size)


@lru_cache(maxsize=64)
def mixture(concentration: float, tolerance: float, grid_step: float, max_ratio: float) -> Mixture:
    """The discretised ``Beta(c/2, c/2)`` prior on ``r/(1+r)``, ``r = ρ/tolerance > 1``."""
    if not (concentration > 0 and tolerance >= 1 and grid_step > 0 and max_ratio > 1):
        raise ValueError(
            "mixture needs concentration > 0, tolerance >= 1, grid_step > 0 and max_ratio > 1; got "
            f"{concentration}, {tolerance}, {grid_step}, {max_ratio}"
        )
    points = max(1, math.ceil(math.log(max_ratio) / grid_step))
    a = concentration / 2
    edges = np.arange(points + 1, dtype=np.float64) * grid_step  # cell k: [edges[k], edges[k+1])
    upper = special.betaincc(a, a, special.expit(edges))  # P(q > σ(edge)); 1/2 at edge 0
    upper[-1] = 0.0  # the last cell takes the whole tail
    mass = (upper[:-1] - upper[1:]) / upper[0]
    with np.errstate(divide="ignore"):
        log_weight = np.log(mass)
    u = (np.arange(points, dtype=np.float64) + 0.5) * grid_step
    keep = np.isfinite(log_weight)  # cells too far in the tail to carry any mass in float64
    u, log_weight = u[keep], log_weight[keep]
    log_weight = log_weight - special.logsumexp(log_weight)
    for arr in (u, log_weight):
        arr.setflags(write=False)
    ratio_minus_one = tolerance * np.exp(u) - 1.0
    ratio_minus_one.setflags(write=False)
    return Mixture(tolerance, u, ratio_minus_one, log_weight)


def log_lr_increment(
    mix: Mixture, canary_events: npt.ArrayLike, events: npt.ArrayLike, share: npt.ArrayLike
) -> FloatArray:
    """``log LR_t(u_k)`` of one look on every grid point: shape ``broadcast(inputs) + (points,)``.

    ``canary_events`` among ``events`` of both versions, ``share`` the canary's share of the look's
    requests (in [0, 1]). A look without events adds 0 whatever its share."""
    x = np.asarray(canary_events, dtype=np.float64)[..., None]
    n = np.asarray(events, dtype=np.float64)[..., None]
    w = np.asarray(share, dtype=np.float64)[..., None]
    null = np.log1p((mix.tolerance - 1.0) * w)
    return x * mix.log_ratio - n * (np.log1p(mix.ratio_minus_one * w) - null)  # type: ignore[no-any-return]


def log_e_value(mix: Mixture, log_lr: FloatArray) -> FloatArray:
    """``log E``: the prior-weighted mixture of the cumulative likelihood ratios (last axis: grid)."""
    return special.logsumexp(log_lr + mix.log_weight, axis=-1)  # type: ignore[no-any-return]
