"""Synthetic predictors for search tests and benchmarks (not accuracy proxies: tests only).

`SyntheticAccuracy` is a smooth, saturating function of the one-hot encoding; `TableLatency` sums a
per-choice table (the shape of a LUT); `MLPAccuracy` has an MLP-sized matrix product, for timing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.space import SearchSpace


class SyntheticAccuracy:
    """Top-1-like score in (40, 95): saturating in a positive weighted sum of one-hot features."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.random(space.num_features) + 0.2
        self.scale = float(self.w.sum()) / 3.0

    def predict(self, features: np.ndarray) -> np.ndarray:
        return 40.0 + 55.0 * np.tanh(np.asarray(features, dtype=np.float64) @ self.w / self.scale)


class TableLatency:
    """Latency as a sum of per-choice costs (like a LUT): `target`, `source` and `predict(archs)`."""

    def __init__(self, space: SearchSpace, seed: int = 1, target: str = "synthetic", source: str = "estimated") -> None:
        rng = np.random.default_rng(seed)
        self.space = space
        self.target = target
        self.spec = None  # a synthetic target: nothing resolved
        self.table = None  # no measured table behind these numbers (the `LatencyModel` protocol)
        self.calibrated = False
        self.source = source
        self.w = rng.random(space.num_features) * 0.5 + 0.05
        # Larger choices cost more within each gene (as a real LUT): sort each gene's one-hot block.
        genes, offsets = space.feature_layout
        sizes = space.gene_sizes[genes]
        for start, size in zip(offsets, sizes):
            self.w[start : start + size] = np.sort(self.w[start : start + size])
        self.base = 1.0

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        return self.base + self.space.features(list(archs)).astype(np.float64) @ self.w


class MLPAccuracy:
    """An MLP-sized predictor (features -> 400 -> 400 -> 1), for timing the search loop."""

    def __init__(self, space: SearchSpace, seed: int = 0, hidden: int = 400) -> None:
        rng = np.random.default_rng(seed)
        self.w1 = (rng.normal(size=(space.num_features, hidden)) / np.sqrt(space.num_features)).astype(np.float32)
        self.w2 = (rng.normal(size=(hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
        self.w3 = (rng.normal(size=(hidden,)) / np.sqrt(hidden)).astype(np.float32)

    def predict(self, features: np.ndarray) -> np.ndarray:
        h = np.maximum(features.astype(np.float32) @ self.w1, 0)
        h = np.maximum(h @ self.w2, 0)
        return 80.0 + 10.0 * np.tanh(h @ self.w3).astype(np.float64)


def all_encodings(space: SearchSpace) -> np.ndarray:
    """Every distinct canonical encoding of a small space (exhaustive; tiny spaces only)."""
    grids = np.meshgrid(*[np.arange(int(k)) for k in space.gene_sizes], indexing="ij")
    genes = np.stack([g.reshape(-1) for g in grids], axis=1).astype(np.int64)
    genes = np.where(space.active_mask(genes), genes, 0)
    return np.unique(genes, axis=0)
