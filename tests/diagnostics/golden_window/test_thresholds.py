"""The pure math of the metrics check, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from diagnostics.golden_window.thresholds import (
    api_dynamic_threshold_ms,
    asr_dynamic_threshold_ms,
    fit_gamma,
    histogram_to_samples,
    load_ratio,
)
from diagnostics.runbooks.schemas import ApiDynamic, AsrDynamic

ASR = AsrDynamic(sigma_multiplier=3.3, load_coefficient=0.15)
API = ApiDynamic(floor_ms=180, qps_coefficient=0.02)


def test_asr_threshold_by_hand() -> None:
    # 300 + 3.3 * 20 * (1 + 0.15 * 2) = 300 + 66 * 1.3 = 300 + 85.8 = 385.8
    assert asr_dynamic_threshold_ms(300, 20, 2.0, ASR) == pytest.approx(385.8)
    # no load: 300 + 3.3 * 20 * (1 + 0) = 366
    assert asr_dynamic_threshold_ms(300, 20, 0.0, ASR) == pytest.approx(366.0)


def test_api_threshold_by_hand() -> None:
    # 150 * e^(0.02 * 10) = 150 * 1.2214028 = 183.2104 > floor 180
    assert api_dynamic_threshold_ms(150, 10, API) == pytest.approx(183.2104, abs=1e-3)
    # 150 * e^0 = 150 < 180: the floor holds
    assert api_dynamic_threshold_ms(150, 0, API) == 180
    # 400 * e^(0.02 * 50) = 400 * e = 1087.3127
    assert api_dynamic_threshold_ms(400, 50, API) == pytest.approx(1087.3127, abs=1e-3)


def test_load_ratio() -> None:
    assert load_ratio(30, 10) == 3.0  # 30 / 10
    assert load_ratio(5, 0) is None  # no reference traffic: no ratio
    assert load_ratio(math.nan, 1) is None


def test_gamma_fit_by_hand() -> None:
    # With loc = 0 the gamma MLE has k * θ = mean(x) and ln k - ψ(k) = ln mean(x) - mean(ln x).
    # x = 1, 2, 3, 4: mean 2.5; mean ln x = (0 + 0.693147 + 1.098612 + 1.386294) / 4 = 0.794513;
    # s = ln 2.5 - 0.794513 = 0.916291 - 0.794513 = 0.121778.
    # Minka's approximation k ≈ (3 - s + sqrt((s - 3)^2 + 24 s)) / (12 s)
    #   = (2.878222 + sqrt(8.284606 + 2.922672)) / 1.461336 = (2.878222 + 3.347727) / 1.461336 = 4.2604
    # (within 1.5 % of the MLE), so θ ≈ 2.5 / 4.26 = 0.587.
    fit = fit_gamma([1, 2, 3, 4], quantile=0.99)
    assert fit is not None
    assert fit.shape == pytest.approx(4.2604, rel=0.015)
    assert math.log(fit.shape) - special.digamma(fit.shape) == pytest.approx(0.121778, abs=1e-5)
    assert fit.mean_ms == pytest.approx(2.5, rel=1e-6)
    assert fit.scale_ms == pytest.approx(2.5 / fit.shape, rel=1e-9)
    assert fit.std_ms == pytest.approx(math.sqrt(fit.shape) * fit.scale_ms)
    assert fit.quantile_ms == pytest.approx(stats.gamma.ppf(0.99, fit.shape, scale=fit.scale_ms))
    assert fit.samples == 4


def test_gamma_fit_recovers_a_known_distribution() -> None:
    rng = np.random.default_rng(7)
    x = rng.gamma(shape=3.0, scale=40.0, size=20000)  # mean 120 ms, std sqrt(3) * 40 = 69.3 ms
    fit = fit_gamma(x, quantile=0.999)
    assert fit is not None
    assert fit.shape == pytest.approx(3.0, rel=0.05)
    assert fit.scale_ms == pytest.approx(40.0, rel=0.05)
    assert fit.std_ms == pytest.approx(69.28, rel=0.05)


def test_gamma_fit_needs_two_distinct_positive_samples() -> None:
    assert fit_gamma([]) is None
    assert fit_gamma([5.0]) is None
    assert fit_gamma([5.0, 5.0, 5.0]) is None  # the likelihood grows without bound in k
    assert fit_gamma([0.0, -1.0, math.nan]) is None


def test_histogram_to_samples_spreads_counts_inside_buckets() -> None:
    # cumulative (le seconds, count): (0.1, 2), (0.2, 3), (+Inf, 4) -> per bucket 2, 1, 1.
    # (0, 0.1] with 2 samples: 0 + (0.5, 1.5) / 2 * 0.1 s = 0.025, 0.075 s = 25, 75 ms;
    # (0.1, 0.2] with 1: 0.1 + 0.5 * 0.1 = 0.15 s = 150 ms; +Inf: at the last finite bound, 200 ms.
    samples = histogram_to_samples([(float("inf"), 4), (0.2, 3), (0.1, 2)])
    assert samples.tolist() == pytest.approx([25.0, 75.0, 150.0, 200.0])


def test_histogram_to_samples_caps_and_keeps_the_tail() -> None:
    # counts 1000, 2000, 1 scaled by 100 / 3001 = 0.0333: rint(33.3) = 33, rint(66.6) = 67, and the
    # single +Inf request keeps one sample: 33 + 67 + 1 = 101.
    samples = histogram_to_samples([(0.1, 1000), (0.2, 3000), (float("inf"), 3001)], max_samples=100)
    assert len(samples) == 101
    assert (samples <= 100).sum() == 33
    assert samples.max() == 200.0


def test_histogram_to_samples_ignores_negative_and_empty() -> None:
    assert histogram_to_samples([]).size == 0
    assert histogram_to_samples([(0.1, 0.0), (float("inf"), 0.0)]).size == 0
    # a cumulative count that goes down (extrapolated increase) gives no negative bucket:
    # per bucket 3, max(2 - 3, 0) = 0, 4 - 2 = 2 -> 3 + 0 + 2 = 5 samples.
    assert histogram_to_samples([(0.1, 3), (0.2, 2), (float("inf"), 4)]).size == 5
    # fractional increases from extrapolation are rounded: 2.4 -> 2
    assert histogram_to_samples([(0.1, 2.4), (float("inf"), 2.4)]).size == 2
