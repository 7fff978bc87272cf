"""Choosing the subnet to ship: the best few feasible candidates by predicted accuracy, then by measured accuracy.

The subnet with the highest *predicted* accuracy is, more often than not, one the predictor over-rates (the
winner's curse: the maximum of noisy estimates is biased upwards; the quickstart once reported "predicted
94.68%, measured test 88.86%"). Measuring the top few on the validation split costs seconds, and choosing among
them by what was measured removes the predictor's error from the choice (what remains is the small bias of a
maximum over a handful of validation measurements; the test split, never used here, says the truth).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.search.objectives import SearchError

CANDIDATES = 5


@dataclass(frozen=True)
class Candidate:
    """A feasible subnet of a search: its predicted accuracy and latency, and its measured validation accuracy."""

    arch: ArchConfig
    predicted: float
    latency_ms: float | None = None
    val: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict(), "predicted_accuracy": self.predicted, "val_accuracy": self.val,
                "latency_ms": self.latency_ms}


def top_feasible(result: Any, k: int = CANDIDATES) -> list[Candidate]:
    """The `k` distinct feasible subnets of a search's history with the highest predicted accuracy."""
    h = result.history
    idx = np.nonzero(h.feasible)[0]
    if not len(idx):
        raise SearchError("the search found no subnet meeting its constraints: nothing to choose")
    _, first = np.unique(h.genes[idx], axis=0, return_index=True)
    idx = idx[np.sort(first)]
    best = idx[np.argsort(-h.metrics["accuracy"][idx], kind="stable")][: max(1, k)]
    archs = result.problem.evaluator.archs(h.genes[best])
    latency = h.metrics.get("latency_ms")
    return [
        Candidate(a, float(h.metrics["accuracy"][i]), None if latency is None else float(latency[i]))
        for a, i in zip(archs, best)
    ]


def choose_by_validation(
    candidates: Sequence[Candidate], measure: Callable[[list[ArchConfig]], np.ndarray]
) -> tuple[Candidate, list[Candidate]]:
    """Measure every candidate (`measure`: archs -> validation top-1 %) and choose the most accurate measured one
    (ties: the higher predicted). Returns the choice and the candidates with their measurements, in their order."""
    if not candidates:
        raise SearchError("no candidates to choose from")
    val = np.asarray(measure([c.arch for c in candidates]), dtype=np.float64).reshape(-1)
    measured = [replace(c, val=float(v)) for c, v in zip(candidates, val)]
    chosen = max(measured, key=lambda c: (c.val, c.predicted))
    return chosen, measured
