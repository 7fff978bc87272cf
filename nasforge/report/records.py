"""What a run report shows, as typed records: each section's numbers exactly as its artifact holds them.

`to_dict()` is the JSON the HTML page embeds (`<script id="nasforge-report-data">`), so a reader (or a test)
checks every number against the file it came from without parsing the page's tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainingCurves:
    """A run's `metrics.jsonl`, one entry per epoch; `epsilon` at each epoch's last step (delayed schedule)."""

    source: str
    schedule: str
    epochs: list[int]
    iterations: list[int]
    phases: list[str]
    lr: list[float]
    train_loss: list[float | None]
    train_acc: list[float | None]
    images_per_s: list[float | None]
    evals: dict[str, list[float | None]]  # subnet name (largest, smallest, random0, ...) -> top-1 per epoch
    epsilon: list[float] | None = None

    def phase_changes(self) -> list[tuple[int, str]]:
        """(epoch, phase) where each phase is first logged."""
        return [(e, p) for i, (e, p) in enumerate(zip(self.epochs, self.phases)) if i == 0 or self.phases[i - 1] != p]


@dataclass(frozen=True)
class LatencyPoint:
    arch: str
    measured_ms: float
    predicted_ms: float
    design: bool  # a design point the calibration was fitted on (not scored)


@dataclass(frozen=True)
class LatencyFit:
    """A latency table's whole-subnet validation: its scores and noise verdict as stored, and each measured subnet
    beside what the table's model (as the search uses it) predicts for it."""

    table: str
    target: str
    cpu: str | None
    scores_kind: str  # "calibrated_cv5" or "raw": which figures the table quotes (`Validation.headline`)
    mape: float
    within_10pct: float
    kendall_tau: float
    n_scored: int
    trusted: bool
    noise_reason: str | None
    date: str | None
    points: list[LatencyPoint]
    note: str | None = None  # e.g. the validation was refused as too noisy


@dataclass(frozen=True)
class PredictorFit:
    """An accuracy predictor's held-out metrics (its `predictor.json`) and the held-out subnets it scored."""

    path: str
    model: str
    metrics: dict[str, float]
    predicted: list[float]
    measured: list[float]
    note: str | None = None  # why the held-out points are not shown (e.g. the measurement store is gone)


@dataclass(frozen=True)
class FrontPoint:
    arch: str
    accuracy: float | None
    latency_ms: float | None
    macs: int
    measured_val: float | None  # the run's measured val top-1 for this arch, where it was measured


@dataclass(frozen=True)
class SearchFront:
    """One search folder: `search.json`'s summary and `pareto.json`'s front, with any measured accuracies."""

    path: str
    engine: str
    accuracy_kind: str  # "predicted" (a predictor's) or "measured" (an engine that measures, e.g. linas)
    objectives: list[str]
    constraints: list[str]
    latency_source: str | None
    evaluations: int
    hypervolume: float | None
    front: list[FrontPoint]


@dataclass(frozen=True)
class ExportedModel:
    """One exported model's sidecar (`<model>.json`)."""

    model: str
    sidecar: str
    arch: str
    macs: int | None
    params: int | None
    latency: dict[str, Any]
    accuracy: dict[str, Any]


@dataclass
class RunReport:
    """Every section of one run's report; a section without data is None (or empty) with its reason in `missing`."""

    run: str
    training: TrainingCurves | None = None
    latency: LatencyFit | None = None
    predictor: PredictorFit | None = None
    searches: list[SearchFront] = field(default_factory=list)
    exports: list[ExportedModel] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SECTIONS = ("training", "latency", "predictor", "searches", "exports")

__all__ = [
    "SECTIONS", "ExportedModel", "FrontPoint", "LatencyFit", "LatencyPoint", "PredictorFit", "RunReport",
    "SearchFront", "TrainingCurves",
]
