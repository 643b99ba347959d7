"""The drift check: levels from the thresholds, the correction's effect on false alarms, tiny samples,
stable projections, the result's shape, and the config section of thresholds.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from diagnostics.deep_diagnosis.drift_judge import (
    COMPONENT_OF,
    DriftResult,
    composite_score,
    correct_pvalues,
    drift_levels,
    embedding_drift,
    latency_drift,
    normalised_wasserstein,
)
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import Channel, Component, DriftProjection, DriftThresholds, Severity
from diagnostics.stats.projection import fit_projection, pca_projection, random_projection

REPO = Path(__file__).resolve().parents[3]
CFG = DriftThresholds()


def _latencies(rng: np.random.Generator, n: int, scale: float = 60.0) -> npt.NDArray[np.float64]:
    return rng.gamma(2.0, scale, n)  # ms: mean 120, a long right tail


def _windows(seed: int, n: int = 3000) -> tuple[dict[Channel, object], dict[Channel, object]]:
    rng = np.random.default_rng(seed)
    return (
        {c: _latencies(rng, n) for c in Channel},
        {c: _latencies(rng, n) for c in Channel},
    )


# --- the formulas -------------------------------------------------------------------------------------


def test_composite_levels_and_normalisation_by_hand() -> None:
    p = np.array([0.5, 0.001, 0.5, 0.001, 0.001])
    w = np.array([0.05, 0.05, 0.3, 0.2, 0.6])
    comp = composite_score(p, w)
    np.testing.assert_allclose(comp, 0.6 * (1 - p) + 0.4 * w)
    # none over; KS only; W only; both but composite 0.6·0.999 + 0.08 = 0.679 <= 0.7; all three
    np.testing.assert_array_equal(drift_levels(p, w, comp, CFG), [0, 1, 1, 1, 2])
    assert composite_score(0.0, 5.0) == pytest.approx(1.0)  # W capped at 1: the score stays in [0, 1]
    # W in reference standard deviations, with Evidently's floor for constant features
    np.testing.assert_allclose(normalised_wasserstein([2.0, 0.01], [4.0, 0.0]), [0.5, 10.0])


def test_corrections() -> None:
    p = np.array([0.001, 0.004, 0.03, 0.5])
    np.testing.assert_allclose(correct_pvalues(p, "bonferroni"), [0.004, 0.016, 0.12, 1.0])
    np.testing.assert_allclose(correct_pvalues(p, "bh"), [0.004, 0.008, 0.04, 0.5])
    with pytest.raises(ValueError, match="unknown correction"):
        correct_pvalues(p, "holm")  # type: ignore[arg-type]


# --- no drift -----------------------------------------------------------------------------------------


def test_same_distribution_is_level_0_on_most_seeds() -> None:
    results = [latency_drift(*_windows(seed)) for seed in range(20)]
    levels = [r.level for r in results]
    assert levels.count(0) >= 18, levels
    ok = results[levels.index(0)]
    assert ok.status is Status.OK and ok.findings == [] and ok.insufficient == {}
    assert ok.feature_levels == {c.value: 0 for c in Channel}


def test_bh_keeps_512_dimensions_free_of_false_alarms() -> None:
    rng = np.random.default_rng(7)
    ref = rng.standard_normal((8000, 512))
    cur = rng.standard_normal((8000, 512))
    result = embedding_drift(ref, cur, CFG)
    assert result.level == 0 and result.status is Status.OK, result.summary
    # Without the correction some of 512 null dimensions fall below p < 0.01 by chance (about 5).
    assert result.counts.ks_raw > result.counts.ks_corrected == 0
    assert result.counts.features == 512 and len(result.top) == 10
    bonf = embedding_drift(ref, cur, DriftThresholds(correction="bonferroni"))
    assert bonf.level == 0 and bonf.counts.ks_corrected == 0


# --- drift --------------------------------------------------------------------------------------------


def test_half_sigma_shift_on_a_tenth_of_the_dimensions_is_level_2() -> None:
    rng = np.random.default_rng(8)
    ref = rng.standard_normal((2000, 512))
    cur = rng.standard_normal((2000, 512))
    shifted = rng.choice(512, size=51, replace=False)
    cur[:, shifted] += 0.5
    result = embedding_drift(ref, cur, CFG, channel=Channel.IMAGE, version="canary")
    assert result.level == 2 and result.status is Status.FAILED, result.summary
    assert result.counts.level_2 >= 45
    assert {f.feature for f in result.top} <= {f"dim_{j}" for j in shifted}
    top = result.top[0]
    assert 0.35 < top.wasserstein_normalised < 0.7 and top.ks_pvalue_corrected < 1e-10 and top.composite > 0.7
    level_2 = {name for name, lv in result.feature_levels.items() if lv == 2}
    assert level_2 <= {f"dim_{j}" for j in shifted}
    (finding,) = result.findings
    assert finding.severity is Severity.HIGH and finding.component == Component.EMBEDDING.value
    assert finding.channel == "image" and finding.version == "canary" and "level 2" in finding.title
    assert "embedding drift level 2 over 512 dimensions" in result.summary


def test_a_tiny_shift_is_at_most_level_1() -> None:
    rng = np.random.default_rng(9)
    n = 50_000
    ref = {"text": _latencies(rng, n), "image": _latencies(rng, n)}
    # 3 % slower: with 50 000 requests KS is sure something moved, but W is 0.03 σ, under its bound.
    cur = {"text": _latencies(rng, n) * 1.03, "image": _latencies(rng, n)}
    result = latency_drift(ref, cur, CFG)
    assert result.level == 1 and result.status is Status.DEGRADED, result.summary
    text = result.top[0]
    assert text.feature == "text" and text.ks_pvalue_corrected < CFG.ks_p_value
    assert text.wasserstein_normalised < CFG.wasserstein and not text.ks_exact
    (finding,) = result.findings
    assert finding.severity is Severity.LOW and finding.component == Component.LLM.value
    assert finding.channel == "text" and "widen the window" in finding.action
    smaller = latency_drift(ref, {"text": _latencies(rng, n) * 1.002, "image": cur["image"]}, CFG)
    assert smaller.level in (0, 1)


def test_latency_slowdown_is_level_2_on_its_channel_only() -> None:
    ref, cur = _windows(10)
    cur[Channel.AUDIO] = np.asarray(cur[Channel.AUDIO]) * 1.5  # 50 % slower: W ≈ 0.7 σ
    result = latency_drift(ref, cur, CFG, version="canary")
    assert result.feature_levels == {"text": 0, "image": 0, "audio": 2, "router": 0}
    assert result.status is Status.FAILED
    (finding,) = result.findings
    assert finding.channel == "audio" and finding.component == Component.AUDIO_PROCESSOR.value
    assert finding.problem == "latency_drift" and "W=" in finding.evidence
    assert "latency drift level 2 over 4 channels" in result.summary and "top audio" in result.summary


# --- tiny samples -----------------------------------------------------------------------------------


def test_tiny_samples_are_insufficient_evidence_not_a_verdict() -> None:
    rng = np.random.default_rng(11)
    few = latency_drift({"text": _latencies(rng, 49)}, {"text": _latencies(rng, 500) * 3}, CFG)
    assert few.status is Status.INSUFFICIENT_EVIDENCE and few.level is None
    assert few.feature_levels == {"text": None} and few.findings == []
    assert few.insufficient == {"text": "reference 49 < min_samples 50"}
    assert "no verdict" in few.summary

    empty = latency_drift({}, {}, CFG)
    assert empty.status is Status.INSUFFICIENT_EVIDENCE and empty.counts.features == 0

    rows = embedding_drift(rng.standard_normal((30, 16)), rng.standard_normal((500, 16)) + 3, CFG)
    assert rows.status is Status.INSUFFICIENT_EVIDENCE and rows.level is None
    assert rows.insufficient == {"embedding": "reference 30 < min_samples 50"}


def test_a_channel_without_data_is_never_counted_as_a_pass() -> None:
    ref, cur = _windows(12)
    cur[Channel.ROUTER] = np.array([np.nan] * 100 + [100.0] * 10)  # 10 finite values left
    del ref[Channel.TEXT]  # no reference for text
    result = latency_drift(ref, cur, CFG)
    assert result.level == 0 and result.status is Status.INSUFFICIENT_EVIDENCE
    assert result.feature_levels == {"image": 0, "audio": 0, "router": None, "text": None}
    assert result.insufficient == {
        "router": "current 10 < min_samples 50",
        "text": "reference 0 < min_samples 50",
    }
    assert result.details["dropped_non_finite"] == {"router": {"reference": 0, "current": 100}}


def test_other_dimensions_are_not_drift_evidence() -> None:
    rng = np.random.default_rng(13)
    result = embedding_drift(rng.standard_normal((100, 512)), rng.standard_normal((100, 768)), CFG)
    assert (
        result.status is Status.INSUFFICIENT_EVIDENCE and "same dimension" in result.insufficient["embedding"]
    )


def test_rows_with_missing_values_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(14)
    cur = rng.standard_normal((300, 8))
    cur[:5, 2] = np.nan
    result = embedding_drift(rng.standard_normal((300, 8)), cur, CFG)
    assert result.details["dropped_non_finite_rows"] == {"reference": 0, "current": 5}
    assert result.top[0].n_current == 295


# --- projections ------------------------------------------------------------------------------------


def test_projections_are_stable_and_fitted_on_the_reference_only() -> None:
    rng = np.random.default_rng(15)
    mixing = rng.standard_normal((64, 64))
    ref = rng.standard_normal((3000, 64)) @ mixing
    first, again = pca_projection(ref, 8), pca_projection(ref.copy(), 8)
    np.testing.assert_array_equal(first.matrix, again.matrix)
    assert first.fingerprint() == again.fingerprint()
    # the principal axes are the right singular vectors of the centred reference, signs fixed
    _, _, vt = np.linalg.svd(ref - ref.mean(axis=0), full_matrices=False)
    for k in range(8):
        assert abs(abs(float(first.matrix[:, k] @ vt[k])) - 1) < 1e-8
    np.testing.assert_allclose(first.matrix.T @ first.matrix, np.eye(8), atol=1e-12)
    assert 0 < (first.explained_variance or 0) < 1

    # a shift of 0.6 σ along the first principal axis
    axis_std = float(first.apply(ref)[:, 0].std())
    shifted = rng.standard_normal((800, 64)) @ mixing + 0.6 * axis_std * first.matrix[:, 0]
    results = [
        embedding_drift(ref, cur, CFG, projection="pca", components=8)
        for cur in (rng.standard_normal((3000, 64)) @ mixing, shifted)
    ]
    assert {r.projection.fingerprint for r in results if r.projection} == {first.fingerprint()}
    assert results[0].level == 0 and results[1].level == 2 and results[1].top[0].feature == "pc_0"
    assert [f for f in results[0].feature_levels] == [f"pc_{k}" for k in range(8)]

    rp = random_projection(64, 8, seed=3)
    np.testing.assert_array_equal(rp.matrix, random_projection(64, 8, seed=3).matrix)
    assert rp.fingerprint() != random_projection(64, 8, seed=4).fingerprint()
    seeded = embedding_drift(ref, ref[:1000], CFG, projection="random", seed=3, components=8)
    assert seeded.projection is not None and seeded.projection.fingerprint == rp.fingerprint()
    # a stored projection can be passed in and is used as it is
    reused = embedding_drift(ref, ref[:500], CFG, projection=first)
    assert reused.projection is not None and reused.projection.fingerprint == first.fingerprint()
    assert fit_projection(ref, "none", 8) is None


def test_projection_defaults_come_from_the_config() -> None:
    rng = np.random.default_rng(16)
    ref, cur = rng.standard_normal((400, 40)), rng.standard_normal((400, 40))
    cfg = DriftThresholds(projection=DriftProjection(kind="random", components=5, seed=9))
    result = embedding_drift(ref, cur, cfg)
    assert result.projection is not None
    assert (result.projection.kind, result.projection.components, result.projection.seed) == ("random", 5, 9)
    assert (
        embedding_drift(ref, cur, CFG).projection is None
        and len(embedding_drift(ref, cur).feature_levels) == 40
    )


# --- the result ---------------------------------------------------------------------------------------


def test_result_round_trips_as_json_and_names_its_numbers() -> None:
    ref, cur = _windows(17, n=500)
    result = latency_drift(ref, cur, DriftThresholds(correction="bonferroni"))
    again = DriftResult.model_validate_json(result.model_dump_json())
    assert again == result and again.check == "drift" and again.correction == "bonferroni"
    f = result.top[0]
    assert f.ks_pvalue_corrected == pytest.approx(min(1.0, 4 * f.ks_pvalue))
    assert f.ks_exact and f.n_reference == 500
    assert "Bonferroni-corrected p < 0.01" in result.summary


def test_component_map_matches_the_metrics_check() -> None:
    from diagnostics.golden_window.metrics_sla import COMPONENT_OF as METRICS_COMPONENT_OF

    assert COMPONENT_OF == METRICS_COMPONENT_OF


def test_the_drift_modules_need_no_airflow_and_no_heavy_dependencies() -> None:
    code = (
        "import sys, diagnostics.deep_diagnosis.drift_judge, diagnostics.stats.drift; "
        "heavy = {'airflow', 'torch', 'pandas', 'prometheus_api_client', 'httpx', 'open_clip', 'whisper'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_thresholds_yaml_has_the_drift_section() -> None:
    drift = load_runbooks(REPO / "runbooks", environ={}).thresholds.drift
    assert (drift.ks_p_value, drift.wasserstein, drift.composite, drift.min_samples) == (0.01, 0.1, 0.7, 50)
    assert drift.correction == "bh" and drift.projection == DriftProjection(
        kind="none", components=32, seed=0
    )
    assert drift == DriftThresholds()  # the code's defaults are the runbook's values
