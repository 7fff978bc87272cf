"""A known accuracy function of the OFA encoding, for testing and benchmarking predictors without a supernet.

accuracy = base + linear(one-hot features) + pairwise interactions + per-arch noise. The noise is
seeded by the arch key, so measuring the same arch twice gives the same number (like a cached
measurement) and a call counter shows what was measured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.space import SearchSpace


class SyntheticAccuracy:
    """Callable `measure(archs) -> top-1 %`; counts the archs it was asked to measure."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int = 0,
        base: float = 70.0,
        scale: float = 1.0,
        interaction: float = 0.3,
        pairs: int = 8,
        noise: float = 0.1,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.space = space
        self.base, self.noise, self.seed = base, noise, seed
        self.weights = rng.normal(0.0, scale, space.num_features)
        self.pairs = rng.integers(0, space.num_features, size=(pairs, 2))
        self.pair_weights = rng.normal(0.0, interaction * scale * 3, pairs)
        self.calls = 0
        self.measured: list[str] = []

    def clean(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float64)
        inter = (f[:, self.pairs[:, 0]] * f[:, self.pairs[:, 1]]) @ self.pair_weights
        return self.base + f @ self.weights + inter

    def __call__(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        archs = list(archs)
        self.calls += 1
        self.measured.extend(a.key for a in archs)
        acc = self.clean(self.space.features(archs))
        noise = np.array([self._noise(a.key) for a in archs])
        return acc + noise

    def _noise(self, key: str) -> float:
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).normal(0.0, self.noise))
