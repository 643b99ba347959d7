"""Latency statistics and the SOP's dynamic thresholds: small pure functions, no I/O.

Formulas (parameters from ``runbooks/thresholds.yaml`` ``dynamic``):

- gamma fit, ``loc`` fixed at 0: density ``f(x) = x^(k-1) e^(-x/θ) / (Γ(k) θ^k)``;
  mean ``kθ``, standard deviation ``√k θ``; quantile ``q`` is ``gamma.ppf(q, k, scale=θ)``.
- ASR: ``threshold = μ + sigma_multiplier · σ · (1 + load_coefficient · load_ratio)``.
- API: ``threshold = max(floor_ms, P99.99_base · e^(qps_coefficient · qps))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from diagnostics.runbooks.schemas import ApiDynamic, AsrDynamic

# Enough points for a stable MLE; more only costs time (the fit is O(n) per iteration).
MAX_SAMPLES = 2000
MIN_FIT_SAMPLES = 2


class GammaFit(BaseModel):
    """A gamma distribution fitted to latencies (milliseconds), ``loc`` fixed at 0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: float
    scale_ms: float
    mean_ms: float
    std_ms: float
    quantile: float
    quantile_ms: float
    samples: int


def fit_gamma(samples_ms: Sequence[float] | np.ndarray, quantile: float = 0.99) -> GammaFit | None:
    """Maximum-likelihood gamma fit (``scipy.stats.gamma.fit(x, floc=0)``) of positive latencies.

    Returns shape ``k``, scale ``θ``, mean ``kθ``, standard deviation ``√k·θ`` and the ``quantile``
    of the fitted distribution (``gamma.ppf``). ``None`` when there are fewer than two positive
    samples or they are all equal: the likelihood then has no finite maximum.
    """
    x = np.asarray(samples_ms, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size < MIN_FIT_SAMPLES or float(np.ptp(x)) == 0.0:
        return None
    shape, _loc, scale = stats.gamma.fit(x, floc=0)
    shape, scale = float(shape), float(scale)
    return GammaFit(
        shape=shape,
        scale_ms=scale,
        mean_ms=shape * scale,
        std_ms=math.sqrt(shape) * scale,
        quantile=quantile,
        quantile_ms=float(stats.gamma.ppf(quantile, shape, scale=scale)),
        samples=int(x.size),
    )


def histogram_to_samples(
    buckets: Sequence[tuple[float, float]], max_samples: int = MAX_SAMPLES, unit: float = 1000.0
) -> np.ndarray:
    """Pseudo-samples (in ``unit`` per second, i.e. ms by default) from cumulative histogram buckets.

    ``buckets`` are ``(le, cumulative count)`` pairs as Prometheus returns them for
    ``increase(x_bucket[w])``, in any order, ``le`` may be ``inf``. Approximation:

    - per-bucket counts are differences of the cumulative counts; negative differences (counter
      resets, ``increase()`` extrapolation) are clipped to 0, and fractional counts are kept as weights;
    - the ``n`` samples of a bucket ``(lo, hi]`` are spread evenly inside it, at
      ``lo + (i + 0.5)/n · (hi - lo)`` - the same linear interpolation ``histogram_quantile`` assumes;
      the first bucket starts at 0;
    - the ``+Inf`` bucket has no upper bound: its samples sit at the largest finite bound, so the
      tail beyond the last bucket is underestimated (a lower bound, never an invented value);
    - counts are scaled so the total is about ``max_samples`` (never scaled up), rounding to the
      nearest integer but keeping at least one sample for every non-empty bucket, so a rare slow
      tail is not dropped (the total may exceed ``max_samples`` by the number of such buckets).
    """
    ordered = sorted((float(le), float(count)) for le, count in buckets)
    if not ordered:
        return np.empty(0)
    bounds = np.array([le for le, _ in ordered])
    cumulative = np.array([count for _, count in ordered])
    counts = np.clip(np.diff(cumulative, prepend=0.0), 0.0, None)
    total = float(counts.sum())
    if total <= 0:
        return np.empty(0)
    factor = min(1.0, max_samples / total)
    n_per_bucket = np.where(counts > 0, np.maximum(np.rint(counts * factor), 1), 0).astype(int)
    finite = bounds[np.isfinite(bounds)]
    last_finite = float(finite.max()) if finite.size else 0.0
    parts: list[np.ndarray] = []
    lower = 0.0
    for hi, n in zip(bounds, n_per_bucket, strict=True):
        if n > 0:
            if math.isinf(hi):
                parts.append(np.full(n, last_finite))
            else:
                parts.append(lower + (np.arange(n) + 0.5) / n * (hi - lower))
        if math.isfinite(hi):
            lower = float(hi)
    return np.concatenate(parts) * unit if parts else np.empty(0)


def requests_slower_than(buckets: Sequence[tuple[float, float]], latency_ms: float) -> float | None:
    """Requests slower than ``latency_ms``, from cumulative histogram buckets ``(le seconds, count)``.

    ``total - cumulative(le*)`` where ``le*`` is the largest bucket bound at or below the latency and
    ``total`` the ``+Inf`` bucket (the largest cumulative count where there is none). Requests between
    ``le*`` and the latency are counted as slow, so this is an upper bound that is exact when the
    latency is a bucket bound (the testbed's buckets include every SLA latency); both bounds are
    :func:`slow_request_bounds`. ``None`` when there
    are no buckets, or no bound at or below the latency (the histogram cannot resolve it). Negative
    differences (``increase()`` extrapolation) are clipped to 0.
    """
    if not buckets:
        return None
    limit_s = latency_ms / 1000.0 * (1 + 1e-9)  # 200 ms must match the "0.2" bucket exactly
    below = [count for le, count in buckets if le <= limit_s]
    if not below:
        return None
    infinite = [count for le, count in buckets if math.isinf(le)]
    total = max(infinite) if infinite else max(count for _, count in buckets)
    return max(0.0, float(total) - float(max(below)))


class SlowBounds(BaseModel):
    """Requests slower than an SLA latency as the histogram's buckets allow: exact when the latency is a
    bucket bound, else a range. Argue a breach (rollback) with ``at_least``, compliance (promotion,
    ok) with ``at_most``: the conservative end each way."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float
    total: float = Field(description="requests in the histogram (the +Inf bucket)")
    at_least: float = Field(description="requests above the bucket bound at or above the latency")
    at_most: float = Field(description="requests above the bucket bound at or below the latency")
    exact: bool = Field(description="the latency is a bucket bound: at_least == at_most")
    le_below: float | None = Field(description="that lower bound in seconds; None: below the first bucket")
    le_above: float | None = Field(description="that upper bound in seconds; None: above the last bound")
    note: str = Field(description="'exact: ...' or 'bounded by buckets le=X..Y: ...', for the evidence")


def _fmt_le(le: float | None, default: str) -> str:
    return default if le is None else f"{le:g}"


def slow_request_bounds(buckets: Sequence[tuple[float, float]], latency_ms: float) -> SlowBounds | None:
    """Requests slower than ``latency_ms`` from cumulative buckets ``(le seconds, count)``, as bounds.

    With ``lo`` the largest bucket bound at or below the latency and ``hi`` the smallest at or above
    it: ``at_least = total - cumulative(hi)`` (those are certainly slower), ``at_most = total -
    cumulative(lo)`` (those may be). Equal, and ``exact``, when the latency is a bound. Below the first
    bound ``at_most`` is every request; above the last finite bound ``at_least`` is 0 (the +Inf bucket
    does not say how far above the bound its requests are). ``None`` without buckets. Negative
    differences (``increase()`` extrapolation) are clipped to 0.
    """
    if not buckets:
        return None
    limit_s = latency_ms / 1000.0
    tol = limit_s * 1e-9  # 200 ms must match the "0.2" bucket exactly
    infinite = [count for le, count in buckets if math.isinf(le)]
    total = float(max(infinite) if infinite else max(count for _, count in buckets))
    finite = sorted((float(le), float(count)) for le, count in buckets if math.isfinite(le))
    below = [(le, c) for le, c in finite if le <= limit_s + tol]
    above = [(le, c) for le, c in finite if le >= limit_s - tol]
    lo, hi = (below[-1] if below else None), (above[0] if above else None)
    at_most = max(0.0, total - lo[1]) if lo else total
    at_least = max(0.0, total - hi[1]) if hi else 0.0
    at_least = min(at_least, at_most)  # non-monotone extrapolated counts must not invert the range
    exact = lo is not None and hi is not None and lo[0] == hi[0]
    le_lo, le_hi = (lo[0] if lo else None), (hi[0] if hi else None)
    what = f"of {total:.0f} requests slower than {latency_ms:g} ms"
    if exact:
        note = f"exact: {at_least:.0f} {what} (le={le_lo:g} is a bucket bound)"
    else:
        note = (
            f"bounded by buckets le={_fmt_le(le_lo, '0')}..{_fmt_le(le_hi, '+Inf')}: "
            f"{at_least:.0f} to {at_most:.0f} {what} (at least {at_least:.0f} argues rollback, "
            f"at most {at_most:.0f} argues promotion)"
        )
    return SlowBounds(
        latency_ms=latency_ms,
        total=total,
        at_least=at_least,
        at_most=at_most,
        exact=exact,
        le_below=le_lo,
        le_above=le_hi,
        note=note,
    )


def asr_dynamic_threshold_ms(mu_ms: float, sigma_ms: float, load_ratio: float, params: AsrDynamic) -> float:
    """ASR latency threshold ``μ + sigma_multiplier · σ · (1 + load_coefficient · load_ratio)``.

    ``μ`` and ``σ`` are the reference window's audio latency mean and standard deviation (ms);
    ``load_ratio`` is current requests/s over reference requests/s, so the band widens under load.
    """
    return mu_ms + params.sigma_multiplier * sigma_ms * (1.0 + params.load_coefficient * load_ratio)


def api_dynamic_threshold_ms(base_ms: float, qps: float, params: ApiDynamic) -> float:
    """API latency threshold ``max(floor_ms, P99.99_base · e^(qps_coefficient · qps))``.

    ``base_ms`` is the reference window's P99.99 (ms), ``qps`` the current requests per second.
    """
    return max(params.floor_ms, base_ms * math.exp(params.qps_coefficient * qps))


def load_ratio(current_rps: float, reference_rps: float) -> float | None:
    """Current over reference requests per second; ``None`` when the reference had no traffic."""
    if reference_rps <= 0 or not math.isfinite(reference_rps) or not math.isfinite(current_rps):
        return None
    return current_rps / reference_rps
