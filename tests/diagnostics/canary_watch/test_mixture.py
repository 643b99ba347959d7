"""The mixture e-process: its prior is a probability law, it is the continuous Beta mixture it
discretises (closed form where the form is conjugate, scipy.integrate.quad where the share moves), and
one look keeps its expectation under the null (a martingale) or lowers it (a better canary, Bernoulli
outcomes): the facts Ville's inequality needs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from diagnostics.canary_watch.mixture import log_e_value, log_lr_increment, mixture

DEFAULT = (2.0, 1.0, 0.02, 10_000.0)  # concentration, tolerance, grid_step, max_ratio


def test_the_prior_is_a_probability_law_on_the_alternative() -> None:
    mix = mixture(*DEFAULT)
    assert mix.points == math.ceil(math.log(10_000) / 0.02) == 461
    assert np.exp(mix.log_weight).sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(mix.log_ratio) > 0) and mix.log_ratio[0] == pytest.approx(0.01)  # cell midpoints
    # Beta(1, 1) on q = r/(1+r), q > 1/2: the first cell [0, 0.02) holds 2·(σ(0.02) - 1/2)
    assert math.exp(mix.log_weight[0]) == pytest.approx(2 * (special.expit(0.02) - 0.5), rel=1e-9)
    # the tail beyond ρ = 10,000 sits on the last point: 2·P(q > σ(log 10^4)) = 2/10,001 for Beta(1, 1)
    assert math.exp(mix.log_weight[-1]) == pytest.approx(2 * (1 - special.expit(0.02 * 460)), rel=1e-6)


def test_invalid_mixture_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="tolerance >= 1"):
        mixture(2.0, 0.5, 0.02, 100.0)


def _continuous_log_e(looks: list[tuple[float, float, float]], a: float, tol: float) -> float:
    """log of ∫_0^∞ 2·Beta(a,a)-density-in-u · Π LR_t(u) du, by quad around the likelihood's peak."""

    def log_lr(u: float) -> float:
        rho = tol * math.exp(u)
        return sum(x * u - n * (math.log1p((rho - 1) * w) - math.log1p((tol - 1) * w)) for x, n, w in looks)

    def log_prior(u: float) -> float:
        return float(
            math.log(2)
            + a * (math.log(special.expit(u)) + math.log(special.expit(-u)))
            - special.betaln(a, a)
        )

    grid = np.linspace(0, 20, 4001)
    peak = max(grid, key=lambda u: log_lr(u) + log_prior(u))
    shift = log_lr(peak) + log_prior(peak)
    value, err = integrate.quad(
        lambda u: math.exp(log_lr(u) + log_prior(u) - shift), 0, 40, points=[peak], limit=400, epsabs=0
    )
    assert err < 1e-6 * value
    return math.log(value) + shift


@pytest.mark.parametrize(("x", "n"), [(5, 5), (12, 20), (30, 40), (100, 150), (260, 500)])
def test_at_a_constant_conjugate_share_it_is_the_truncated_beta_binomial_bayes_factor(x: int, n: int) -> None:
    # w = 1/(1+ρ0): the canary's event probability is q = r/(1+r) itself, the null's 1/2
    for tol in (1.0, 1.5):
        mix = mixture(2.0, tol, 0.02, 10_000.0)
        w = 1 / (1 + tol)
        grid = float(log_e_value(mix, log_lr_increment(mix, x, n, w)))
        a = 1.0
        closed = (
            math.log(2)
            + special.betaln(a + x, a + n - x)
            - special.betaln(a, a)
            + math.log(special.betaincc(a + x, a + n - x, 0.5))
            + n * math.log(2)
        )
        assert grid == pytest.approx(closed, abs=5e-3)  # within 0.5 %


@pytest.mark.parametrize(
    ("seed", "looks", "concentration", "tolerance"),
    [(1, 20, 2.0, 1.0), (2, 200, 2.0, 1.0), (3, 60, 10.0, 1.0), (4, 80, 2.0, 1.3), (5, 400, 0.5, 1.0)],
)
def test_with_a_moving_share_it_matches_direct_numerical_integration(
    seed: int, looks: int, concentration: float, tolerance: float
) -> None:
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.02, 0.3, looks)
    n = rng.poisson(6, looks)
    rho = rng.choice([1.0, 1.5, 3.0])
    x = rng.binomial(n, rho * w / (rho * w + 1 - w))
    mix = mixture(concentration, tolerance, 0.02, 10_000.0)
    grid = float(log_e_value(mix, log_lr_increment(mix, x, n, w).sum(0)))
    exact = _continuous_log_e(
        list(zip(x.tolist(), n.tolist(), w.tolist(), strict=True)), concentration / 2, tolerance
    )
    assert grid == pytest.approx(exact, abs=0.01)  # within 1 %


def test_a_look_without_events_adds_nothing_and_the_grid_broadcasts() -> None:
    mix = mixture(*DEFAULT)
    assert np.all(log_lr_increment(mix, 0, 0, 0.3) == 0)
    inc = log_lr_increment(mix, np.array([[1, 2, 3]]), np.array([[4, 4, 4]]), np.array([[0.1, 0.1, 0.1]]))
    assert inc.shape == (1, 3, mix.points)


def _log_expected_e_after(
    mix_args: tuple[float, float, float, float], prior_log_lr: np.ndarray, pmf: np.ndarray, n: int, w: float
) -> float:
    """log E[E_after] over x ~ pmf (in logs: an e-value of 500 canary events overflows a float)."""
    mix = mixture(*mix_args)
    xs = np.arange(n + 1)
    after = prior_log_lr + log_lr_increment(mix, xs, np.full(n + 1, n), np.full(n + 1, w))
    with np.errstate(divide="ignore"):
        return float(special.logsumexp(np.log(pmf) + log_e_value(mix, after)))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    w=st.floats(0.001, 0.999),
    tol=st.floats(1.0, 3.0),
    concentration=st.floats(0.5, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_under_the_null_one_look_keeps_the_expected_e_value(
    n: int, w: float, tol: float, concentration: float, seed: int
) -> None:
    """E[E_t | past] = E_{t-1} at ρ = ρ0, for any past (any state) and any share: a martingale."""
    args = (concentration, tol, 0.05, 1000.0)
    mix = mixture(*args)
    past = np.random.default_rng(seed).normal(0, 3, mix.points)  # an arbitrary state
    p0 = tol * w / (tol * w + 1 - w)
    pmf = stats.binom.pmf(np.arange(n + 1), n, p0)
    before = float(log_e_value(mix, past))
    assert _log_expected_e_after(args, past, pmf, n, w) == pytest.approx(before, abs=1e-9)
    # a canary better than the tolerance (ρ = ρ0 / 2) lowers it: a supermartingale on all of H0
    better = tol / 2 * w / (tol / 2 * w + 1 - w)
    assert _log_expected_e_after(args, past, stats.binom.pmf(np.arange(n + 1), n, better), n, w) <= before


@settings(max_examples=60, deadline=None)
@given(
    canary=st.integers(1, 80),
    stable=st.integers(1, 400),
    rate=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_with_bernoulli_requests_at_equal_rates_the_expectation_does_not_grow(
    canary: int, stable: int, rate: float, seed: int
) -> None:
    """Each request fails or not (not Poisson): given n failures the canary's count is hypergeometric,
    smaller than the binomial in the convex order, so the e-value stays a supermartingale at ρ0 = 1."""
    args = (2.0, 1.0, 0.05, 1000.0)
    mix = mixture(*args)
    n = max(1, round(rate * (canary + stable)))
    past = np.random.default_rng(seed).normal(0, 3, mix.points)
    pmf = stats.hypergeom.pmf(np.arange(n + 1), canary + stable, canary, n)
    before = float(log_e_value(mix, past))
    assert _log_expected_e_after(args, past, pmf, n, canary / (canary + stable)) <= before + 1e-9
