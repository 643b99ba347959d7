"""Stable projections of embeddings for the drift tests: fitted on the reference only, never on the
window under test, so that the same reference always gives the same features to compare.

- ``pca``: the top-k eigenvectors of the reference's covariance (the right singular vectors of the
  centred reference, without an SVD of the n × d matrix), each with a fixed sign (its largest entry
  positive), so refitting on the same reference returns the same matrix;
- ``random``: a Gaussian matrix ``N(0, 1/k)`` from a seeded generator (Johnson-Lindenstrauss); it
  depends on the dimension, ``k`` and the seed only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
ProjectionKind: TypeAlias = Literal["none", "pca", "random"]

_ROW_CHUNK = 8192  # rows per block when accumulating the covariance (bounded memory)


@dataclass(frozen=True, eq=False)
class Projection:
    """``(x - mean) @ matrix``: d input dimensions to ``components`` features."""

    kind: Literal["pca", "random"]
    matrix: FloatArray  # (d, k)
    mean: FloatArray  # (d,); zeros for a random projection
    seed: int | None
    fitted_rows: int  # reference rows the projection was fitted on (0 for random)
    explained_variance: float | None  # share of the reference's variance kept (pca)

    @property
    def input_dims(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def components(self) -> int:
        return int(self.matrix.shape[1])

    def apply(self, sample: npt.ArrayLike) -> FloatArray:
        x = np.asarray(sample, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.input_dims:
            raise ValueError(f"expected rows of {self.input_dims} dimensions, got shape {x.shape}")
        return np.asarray((x - self.mean) @ self.matrix, dtype=np.float64)

    def fingerprint(self) -> str:
        """SHA-256 of the matrix and mean: equal fingerprints, equal projections (for the report)."""
        digest = hashlib.sha256()
        digest.update(self.kind.encode())
        digest.update(np.ascontiguousarray(self.matrix).tobytes())
        digest.update(np.ascontiguousarray(self.mean).tobytes())
        return digest.hexdigest()


def pca_projection(reference: npt.ArrayLike, components: int) -> Projection:
    """The top ``components`` principal axes of ``reference`` (rows × dims), signs fixed."""
    x = np.asarray(reference)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"pca needs a 2-D reference with at least 2 rows, got shape {x.shape}")
    n, d = x.shape
    k = min(components, d)
    mean: FloatArray = np.asarray(np.mean(x, axis=0, dtype=np.float64), dtype=np.float64)
    cov = np.zeros((d, d), dtype=np.float64)
    for start in range(0, n, _ROW_CHUNK):
        block = np.asarray(x[start : start + _ROW_CHUNK], dtype=np.float64) - mean
        cov += block.T @ block
    cov /= n - 1
    eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
    top = eigenvectors[:, ::-1][:, :k]
    signs = np.sign(top[np.argmax(np.abs(top), axis=0), np.arange(k)])
    top = top * np.where(signs == 0, 1.0, signs)
    total = float(np.sum(np.clip(eigenvalues, 0.0, None)))
    kept = float(np.sum(np.clip(eigenvalues[::-1][:k], 0.0, None)))
    return Projection(
        kind="pca",
        matrix=np.ascontiguousarray(top),
        mean=mean,
        seed=None,
        fitted_rows=n,
        explained_variance=kept / total if total > 0 else None,
    )


def random_projection(dims: int, components: int, seed: int) -> Projection:
    """A seeded Gaussian projection ``N(0, 1/k)`` of ``dims`` dimensions to ``components``."""
    if dims < 1 or components < 1:
        raise ValueError("dims and components must be at least 1")
    k = min(components, dims)
    matrix = np.random.default_rng(seed).standard_normal((dims, k)) / np.sqrt(k)
    return Projection(
        kind="random",
        matrix=matrix,
        mean=np.zeros(dims),
        seed=seed,
        fitted_rows=0,
        explained_variance=None,
    )


def fit_projection(
    reference: npt.ArrayLike, kind: ProjectionKind, components: int, seed: int = 0
) -> Projection | None:
    """The projection of ``kind`` fitted on ``reference`` only; None for ``none`` (every dimension)."""
    if kind == "none":
        return None
    if kind == "pca":
        return pca_projection(reference, components)
    if kind == "random":
        return random_projection(int(np.shape(reference)[1]), components, seed)
    raise ValueError(f"unknown projection {kind!r}; expected none, pca or random")
