"""The vectorised statistics equal scipy's per column (to 1e-12), on random data of several shapes,
distributions, ties and unequal sizes; the corrections equal their definitions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from diagnostics.stats import drift as drift_stats
from diagnostics.stats import ks_pvalues as pvalue_stats
from diagnostics.stats.drift import (
    column_stats,
    column_std,
    ks_statistic,
    ks_test,
    sort_columns,
    wasserstein_distance,
)
from diagnostics.stats.ks_pvalues import MAX_EXACT_N, ks_pvalue
from diagnostics.stats.multiple_testing import bh_adjust, bonferroni_adjust

TOL = 1e-12


def _sample(rng: np.random.Generator, kind: str, n: int, d: int, shift: float) -> npt.NDArray[np.float64]:
    if kind == "normal":
        return rng.standard_normal((n, d)) * (1 + shift) + shift
    if kind == "lognormal":  # latency-like: skewed, in the hundreds
        return np.exp(rng.normal(5 + shift, 0.5, (n, d)))
    if kind == "exponential":
        return rng.exponential(1 + shift, (n, d))
    if kind == "ties":  # few distinct values: ties within and between the samples
        return rng.integers(0, 8 + int(3 * shift), (n, d)).astype(np.float64)
    if kind == "rounded":  # integer milliseconds: some ties
        return np.round(rng.gamma(2.0, 40 * (1 + shift), (n, d)))
    raise AssertionError(kind)


def _assert_equals_scipy(ref: npt.NDArray[np.floating], cur: npt.NDArray[np.floating]) -> None:
    got = column_stats(ref, cur, chunk_columns=3)
    for j in range(ref.shape[1]):
        ks = stats.ks_2samp(ref[:, j], cur[:, j])
        w = stats.wasserstein_distance(ref[:, j], cur[:, j])
        assert abs(got.ks_statistic[j] - ks.statistic) <= TOL, (j, got.ks_statistic[j], ks.statistic)
        assert abs(got.ks_pvalue[j] - ks.pvalue) <= TOL, (j, got.ks_pvalue[j], ks.pvalue)
        # W is in the data's units: the bound is relative for latency-sized values.
        assert abs(got.wasserstein[j] - w) <= TOL * max(1.0, abs(w)), (j, got.wasserstein[j], w)
    assert bool(got.ks_exact.all()) == (max(ref.shape[0], cur.shape[0]) <= MAX_EXACT_N)


@pytest.mark.parametrize(
    ("kind", "n_ref", "n_cur", "d", "seed"),
    [
        ("normal", 50, 50, 8, 1),
        ("normal", 60, 45, 8, 2),
        ("normal", 7, 5, 6, 3),
        ("normal", 1, 3, 4, 4),
        ("normal", 2000, 1500, 4, 5),
        ("lognormal", 500, 800, 5, 6),
        ("exponential", 333, 334, 5, 7),
        ("ties", 300, 200, 6, 8),
        ("ties", 40, 40, 6, 9),
        ("rounded", 1200, 900, 4, 10),
        ("normal", 10_000, 9_999, 2, 11),  # exact, at scipy's limit
        ("normal", 10_001, 10_000, 2, 12),  # asymptotic, just past it
        ("lognormal", 30_000, 20_000, 3, 13),  # asymptotic
        ("rounded", 25_000, 12_000, 3, 14),  # asymptotic with ties
    ],
)
@pytest.mark.parametrize("shift", [0.0, 0.15])
def test_equal_to_scipy_per_column(
    kind: str, n_ref: int, n_cur: int, d: int, seed: int, shift: float
) -> None:
    rng = np.random.default_rng(seed)
    _assert_equals_scipy(_sample(rng, kind, n_ref, d, 0.0), _sample(rng, kind, n_cur, d, shift))


def test_float32_and_mixed_dtypes_equal_scipy() -> None:
    rng = np.random.default_rng(20)
    ref = rng.standard_normal((400, 5)).astype(np.float32)
    cur = (rng.standard_normal((350, 5)) + 0.1).astype(np.float32)
    _assert_equals_scipy(ref, cur)
    _assert_equals_scipy(ref, cur.astype(np.float64))
    _assert_equals_scipy(np.round(ref * 4), np.round(cur * 4))  # float32 with ties


def test_edge_cases_equal_scipy() -> None:
    rng = np.random.default_rng(21)
    same = rng.standard_normal((100, 3))
    _assert_equals_scipy(same, same.copy())  # D = 0, p = 1, W = 0
    _assert_equals_scipy(same, same + 100.0)  # disjoint supports: D = 1
    constant = np.ones((80, 2))
    _assert_equals_scipy(constant, constant * 2)  # constant columns
    _assert_equals_scipy(constant, rng.standard_normal((90, 2)))
    got = column_stats(same, same)
    assert np.all(got.ks_statistic == 0) and np.all(got.ks_pvalue == 1) and np.all(got.wasserstein == 0)
    none = column_stats(np.zeros((5, 0)), np.zeros((7, 0)), workers=2)  # no features: nothing to test
    assert none.ks_pvalue.shape == none.wasserstein.shape == (0,) and none.n_current == 7


def test_one_dimensional_input_is_one_column() -> None:
    rng = np.random.default_rng(22)
    ref, cur = rng.normal(0, 1, 500), rng.normal(0.2, 1, 300)
    got = ks_test(ref, cur)
    want = stats.ks_2samp(ref, cur)
    assert got.statistic.shape == (1,)
    assert abs(got.statistic[0] - want.statistic) <= TOL and abs(got.pvalue[0] - want.pvalue) <= TOL
    assert abs(wasserstein_distance(ref, cur)[0] - stats.wasserstein_distance(ref, cur)) <= TOL
    assert abs(ks_statistic(ref, cur)[0] - want.statistic) <= TOL


def test_a_sorted_reference_threads_and_chunks_change_nothing() -> None:
    rng = np.random.default_rng(23)
    ref, cur = rng.standard_normal((3000, 37)), rng.standard_normal((2500, 37)) + 0.05
    base = column_stats(ref, cur)
    for variant in (
        column_stats(sort_columns(ref), cur),
        column_stats(sort_columns(ref), sort_columns(cur)),
        column_stats(ref, cur, workers=2, chunk_columns=5),
        column_stats(ref, cur, chunk_columns=1),
    ):
        np.testing.assert_array_equal(variant.ks_statistic, base.ks_statistic)
        np.testing.assert_array_equal(variant.ks_pvalue, base.ks_pvalue)
        np.testing.assert_array_equal(variant.wasserstein, base.wasserstein)
    np.testing.assert_allclose(column_std(sort_columns(ref)), np.std(ref, axis=0), rtol=1e-13)


def test_signed_zeros_ties_and_tiny_samples_equal_scipy() -> None:
    rng = np.random.default_rng(26)
    # -0.0 and +0.0 are one value for scipy (and tie across the samples); the keys of the merged sort
    # tell them apart, the tie check does not.
    for dtype in (np.float64, np.float32):
        ref = rng.choice([-1.5, -0.0, 0.0, 0.0, 2.0], size=(300, 3)).astype(dtype)
        cur = rng.choice([-0.0, -0.0, 0.0, 2.0, 3.0], size=(200, 3)).astype(dtype)
        _assert_equals_scipy(ref, cur)
        _assert_equals_scipy(ref[:, :1] * 0.0, -ref[:, :1] * 0.0)  # all zeros, of both signs
    for n_ref, n_cur in ((1, 1), (1, 2), (2, 1), (2, 2), (3, 1)):
        _assert_equals_scipy(rng.standard_normal((n_ref, 3)), rng.standard_normal((n_cur, 3)))
        _assert_equals_scipy(np.zeros((n_ref, 2)), np.zeros((n_cur, 2)))  # one value, all tied
    # integer-valued float64: the low digits are the same for every value (their passes are skipped)
    _assert_equals_scipy(
        rng.integers(-5, 5, (400, 3)).astype(np.float64), rng.integers(-5, 6, (300, 3)) * 1.0
    )
    # huge and tiny magnitudes, subnormals, both signs: the keys keep the floats' order
    wide = np.array([-1e300, -3.0, -1e-310, -5e-324, 5e-324, 1e-310, 1e-300, 2.5, 1e300])
    _assert_equals_scipy(rng.choice(wide, (150, 2)), rng.choice(wide, (120, 2)))
    _assert_equals_scipy(rng.choice(wide[1:-1], (150, 2)).astype(np.float32), rng.choice(wide, (90, 2)))


def test_layouts_and_the_wide_gap_path_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(27)
    ref = np.round(rng.standard_normal((700, 6)), 1)  # ties, within and between the samples
    cur = np.round(rng.standard_normal((650, 6)) + 0.1, 1)
    base = column_stats(ref, cur)
    for variant in (
        column_stats(np.asfortranarray(ref), cur[::-1]),  # column-major input; row order is irrelevant
        column_stats(ref.astype(np.float64)[:, ::-1][:, ::-1], np.ascontiguousarray(cur), chunk_columns=4),
    ):
        np.testing.assert_array_equal(variant.ks_pvalue, base.ks_pvalue)
        np.testing.assert_array_equal(variant.wasserstein, base.wasserstein)
    # Above n_ref·n_cur = 2**49 near-extreme positions are evaluated too: same floats here.
    monkeypatch.setattr(drift_stats, "_EXACT_GAP_LIMIT", 1)
    wide = column_stats(ref, cur)
    np.testing.assert_array_equal(wide.ks_statistic, base.ks_statistic)
    np.testing.assert_array_equal(wide.ks_pvalue, base.ks_pvalue)


def test_large_windows_in_the_smirnov_branch_equal_scipy() -> None:
    # 60 000 + 60 000 values: effective n 30 000; shifts that put n·D² in [2.2, 370), where the p-value
    # is scipy's Smirnov series (summed here with numpy), on two threads.
    rng = np.random.default_rng(28)
    ref = rng.standard_normal((60_000, 3)).astype(np.float32)
    cur = (rng.standard_normal((60_000, 3)) + np.array([0.0, 0.02, 0.06])).astype(np.float32)
    got = column_stats(ref, cur, workers=2, chunk_columns=2)
    for j in range(3):
        ks = stats.ks_2samp(ref[:, j], cur[:, j])
        assert got.ks_statistic[j] == ks.statistic
        assert abs(got.ks_pvalue[j] - ks.pvalue) <= 1e-15 * max(1.0, ks.pvalue * 1e3), (
            j,
            got.ks_pvalue[j],
            ks.pvalue,
        )
        w = stats.wasserstein_distance(ref[:, j], cur[:, j])
        assert abs(got.wasserstein[j] - w) <= TOL * max(1.0, w)
    series = 30_000 * got.ks_statistic**2
    assert ((series >= 2.2) & (series < 370)).sum() >= 2


def test_smirnov_series_equals_scipys() -> None:
    from scipy import special

    rng = np.random.default_rng(29)
    checked = 0
    for n, points in ((141, 12), (500, 12), (4_000, 12), (12_000, 12), (50_000, 12), (333_333, 2)):
        lo, hi = np.sqrt(2.2 / n), min(np.sqrt(370 / n), 0.499)
        for x in np.concatenate([np.geomspace(lo, hi, points), rng.uniform(lo, hi, 4)]).tolist():
            got, want = pvalue_stats._smirnov_sf(n, x), float(special.smirnov(n, x))
            assert abs(got - want) <= 1e-16 + 1e-12 * want, (n, x, got, want)
            if want > 1e-100:
                assert abs(got - want) <= 1e-13 * want, (n, x, got, want)
            checked += 1
    assert checked == 86
    # outside the summed case it is scipy's own call
    assert pvalue_stats._smirnov_sf(1000, 0.002) == special.smirnov(1000, 0.002)
    assert pvalue_stats._smirnov_sf(2_000_000, 0.001) == special.smirnov(2_000_000, 0.001)


def test_kstwo_sf_equals_scipys_in_every_branch() -> None:
    rng = np.random.default_rng(30)
    for n in (5, 140, 141, 1_000, 12_000, 50_000, 2_000_000):
        d = np.concatenate(
            [
                [0.0, 0.1 / n, 0.5 / n, 0.9 / n, 1 / n, 1.5 / n, (n - 1.5) / n, 0.5, 0.7, 1.0],
                np.sqrt(np.array([0.5, 2.19, 2.2, 2.21, 18.0, 100.0, 369.9, 370.0, 400.0]) / n),
                rng.uniform(0, min(1.0, 6 / np.sqrt(n)), 20),
            ]
        )
        d = d[(d >= 0) & (d <= 1)]
        want = stats.kstwo.sf(d, n)
        got = pvalue_stats._kstwo_sf(d, n)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-16)
        series = n * d * d
        scipys = ~((n > 140) & (n <= 1_000_000) & (series >= 2.2) & (series < 370) & (d < 0.5) & (n * d > 1))
        np.testing.assert_array_equal(got[scipys], want[scipys])


def test_pvalues_use_scipys_distributions() -> None:
    # Asymptotic: kstwo at the effective size round(n·m / (n + m)), as ks_2samp does: scipy's own
    # call, except in the Smirnov-series branch (2.2 <= n·D² < 370: here D = 0.02), summed with numpy.
    d = np.array([0.0, 0.001, 0.01, 0.02, 0.5, 1.0])
    got = ks_pvalue(d, 20_000, 30_000)
    want = np.clip(stats.kstwo.sf(d, 12_000), 0, 1)
    series = 12_000 * d**2
    scipys = (series < 2.2) | (series >= 370)
    np.testing.assert_array_equal(got.pvalue[scipys], want[scipys])
    np.testing.assert_allclose(got.pvalue, want, rtol=1e-13, atol=1e-16)
    assert not got.exact.any()
    # Exact: rounded to the lattice h / lcm(n, m), once per distinct value.
    got = ks_pvalue(np.array([0.25, 0.25, 0.5, 0.0]), 8, 12)
    assert got.exact.all() and got.pvalue[0] == got.pvalue[1] and got.pvalue[3] == 1.0
    rng = np.random.default_rng(24)
    a, b = rng.standard_normal(8), rng.standard_normal(12) + 1
    want = stats.ks_2samp(a, b)
    assert ks_pvalue(np.array([want.statistic]), 8, 12).pvalue[0] == want.pvalue


def test_scipys_exact_routine_is_there() -> None:
    # Without it ks_pvalue would fall back to asymptotic p-values for small samples (documented);
    # a scipy upgrade that removes it should fail here rather than change p-values quietly.
    assert pvalue_stats._scipy_exact_2kssamp is not None


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        column_stats(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0]))
    # Found on the merged sort (NaN and ±inf sort to its ends), named by the sample they are in.
    ok = np.linspace(-1, 1, 40).reshape(20, 2)
    for bad in (np.nan, -np.nan, np.inf, -np.inf):
        for dtype in (np.float64, np.float32):
            spoilt = ok.astype(dtype)
            spoilt[7, 1] = bad
            with pytest.raises(ValueError, match=r"^current: contains NaN or infinite"):
                column_stats(ok.astype(dtype), spoilt)
            with pytest.raises(ValueError, match=r"^reference: contains NaN or infinite"):
                ks_test(spoilt, ok.astype(dtype), workers=2, chunk_columns=1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        sort_columns(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="same features"):
        column_stats(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="no rows"):
        column_stats(np.zeros((0, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        column_stats(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_bh_equals_scipys_false_discovery_control() -> None:
    rng = np.random.default_rng(25)
    for m in (1, 2, 10, 512):
        p = np.concatenate([rng.uniform(size=m - m // 10), rng.uniform(0, 1e-4, size=m // 10)])
        np.testing.assert_allclose(bh_adjust(p), stats.false_discovery_control(p, method="bh"), rtol=1e-14)
    p = np.array([0.01, 0.01, 0.5, 0.002])  # ties and order
    np.testing.assert_allclose(bh_adjust(p), stats.false_discovery_control(p), rtol=1e-14)
    assert bh_adjust(np.array([])).size == 0


def test_bonferroni_by_hand() -> None:
    np.testing.assert_allclose(bonferroni_adjust([0.001, 0.01, 0.3]), [0.003, 0.03, 0.9], rtol=1e-15)
    np.testing.assert_array_equal(bonferroni_adjust([0.5, 0.6]), [1.0, 1.0])
