"""Bounds on a failure share seen in probes: exact (Clopper-Pearson) one-sided bounds, the number of
probes a tolerance needs, a verdict that never reads "ok" on too few probes, and a one-sided
two-sample test of two versions' shares (Fisher's exact test).

``k`` failures in ``n`` probes bound the true share ``p`` with confidence ``1 - alpha``:

- upper: ``beta.ppf(1 - alpha, k + 1, n - k)`` (1 when ``k == n``): ``p`` is below it;
- lower: ``beta.ppf(alpha, k, n - k + 1)`` (0 when ``k == 0``): ``p`` is above it.

0 failures in 24 probes bound the share at ``1 - 0.05^(1/24)`` = 11.7 % (95 %): too few to show it
is under 5 %, for which ``ceil(ln 0.05 / ln 0.95)`` = 59 probes are needed.

Probing in looks (send a batch, look, stop when the bounds decide) tests at every look; the chance
that any look is wrong stays under ``alpha`` when each look uses ``alpha / looks`` (Bonferroni over
the planned looks, valid whatever the stopping rule).
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from scipy import stats


class ShareVerdict(StrEnum):
    UNDER = "under"  # upper bound under the tolerance: ok
    OVER = "over"  # lower bound over the tolerance: failed
    UNDECIDED = "undecided"  # the tolerance lies between the bounds: too few probes to tell


class ShareBound(BaseModel):
    """A failure share, its bounds and the verdict against a tolerance: the evidence behind an ok."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=0, description="probes judged")
    failures: int = Field(ge=0)
    share: float | None = Field(description="failures / n; None without probes")
    lower: float = Field(description="one-sided lower bound of the share at the look's alpha")
    upper: float = Field(description="one-sided upper bound of the share at the look's alpha")
    tolerance: float
    confidence: float = Field(description="overall: 1 - alpha, over every look")
    looks: int = Field(ge=1, description="planned looks; each uses alpha / looks")
    verdict: ShareVerdict

    def reading(self) -> str:
        """The bounds against the tolerance, for a summary: 'upper bound 4.96% < 5% at 95%, 3 looks'."""
        looks = f", {self.looks} looks" if self.looks > 1 else ""
        at = f"at {self.confidence:.0%}{looks}"
        tol = f"{self.tolerance * 100:g}%"
        if self.verdict is ShareVerdict.UNDER:
            return f"upper bound {self.upper:.2%} < {tol} {at}"
        if self.verdict is ShareVerdict.OVER:
            return f"lower bound {self.lower:.2%} > {tol} {at}"
        return f"bounds {self.lower:.2%} - {self.upper:.2%} {at}: too few to tell the share from {tol}"


def upper_bound(failures: int, n: int, alpha: float) -> float:
    """Clopper-Pearson one-sided upper bound of the share at confidence ``1 - alpha``."""
    if n <= 0 or failures >= n:
        return 1.0
    return float(stats.beta.ppf(1 - alpha, failures + 1, n - failures))


def lower_bound(failures: int, n: int, alpha: float) -> float:
    """Clopper-Pearson one-sided lower bound of the share at confidence ``1 - alpha``."""
    if n <= 0 or failures <= 0:
        return 0.0
    return float(stats.beta.ppf(alpha, failures, n - failures + 1))


def probes_needed(tolerance: float, alpha: float) -> int:
    """The fewest probes whose 0 failures bound the share under ``tolerance``: the smallest ``n``
    with ``1 - alpha^(1/n) < tolerance``, i.e. ``n > ln(alpha) / ln(1 - tolerance)`` (59 for 5 % at 95 %)."""
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
    return math.floor(math.log(alpha) / math.log1p(-tolerance)) + 1


def judge_share(
    failures: int, n: int, tolerance: float, confidence: float = 0.95, looks: int = 1
) -> ShareBound:
    """The verdict of ``failures`` in ``n`` probes against ``tolerance``, at ``alpha / looks`` per look."""
    alpha = (1 - confidence) / looks
    upper, lower = upper_bound(failures, n, alpha), lower_bound(failures, n, alpha)
    verdict = (
        ShareVerdict.UNDER
        if upper < tolerance
        else ShareVerdict.OVER
        if lower > tolerance
        else ShareVerdict.UNDECIDED
    )
    return ShareBound(
        n=n,
        failures=failures,
        share=failures / n if n else None,
        lower=lower,
        upper=upper,
        tolerance=tolerance,
        confidence=confidence,
        looks=looks,
        verdict=verdict,
    )


def share_greater_p(failures_a: int, n_a: int, failures_b: int, n_b: int) -> float:
    """One-sided p-value of "version a fails more often than version b" (Fisher's exact test on the
    2x2 table; 1.0 when either side has no probes): small means a's share is above b's beyond noise."""
    if n_a <= 0 or n_b <= 0:
        return 1.0
    table = [[failures_a, n_a - failures_a], [failures_b, n_b - failures_b]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)
