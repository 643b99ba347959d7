"""The vectorised statistics equal scipy's per column (to 1e-12), on random data of several shapes,
distributions, ties and unequal sizes; the corrections equal their definitions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from diagnostics.drift import stats as drift_stats
from diagnostics.drift.stats import (
    MAX_EXACT_N,
    bh_adjust,
    bonferroni_adjust,
    column_stats,
    column_std,
    ks_pvalue,
    ks_statistic,
    ks_test,
    sort_columns,
    wasserstein_distance,
)

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


def test_pvalues_use_scipys_distributions() -> None:
    # Asymptotic: kstwo at the effective size round(n·m / (n + m)), as ks_2samp does.
    d = np.array([0.0, 0.001, 0.01, 0.02, 0.5, 1.0])
    got = ks_pvalue(d, 20_000, 30_000)
    np.testing.assert_array_equal(got.pvalue, np.clip(stats.kstwo.sf(d, 12_000), 0, 1))
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
    assert drift_stats._scipy_exact_2kssamp is not None


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        column_stats(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0]))
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
