"""Exact bounds of a failure share: the defining equations, the figures of issue 19, the looks."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from diagnostics.stats.bounds import (
    ShareVerdict,
    judge_share,
    lower_bound,
    probes_needed,
    share_greater_p,
    upper_bound,
)


def test_zero_in_24_bounds_the_share_at_11_7_percent_and_5_percent_needs_59() -> None:
    assert upper_bound(0, 24, 0.05) == pytest.approx(1 - 0.05 ** (1 / 24))
    assert round(upper_bound(0, 24, 0.05), 4) == 0.1173
    assert probes_needed(0.05, 0.05) == 59 == math.ceil(math.log(0.05) / math.log(0.95))
    assert upper_bound(0, 58, 0.05) > 0.05 > upper_bound(0, 59, 0.05)
    verdict = judge_share(0, 24, 0.05)
    assert (verdict.verdict, verdict.share, verdict.lower) == (ShareVerdict.UNDECIDED, 0.0, 0.0)
    assert judge_share(0, 59, 0.05).verdict is ShareVerdict.UNDER


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 400), data=st.data(), alpha=st.sampled_from([0.05, 0.0125, 0.001]))
def test_the_bounds_solve_the_clopper_pearson_equations(n: int, data: st.DataObject, alpha: float) -> None:
    k = data.draw(st.integers(0, n))
    up, low = upper_bound(k, n, alpha), lower_bound(k, n, alpha)
    assert 0 <= low <= k / n <= up <= 1
    if k < n:  # the share at the upper bound shows k or fewer failures with probability alpha
        assert stats.binom.cdf(k, n, up) == pytest.approx(alpha, rel=1e-6)
    if k > 0:  # ... and at the lower bound, k or more with probability alpha
        assert stats.binom.sf(k - 1, n, low) == pytest.approx(alpha, rel=1e-6)


def test_a_verdict_needs_the_bound_on_its_side_of_the_tolerance() -> None:
    assert judge_share(10, 40, 0.05, looks=3).verdict is ShareVerdict.OVER
    assert judge_share(1, 80, 0.05, looks=3).verdict is ShareVerdict.UNDECIDED
    assert judge_share(1, 120, 0.05, looks=3).verdict is ShareVerdict.UNDER
    assert judge_share(0, 0, 0.05).verdict is ShareVerdict.UNDECIDED and judge_share(0, 0, 0.05).share is None
    # each of 3 looks tests at alpha / 3: 0 of 59 is enough for one look, not for three
    assert judge_share(0, 59, 0.05, looks=1).verdict is ShareVerdict.UNDER
    assert judge_share(0, 59, 0.05, looks=3).verdict is ShareVerdict.UNDECIDED
    assert probes_needed(0.05, 0.05 / 3) == 80


def test_looking_three_times_keeps_the_chance_of_a_wrong_ok_under_alpha() -> None:
    # a share exactly at the tolerance: an ok is wrong; 3 looks of 40 at alpha / 3 each
    rng = np.random.default_rng(7)
    trials = 5000
    counts = np.cumsum(rng.binomial(40, 0.05, size=(trials, 3)), axis=1)
    # the verdict of every reachable (k, n), computed once
    verdict = {
        (k, n): judge_share(k, n, 0.05, looks=3).verdict
        for n in (40, 80, 120)
        for k in range(int(counts.max()) + 1)
    }
    wrong_ok = wrong_failed = 0
    for row in counts:
        for look, k in enumerate(row):
            v = verdict[(int(k), 40 * (look + 1))]
            if v is not ShareVerdict.UNDECIDED:
                wrong_ok += v is ShareVerdict.UNDER
                wrong_failed += v is ShareVerdict.OVER
                break
    assert wrong_ok / trials < 0.05 and wrong_failed / trials < 0.05


def test_fisher_one_sided_p_is_the_hypergeometric_tail() -> None:
    # 12 of 40 against 4 of 40: P(X >= 12), X ~ Hypergeometric(80 probes, 16 failures, 40 drawn)
    tail = sum(comb(16, k) * comb(64, 40 - k) for k in range(12, 17)) / comb(80, 40)
    assert share_greater_p(12, 40, 4, 40) == pytest.approx(tail) == pytest.approx(0.02408, abs=1e-5)
    assert share_greater_p(4, 40, 12, 40) > 0.99
    assert share_greater_p(3, 40, 3, 40) > 0.5
    assert share_greater_p(1, 0, 0, 40) == 1.0
