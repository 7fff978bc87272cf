"""Evaluation metrics, registered by name: a task (its data source) names the metric its numbers are.

Image classification reports `top1`; a text task can name `f1` or `matthews` (GLUE's MRPC and CoLA
metrics) and evaluation, BN-recalibrated subnet measurement and predictor building compute it through
this registry without an edit. A metric is an accumulator built fresh for each evaluation: `update`
adds a batch's logits and targets on their device (no host sync), `compute` reads the result once.
All report percent (0..100), the scale predictors and search objectives assume.
"""

from __future__ import annotations

from typing import Protocol

import torch

from nasforge.errors import ConfigError
from nasforge.registry import Registry


class Metric(Protocol):
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None: ...
    def compute(self) -> float: ...


METRICS: Registry[type[Metric]] = Registry("metric", error=ConfigError)


@METRICS.register("top1", summary="top-1 accuracy, % of samples whose highest logit is the label")
class Top1:
    def __init__(self) -> None:
        self.correct: torch.Tensor | None = None  # int64 on the logits' device
        self.total = 0

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        hits = (logits.argmax(1) == targets).sum()
        self.correct = hits if self.correct is None else self.correct + hits
        self.total += int(targets.shape[0])

    def compute(self) -> float:
        return 100.0 * (0 if self.correct is None else int(self.correct)) / max(1, self.total)


class _Confusion:
    """A (classes x classes) confusion matrix summed on the device; rows: targets, columns: predictions."""

    def __init__(self) -> None:
        self.matrix: torch.Tensor | None = None

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        c = int(logits.shape[1])
        if self.matrix is None:
            self.matrix = torch.zeros((c, c), dtype=torch.int64, device=logits.device)
        cell = targets.to(torch.int64) * c + logits.argmax(1)
        self.matrix += torch.bincount(cell, minlength=c * c).view(c, c)

    def counts(self) -> torch.Tensor:
        return torch.zeros((2, 2), dtype=torch.float64) if self.matrix is None else self.matrix.double().cpu()


@METRICS.register("f1", summary="F1 % of class 1 (binary tasks such as MRPC, QQP)")
class F1(_Confusion):
    def compute(self) -> float:
        m = self.counts()
        tp, fp, fn = float(m[1, 1]), float(m[:, 1].sum() - m[1, 1]), float(m[1, :].sum() - m[1, 1])
        return 100.0 * 2 * tp / max(1.0, 2 * tp + fp + fn)


@METRICS.register("matthews", summary="Matthews correlation x 100 (multi-class form; CoLA's metric)")
class Matthews(_Confusion):
    def compute(self) -> float:
        m = self.counts()
        n, correct = float(m.sum()), float(m.trace())
        t, p = m.sum(1), m.sum(0)
        cov = correct * n - float((t * p).sum())
        den = ((n * n - float((p * p).sum())) * (n * n - float((t * t).sum()))) ** 0.5
        return 0.0 if den == 0 else 100.0 * cov / den


def metric(name: str) -> Metric:
    """A fresh accumulator of the metric `name`; one-line ConfigError listing the choices if unknown."""
    return METRICS.get(name)()


__all__ = ["METRICS", "F1", "Matthews", "Metric", "Top1", "metric"]
