"""The Beta-Binomial risk against hand-computed and closed-form values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diagnostics.decision.risk import (
    UNIFORM,
    BetaParams,
    Counts,
    RiskKind,
    RiskVerdict,
    channel_risk,
    posterior,
    prior_from_reference,
    prior_weight,
    prob_greater,
    prob_greater_closed_form,
    prob_greater_monte_carlo,
)
from diagnostics.runbooks.decision import RiskParameters
from diagnostics.runbooks.schemas import Channel

PARAMS = RiskParameters(
    risk_threshold=0.95,
    error_margin=0.005,
    latency_margin=0.01,
    prior_weight=0.1,
    max_prior_requests=200,
    min_requests=50,
)


def beta(a: float, b: float) -> BetaParams:
    return BetaParams(alpha=a, beta=b)


# --- conjugate parameters, exactly ----------------------------------------------------------------


def test_prior_weight_is_capped_to_the_effective_sample_size() -> None:
    assert prior_weight(1_000, 0.1, 200) == 0.1  # 0.1 · 1000 = 100 <= 200
    assert prior_weight(10_000, 0.1, 200) == pytest.approx(0.02)  # 0.1 · 10000 = 1000 > 200
    assert prior_weight(0, 0.1, 200) == 0.1


def test_prior_and_posterior_by_hand() -> None:
    # stable reference 10 of 1000 failed, weight 0.1: Beta(1 + 1, 1 + 99)
    prior, w = prior_from_reference(10, 1000, 0.1, 200)
    assert (prior.alpha, prior.beta, w) == (2.0, 100.0, 0.1)
    # 100 of 10 000, capped at 200 requests: w = 0.02, Beta(1 + 2, 1 + 198)
    prior, w = prior_from_reference(100, 10_000, 0.1, 200)
    assert (prior.alpha, prior.beta) == pytest.approx((3.0, 199.0)) and w == pytest.approx(0.02)
    # canary 5 of 300: Beta(3 + 5, 199 + 295)
    post = posterior(prior, 5, 300)
    assert (post.alpha, post.beta) == pytest.approx((8.0, 494.0))
    assert post.mean == pytest.approx(8 / 502)
    # stable's own: Beta(1 + 40, 1 + 3960)
    stable = posterior(UNIFORM, 40, 4000)
    assert (stable.alpha, stable.beta) == (41.0, 3961.0)


def test_failures_beyond_requests_are_clipped() -> None:
    # increase() extrapolation can report 101 errors of 100 requests
    assert posterior(UNIFORM, 101, 100) == beta(101, 1)
    assert posterior(UNIFORM, -1, 100) == beta(1, 101)


# --- P(X > Y + m) ---------------------------------------------------------------------------------


def test_identical_distributions_are_even() -> None:
    assert prob_greater(beta(1, 1), beta(1, 1)) == pytest.approx(0.5, abs=1e-9)
    assert prob_greater(beta(11, 990), beta(11, 990)) == pytest.approx(0.5, abs=1e-9)


def test_uniforms_with_a_margin_by_hand() -> None:
    # X, Y ~ U(0, 1): P(X > Y + m) = (1 - m)^2 / 2
    for m in (0.0, 0.1, 0.5):
        assert prob_greater(UNIFORM, UNIFORM, m) == pytest.approx((1 - m) ** 2 / 2, abs=1e-9)


def test_small_case_by_hand() -> None:
    # X ~ Beta(2, 1) (density 2x), Y ~ U(0, 1): P(X > Y) = ∫ (1 - y²) dy = 2/3
    assert prob_greater(beta(2, 1), UNIFORM) == pytest.approx(2 / 3, abs=1e-9)
    assert prob_greater_closed_form(beta(2, 1), UNIFORM) == pytest.approx(2 / 3, abs=1e-12)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ((3, 7), (2, 8)),
        ((25, 1175), (110, 10890)),
        ((11, 990), (101, 9900)),
        ((201, 800), (5, 5)),
        ((2, 30000), (40, 100000)),
        ((1, 200), (300, 20000)),
    ],
)
def test_against_the_closed_form(x: tuple[int, int], y: tuple[int, int]) -> None:
    assert prob_greater(beta(*x), beta(*y)) == pytest.approx(
        prob_greater_closed_form(beta(*x), beta(*y)), abs=1e-9
    )


def test_against_the_closed_form_on_random_cases() -> None:
    rng = np.random.default_rng(7)
    for _ in range(100):
        n1, n2 = int(10 ** rng.uniform(1, 4.5)), int(10 ** rng.uniform(1, 5))
        p = 10 ** rng.uniform(-3.5, -0.5)
        x = beta(1 + rng.binomial(n1, min(1, 2 * p)), 1 + n1)
        y = beta(1 + rng.binomial(n2, p), 1 + n2)
        assert prob_greater(x, y) == pytest.approx(prob_greater_closed_form(x, y), abs=1e-8)


def test_complementary_events_sum_to_one() -> None:
    x, y = beta(25, 1175), beta(110, 10890)
    assert prob_greater(x, y) + prob_greater(y, x) == pytest.approx(1.0, abs=1e-9)


def test_monte_carlo_agrees_within_its_standard_error() -> None:
    x, y = beta(25, 1175), beta(110, 10890)
    for m in (0.0, 0.005, 0.01):
        exact = prob_greater(x, y, m)
        mc = prob_greater_monte_carlo(x, y, m, draws=200_000, seed=1)
        se = math.sqrt(max(exact * (1 - exact), 1e-6) / 200_000)
        assert abs(mc - exact) < 5 * se
    # seeded: the same number every time
    assert prob_greater_monte_carlo(x, y, 0.005, seed=3) == prob_greater_monte_carlo(x, y, 0.005, seed=3)


def test_the_margin_lowers_the_risk() -> None:
    x, y = beta(25, 1175), beta(110, 10890)  # 2.1 % vs 1.0 %
    risks = [prob_greater(x, y, m) for m in (0.0, 0.005, 0.01, 0.02)]
    assert risks == sorted(risks, reverse=True)
    assert risks[0] > 0.99 and risks[-1] < 0.05


# --- one channel --------------------------------------------------------------------------------------


def test_equal_rates_give_a_small_risk() -> None:
    r = channel_risk(
        Channel.TEXT,
        RiskKind.ERROR,
        Counts(requests=2000, failures=20),
        Counts(requests=20000, failures=200),
        Counts(requests=20000, failures=200),
        PARAMS,
    )
    assert r.verdict is RiskVerdict.ACCEPTABLE
    assert r.risk is not None and r.risk < 0.05
    # every number is recorded: prior Beta(1 + 0.01·200, 1 + 0.01·19800) = Beta(3, 199)
    assert r.prior == beta(3, 199) and r.prior_weight == pytest.approx(0.01)
    assert r.canary_posterior == beta(23, 2179)
    assert r.stable_posterior == beta(201, 19801)
    assert (r.margin, r.threshold, r.min_requests) == (0.005, 0.95, 50)
    assert "risk P(p_canary > p_stable + 0.005) = " in r.reason and "canary 20/2000 (1.00%)" in r.reason


def test_a_canary_ten_times_worse_with_1000_requests_is_risky() -> None:
    r = channel_risk(
        Channel.IMAGE,
        RiskKind.ERROR,
        Counts(requests=1000, failures=100),
        Counts(requests=20000, failures=200),
        Counts(requests=20000, failures=200),
        PARAMS,
    )
    assert r.verdict is RiskVerdict.RISKY
    assert r.risk is not None and r.risk > 0.99
    assert "> 0.95" in r.reason and "canary 100/1000 (10.00%)" in r.reason


def test_latency_kind_uses_its_own_margin() -> None:
    # 3 % of canary requests slower than the SLA against 0.5 % on stable: 2.5 points > the 1 point margin
    r = channel_risk(
        Channel.AUDIO,
        RiskKind.LATENCY,
        Counts(requests=1500, failures=45),
        Counts(requests=30000, failures=150),
        Counts(requests=30000, failures=150),
        PARAMS,
    )
    assert r.margin == 0.01 and r.verdict is RiskVerdict.RISKY
    assert "SLA-slow requests" in r.reason


def test_too_few_requests_is_no_verdict() -> None:
    # 49 canary requests, all failed: still no verdict
    r = channel_risk(
        Channel.TEXT,
        RiskKind.ERROR,
        Counts(requests=49, failures=49),
        Counts(requests=20000, failures=200),
        Counts(requests=20000, failures=200),
        PARAMS,
    )
    assert r.verdict is RiskVerdict.INSUFFICIENT_EVIDENCE and r.risk is None
    assert r.reason == "text error: canary 49 requests < min_requests 50"
    stable_short = channel_risk(
        Channel.TEXT,
        RiskKind.ERROR,
        Counts(requests=1000, failures=0),
        Counts(requests=10, failures=0),
        Counts(requests=0, failures=0),
        PARAMS,
    )
    assert stable_short.verdict is RiskVerdict.INSUFFICIENT_EVIDENCE
    assert "stable 10 requests < min_requests 50" in stable_short.reason


def test_unmeasured_slow_requests_are_no_verdict() -> None:
    r = channel_risk(
        Channel.TEXT,
        RiskKind.LATENCY,
        Counts(requests=1000, failures=None),
        Counts(requests=20000, failures=10),
        Counts(requests=20000, failures=10),
        PARAMS,
    )
    assert r.verdict is RiskVerdict.INSUFFICIENT_EVIDENCE
    assert r.reason == "text latency: canary SLA-slow requests not measured (no latency histogram)"


def test_no_reference_window_means_a_uniform_prior() -> None:
    r = channel_risk(
        Channel.TEXT,
        RiskKind.LATENCY,
        Counts(requests=1000, failures=10),
        Counts(requests=20000, failures=200),
        Counts(requests=20000, failures=None),  # the reference window had no histogram
        PARAMS,
    )
    assert r.prior == UNIFORM and r.canary_posterior == beta(11, 991)
    assert "uniform prior" in r.reason
