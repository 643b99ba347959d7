"""Multiple-testing corrections of per-feature p-values: Bonferroni and Benjamini-Hochberg."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from diagnostics.stats.arrays import FloatArray


def bonferroni_adjust(pvalues: npt.ArrayLike) -> FloatArray:
    """Bonferroni: ``min(1, m·p)``. Controls the chance of any false alarm among ``m`` features."""
    p = np.asarray(pvalues, dtype=np.float64)
    return np.asarray(np.minimum(1.0, p * p.size), dtype=np.float64)


def bh_adjust(pvalues: npt.ArrayLike) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values: ``min over j >= i of m·p_(j) / j`` in sorted order, capped
    at 1; ``adjusted < q`` is BH's rejection at false-discovery rate ``q``. Less strict than Bonferroni
    when many features drift together (the embedding case), still few false alarms under no drift."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    return adjusted.reshape(p.shape)
