"""The drift check: does the current window still look like the reference, feature by feature?

For each feature of a set (the latency of each channel; each embedding dimension, or each component of
a projection fitted on the reference), the two-sample KS test and the Wasserstein distance of the
current window against the reference (:mod:`diagnostics.stats.drift`), then, with the bounds of
``runbooks/thresholds.yaml`` (``drift``):

- **correction**: the KS p-values of the set are corrected together, Benjamini-Hochberg by default
  (Bonferroni optional), so 512 dimensions do not raise ~5 false alarms at p < 0.01 by chance;
- **W normalised**: ``W / max(σ_ref, 1e-3)``, the distance in reference standard deviations (Evidently's
  "normed" Wasserstein, same floor), so one bound fits features of any unit — milliseconds and
  embedding coordinates alike. A shift of the whole distribution by ``s·σ`` gives ``W/σ = s``;
- **composite**: the seed's ``0.6·(1 - p) + 0.4·W`` with ``p`` the corrected p-value and ``W`` the
  normalised distance capped at 1 (so the score lies in [0, 1]; the cap changes no level for composite
  bounds up to 0.99). It mixes a probability (how sure that something changed) with an effect size (how
  much): a large sample makes ``1 - p`` reach 1 for a negligible change, which is why level 2 also needs
  ``W`` over its own bound;
- **level** per feature: 1 when one statistic is over its bound (record, widen the window), 2 when both
  are and the composite is above its bound (a decision input); the set's level is its worst feature's.

W has no correction and a sampling floor: two windows of one normal distribution give on average
``W/σ ≈ 1.25·√(1/n_ref + 1/n_cur)`` (measured: 0.24 at 50 + 50 values, 0.056 at 1000 + 1000, 0.018 at
10 000 + 10 000), and the largest of 512 dimensions about 2.5 times that. Below a few thousand values
per window W alone therefore puts some features at level 1 — the "widen the window" case, by design;
level 2 also needs the corrected KS test.

Status: level 2 ``failed``, level 1 ``degraded``, level 0 ``ok``; a feature with fewer than
``min_samples`` values in either window is ``insufficient_evidence`` — never a verdict, never a pass:
where no feature could be tested, or the tested ones are level 0 but some could not be, the status is
``insufficient_evidence``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.runbooks.schemas import Channel, Component, DriftThresholds, Severity
from diagnostics.stats.arrays import BoolArray, FloatArray
from diagnostics.stats.drift import column_stats, column_std
from diagnostics.stats.multiple_testing import bh_adjust, bonferroni_adjust
from diagnostics.stats.projection import Projection, ProjectionKind, fit_projection

CHECK: Literal["drift"] = "drift"
KS_WEIGHT = 0.6  # the seed's composite: 0.6·(1 - p) + 0.4·W
WASSERSTEIN_WEIGHT = 0.4
SCALE_FLOOR = 1e-3  # smallest reference std W is divided by (Evidently's), for near-constant features
# The module behind each channel; the same map as
# diagnostics.golden_window.metrics_sla.COMPONENT_OF (a test keeps
# them equal), not imported so that this package needs only numpy, scipy and pydantic.
COMPONENT_OF: dict[Channel, Component] = {
    Channel.TEXT: Component.LLM,
    Channel.IMAGE: Component.EMBEDDING,
    Channel.AUDIO: Component.AUDIO_PROCESSOR,
    Channel.ROUTER: Component.MULTIMODAL_ROUTER,
}

Level: TypeAlias = Literal[0, 1, 2]
Correction: TypeAlias = Literal["bh", "bonferroni"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureDrift(_Model):
    """One feature's statistics, bounds applied."""

    feature: str
    n_reference: int
    n_current: int
    ks_statistic: float
    ks_pvalue: float = Field(description="as scipy.stats.ks_2samp reports it")
    ks_pvalue_corrected: float = Field(description="after the set's multiple-testing correction")
    ks_exact: bool = Field(description="exact p-value (both windows <= 10 000 values) or asymptotic")
    wasserstein: float = Field(description="in the feature's units")
    reference_std: float
    wasserstein_normalised: float = Field(description="W / max(reference std, 1e-3)")
    composite: float = Field(description="0.6·(1 - corrected p) + 0.4·min(W normalised, 1)")
    level: Level

    def line(self) -> str:
        """The numbers, for a summary or a finding's evidence."""
        return (
            f"{self.feature}: KS D={self.ks_statistic:.3f} p={self.ks_pvalue:.2g}"
            f" (corrected {self.ks_pvalue_corrected:.2g}), W={self.wasserstein:.3g}"
            f" ({self.wasserstein_normalised:.3f} σ_ref), composite {self.composite:.3f},"
            f" level {self.level}; {self.n_reference} vs {self.n_current} values"
        )


class DriftCounts(_Model):
    """How many features of the set are over each bound."""

    features: int = Field(description="features tested (enough values in both windows)")
    ks_raw: int = Field(description="uncorrected KS p below the bound: what no correction would flag")
    ks_corrected: int = Field(description="corrected KS p below the bound")
    wasserstein: int = Field(description="normalised W above its bound")
    level_1: int
    level_2: int


class ProjectionInfo(_Model):
    """Which projection the features are components of (fitted on the reference only)."""

    kind: Literal["pca", "random"]
    input_dims: int
    components: int
    seed: int | None
    fitted_rows: int
    explained_variance: float | None
    fingerprint: str = Field(description="SHA-256 of the matrix and mean: equal means the same projection")


class DriftResult(CheckResult):
    """Drift of one feature set (latency per channel, or one embedding space)."""

    check: Literal["drift"] = CHECK
    feature_set: str = Field(description="'latency', or the embedding space's name")
    level: Level | None = Field(description="the worst tested feature's level; None: nothing tested")
    correction: Correction
    thresholds: DriftThresholds
    counts: DriftCounts
    feature_levels: dict[str, Level | None] = Field(
        description="every feature's level; None: insufficient evidence for it"
    )
    top: list[FeatureDrift] = Field(description="the most drifting features, by composite then W")
    insufficient: dict[str, str] = Field(default_factory=dict, description="feature -> why not tested")
    projection: ProjectionInfo | None = None


# --- one function per statistic --------------------------------------------------------------------


def correct_pvalues(pvalues: npt.ArrayLike, correction: Correction) -> FloatArray:
    """The set's KS p-values corrected for testing all its features at once."""
    if correction == "bh":
        return bh_adjust(pvalues)
    if correction == "bonferroni":
        return bonferroni_adjust(pvalues)
    raise ValueError(f"unknown correction {correction!r}; expected bh or bonferroni")


def normalised_wasserstein(wasserstein: npt.ArrayLike, reference_std: npt.ArrayLike) -> FloatArray:
    """``W / max(σ_ref, 1e-3)``: the distance in reference standard deviations."""
    w = np.asarray(wasserstein, dtype=np.float64)
    return np.asarray(w / np.maximum(np.asarray(reference_std, dtype=np.float64), SCALE_FLOOR))


def composite_score(pvalue_corrected: npt.ArrayLike, wasserstein_norm: npt.ArrayLike) -> FloatArray:
    """``0.6·(1 - p) + 0.4·min(W, 1)`` (see the module docstring for the cap and what it mixes)."""
    p = np.asarray(pvalue_corrected, dtype=np.float64)
    w = np.asarray(wasserstein_norm, dtype=np.float64)
    return np.asarray(KS_WEIGHT * (1.0 - p) + WASSERSTEIN_WEIGHT * np.minimum(w, 1.0))


def drift_levels(
    pvalue_corrected: npt.ArrayLike,
    wasserstein_norm: npt.ArrayLike,
    composite: npt.ArrayLike,
    cfg: DriftThresholds,
) -> npt.NDArray[np.int8]:
    """0, 1 (one statistic over its bound) or 2 (both, and the composite above its bound)."""
    ks_over = np.asarray(pvalue_corrected) < cfg.ks_p_value
    w_over = np.asarray(wasserstein_norm) > cfg.wasserstein
    level_2 = ks_over & w_over & (np.asarray(composite) > cfg.composite)
    return np.where(level_2, 2, np.where(ks_over | w_over, 1, 0)).astype(np.int8)


# --- assembling a result ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tested:
    """The raw statistics of the tested features, aligned."""

    names: list[str]
    n_reference: npt.NDArray[np.int64]
    n_current: npt.NDArray[np.int64]
    ks_statistic: FloatArray
    ks_pvalue: FloatArray
    ks_exact: BoolArray
    wasserstein: FloatArray
    reference_std: FloatArray


def _evaluate(
    tested: _Tested, cfg: DriftThresholds, top: int
) -> tuple[list[FeatureDrift], list[FeatureDrift], DriftCounts]:
    """Every tested feature (in input order), the top ``top`` of them, and the counts."""
    p_corr = correct_pvalues(tested.ks_pvalue, cfg.correction)
    w_norm = normalised_wasserstein(tested.wasserstein, tested.reference_std)
    comp = composite_score(p_corr, w_norm)
    levels = drift_levels(p_corr, w_norm, comp, cfg)
    features = [
        FeatureDrift(
            feature=name,
            n_reference=int(tested.n_reference[i]),
            n_current=int(tested.n_current[i]),
            ks_statistic=float(tested.ks_statistic[i]),
            ks_pvalue=float(tested.ks_pvalue[i]),
            ks_pvalue_corrected=float(p_corr[i]),
            ks_exact=bool(tested.ks_exact[i]),
            wasserstein=float(tested.wasserstein[i]),
            reference_std=float(tested.reference_std[i]),
            wasserstein_normalised=float(w_norm[i]),
            composite=float(comp[i]),
            level=cast(Level, int(levels[i])),
        )
        for i, name in enumerate(tested.names)
    ]
    order = np.lexsort((-w_norm, -comp))  # composite first, then W, descending; stable on ties
    ranked = [features[i] for i in order[: max(top, 0)]]
    counts = DriftCounts(
        features=len(features),
        ks_raw=int(np.sum(tested.ks_pvalue < cfg.ks_p_value)),
        ks_corrected=int(np.sum(p_corr < cfg.ks_p_value)),
        wasserstein=int(np.sum(w_norm > cfg.wasserstein)),
        level_1=int(np.sum(levels == 1)),
        level_2=int(np.sum(levels == 2)),
    )
    return features, ranked, counts


def _status(level: Level | None, insufficient: Mapping[str, str]) -> Status:
    if level is None:
        return Status.INSUFFICIENT_EVIDENCE
    if level == 2:
        return Status.FAILED
    if level == 1:
        return Status.DEGRADED
    return Status.INSUFFICIENT_EVIDENCE if insufficient else Status.OK


def _summary(
    feature_set: str,
    level: Level | None,
    counts: DriftCounts,
    ranked: Sequence[FeatureDrift],
    cfg: DriftThresholds,
    insufficient: Mapping[str, str],
    what: str,
) -> str:
    missing = ""
    if insufficient:
        shown = "; ".join(f"{k} ({v})" for k, v in list(insufficient.items())[:3])
        more = f" and {len(insufficient) - 3} more" if len(insufficient) > 3 else ""
        missing = f"; insufficient evidence for {shown}{more}"
    if level is None:
        return f"{feature_set} drift: no verdict, nothing could be tested{missing}"
    correction = "BH" if cfg.correction == "bh" else "Bonferroni"
    text = (
        f"{feature_set} drift level {level} over {counts.features} {what}: {counts.level_2} at level 2,"
        f" {counts.level_1} at level 1; KS {correction}-corrected p < {cfg.ks_p_value:g} on"
        f" {counts.ks_corrected} (uncorrected {counts.ks_raw}), W/σ_ref > {cfg.wasserstein:g} on"
        f" {counts.wasserstein}, composite bound {cfg.composite:g}"
    )
    if ranked:
        text += f"; top {ranked[0].line()}"
    return text + missing


def _result(
    feature_set: str,
    all_names: Sequence[str],
    tested: _Tested,
    cfg: DriftThresholds,
    insufficient: dict[str, str],
    *,
    top: int,
    what: str,
    findings_for: FindingsFor,
    projection: ProjectionInfo | None = None,
    details: dict[str, object] | None = None,
) -> DriftResult:
    features, ranked, counts = _evaluate(tested, cfg, top)
    by_name = {f.feature: f.level for f in features}
    feature_levels: dict[str, Level | None] = {name: by_name.get(name) for name in all_names}
    level: Level | None = max(f.level for f in features) if features else None
    return DriftResult(
        status=_status(level, insufficient),
        summary=_summary(feature_set, level, counts, ranked, cfg, insufficient, what),
        details=details or {},
        findings=findings_for(features, counts),
        feature_set=feature_set,
        level=level,
        correction=cfg.correction,
        thresholds=cfg,
        counts=counts,
        feature_levels=feature_levels,
        top=ranked,
        insufficient=insufficient,
        projection=projection,
    )


class FindingsFor:
    """Builds the findings of a set: one per drifting channel, or one for an embedding space."""

    def __init__(
        self,
        *,
        problem: str,
        component: str | None,
        channel: str | None,
        version: str | None,
        per_feature: bool,
    ) -> None:
        self.problem, self.component, self.channel = problem, component, channel
        self.version, self.per_feature = version, per_feature

    def __call__(self, features: Sequence[FeatureDrift], counts: DriftCounts) -> list[Finding]:
        drifting = sorted((f for f in features if f.level > 0), key=lambda f: (-f.level, -f.composite))
        if not drifting:
            return []
        if self.per_feature:
            return [self._finding(f.level, f.line(), f.feature) for f in drifting]
        worst = drifting[0].level
        evidence = (
            f"{counts.level_2} of {counts.features} features at level 2, {counts.level_1} at level 1; "
            + "; ".join(f.line() for f in drifting[:3])
        )
        return [self._finding(worst, evidence, self.channel)]

    def _finding(self, level: int, evidence: str, channel: str | None) -> Finding:
        component = self.component
        if component is None:  # a latency channel: the module behind it, else the gateway
            known = {c.value: m.value for c, m in COMPONENT_OF.items()}
            component = known.get(channel or "", Component.GATEWAY.value)
        what = self.problem.replace("_", " ")
        return Finding(
            check=CHECK,
            problem=self.problem,
            severity=Severity.HIGH if level == 2 else Severity.LOW,
            component=component,
            title=f"{what.capitalize()} (level {level})",
            evidence=evidence,
            action=(
                "a decision input: the distribution moved by more than the bounds allow"
                if level == 2
                else "record it and widen the window before acting"
            ),
            version=self.version,
            channel=channel,
        )


def _finite(values: npt.ArrayLike) -> tuple[FloatArray, int]:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    keep = np.isfinite(arr)
    return arr[keep], int(arr.size - np.count_nonzero(keep))


def _name(key: Channel | str) -> str:
    return key.value if isinstance(key, Channel) else str(key)


def _too_few(n_ref: int, n_cur: int, minimum: int) -> str | None:
    short = [
        f"{w} {n} < min_samples {minimum}"
        for w, n in (("reference", n_ref), ("current", n_cur))
        if n < minimum
    ]
    return ", ".join(short) if short else None


# --- the two uses ---------------------------------------------------------------------------------


def latency_drift(
    reference_ms: Mapping[Channel, npt.ArrayLike] | Mapping[str, npt.ArrayLike],
    current_ms: Mapping[Channel, npt.ArrayLike] | Mapping[str, npt.ArrayLike],
    cfg: DriftThresholds | None = None,
    *,
    version: str | None = None,
    top: int = 10,
) -> DriftResult:
    """Latency drift per channel: each channel's current latencies (ms) against its reference.

    A channel in either mapping is a feature; non-finite values are dropped (counted in ``details``),
    and a channel left with fewer than ``min_samples`` values in either window is not tested. The KS
    p-values of the tested channels are corrected together.
    """
    cfg = cfg or DriftThresholds()
    keys = list(dict.fromkeys([*reference_ms, *current_ms]))
    names = [_name(k) for k in keys]
    ref_by = {_name(k): v for k, v in reference_ms.items()}
    cur_by = {_name(k): v for k, v in current_ms.items()}
    insufficient: dict[str, str] = {}
    dropped: dict[str, dict[str, int]] = {}
    rows: list[tuple[str, int, int, float, float, bool, float, float]] = []
    for name in names:
        ref, ref_bad = _finite(ref_by.get(name, ()))
        cur, cur_bad = _finite(cur_by.get(name, ()))
        if ref_bad or cur_bad:
            dropped[name] = {"reference": ref_bad, "current": cur_bad}
        short = _too_few(ref.size, cur.size, cfg.min_samples)
        if short:
            insufficient[name] = short
            continue
        s = column_stats(ref, cur)
        std = float(column_std(ref)[0])
        rows.append(
            (
                name,
                ref.size,
                cur.size,
                float(s.ks_statistic[0]),
                float(s.ks_pvalue[0]),
                bool(s.ks_exact[0]),
                float(s.wasserstein[0]),
                std,
            )
        )
    tested = _Tested(
        names=[r[0] for r in rows],
        n_reference=np.array([r[1] for r in rows], dtype=np.int64),
        n_current=np.array([r[2] for r in rows], dtype=np.int64),
        ks_statistic=np.array([r[3] for r in rows], dtype=np.float64),
        ks_pvalue=np.array([r[4] for r in rows], dtype=np.float64),
        ks_exact=np.array([r[5] for r in rows], dtype=bool),
        wasserstein=np.array([r[6] for r in rows], dtype=np.float64),
        reference_std=np.array([r[7] for r in rows], dtype=np.float64),
    )
    return _result(
        "latency",
        names,
        tested,
        cfg,
        insufficient,
        top=top,
        what="channels",
        findings_for=FindingsFor(
            problem="latency_drift", component=None, channel=None, version=version, per_feature=True
        ),
        details={"dropped_non_finite": dropped} if dropped else None,
    )


def embedding_drift(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    cfg: DriftThresholds | None = None,
    projection: ProjectionKind | Projection | None = None,
    seed: int | None = None,
    *,
    components: int | None = None,
    name: str = "embedding",
    component: Component = Component.EMBEDDING,
    channel: Channel | str | None = None,
    version: str | None = None,
    top: int = 10,
    workers: int = 1,
) -> DriftResult:
    """Embedding drift: the current window's vectors (rows × dims) against the reference's.

    ``projection``: ``none`` tests every dimension; ``pca`` / ``random`` first project both windows
    with a projection fitted on the reference only (``components`` and ``seed`` default to the
    config's ``projection``), and a fitted :class:`Projection` may be passed in to reuse a stored one.
    Rows with a non-finite value are dropped (counted in ``details``). Fewer than ``min_samples`` rows
    in either window, or windows of different dimensions, is insufficient evidence (the dimension is the
    embedding-alignment check's verdict, not drift's).
    """
    cfg = cfg or DriftThresholds()
    kind: ProjectionKind = (
        cfg.projection.kind if projection is None or isinstance(projection, Projection) else projection
    )
    seed = cfg.projection.seed if seed is None else seed
    k = components or cfg.projection.components
    channel_name = _name(channel) if channel is not None else None
    findings_for = FindingsFor(
        problem="embedding_drift",
        component=component.value,
        channel=channel_name,
        version=version,
        per_feature=False,
    )
    ref = np.asarray(reference)
    cur = np.asarray(current)
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1]:
        why = f"reference shape {ref.shape} and current shape {cur.shape} are not rows of the same dimension"
        return _result(
            name, [], _empty(), cfg, {name: why}, top=top, what="features", findings_for=findings_for
        )
    ref, ref_bad = _finite_rows(ref)
    cur, cur_bad = _finite_rows(cur)
    details: dict[str, object] = {"rows": {"reference": int(ref.shape[0]), "current": int(cur.shape[0])}}
    if ref_bad or cur_bad:
        details["dropped_non_finite_rows"] = {"reference": ref_bad, "current": cur_bad}
    short = _too_few(ref.shape[0], cur.shape[0], cfg.min_samples)
    if short:
        return _result(
            name,
            [],
            _empty(),
            cfg,
            {name: short},
            top=top,
            what="features",
            findings_for=findings_for,
            details=details,
        )
    fitted = projection if isinstance(projection, Projection) else fit_projection(ref, kind, k, seed)
    if fitted is None:
        names = [f"dim_{j}" for j in range(ref.shape[1])]
    else:
        prefix = "pc" if fitted.kind == "pca" else "rp"
        names = [f"{prefix}_{j}" for j in range(fitted.components)]
    if fitted is not None:
        ref, cur = fitted.apply(ref), fitted.apply(cur)
    s = column_stats(ref, cur, workers=workers)
    d = len(names)
    tested = _Tested(
        names=names,
        n_reference=np.full(d, s.n_reference, dtype=np.int64),
        n_current=np.full(d, s.n_current, dtype=np.int64),
        ks_statistic=s.ks_statistic,
        ks_pvalue=s.ks_pvalue,
        ks_exact=s.ks_exact,
        wasserstein=s.wasserstein,
        reference_std=column_std(ref),
    )
    what = "dimensions" if fitted is None else f"{fitted.kind} components"
    return _result(
        name,
        names,
        tested,
        cfg,
        {},
        top=top,
        what=what,
        findings_for=findings_for,
        projection=_projection_info(fitted),
        details=details,
    )


def _finite_rows(x: npt.NDArray[Any]) -> tuple[npt.NDArray[np.floating[Any]], int]:
    arr = x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)
    keep = np.isfinite(arr).all(axis=1)
    bad = int(arr.shape[0] - np.count_nonzero(keep))
    return (arr if not bad else arr[keep]), bad


def _empty() -> _Tested:
    none_f = np.zeros(0, dtype=np.float64)
    none_i = np.zeros(0, dtype=np.int64)
    return _Tested([], none_i, none_i, none_f, none_f, np.zeros(0, dtype=bool), none_f, none_f)


def _projection_info(p: Projection | None) -> ProjectionInfo | None:
    if p is None:
        return None
    return ProjectionInfo(
        kind=p.kind,
        input_dims=p.input_dims,
        components=p.components,
        seed=p.seed,
        fitted_rows=p.fitted_rows,
        explained_variance=p.explained_variance,
        fingerprint=p.fingerprint(),
    )
