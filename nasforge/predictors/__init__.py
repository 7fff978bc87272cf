"""Accuracy predictors that stand in for the supernet during search, and the measurements they learn from.

Public entry points: `load_predictor(path, space)`, `find_run_predictor(run_dir)`, `make_predictor`,
`build_predictor`, `MeasurementStore`. Importing this package does not import torch or sklearn.

Layout next to a run (what `nasforge build-predictor --run RUN` writes):
  RUN/measurements/val.jsonl   append-only cache of measured val accuracies (resumable, shared by all models)
  RUN/predictor/               the default predictor (predictor.json + weights.npz); `find_run_predictor(RUN)`
Shipped predictors go under the top-level `predictors/` folder (`--out predictors/NAME`).
"""

from nasforge.predictors.base import (
    MODELS,
    PREDICTORS,
    AccuracyPredictor,
    find_run_predictor,
    load_predictor,
    load_run_predictor,
    make_predictor,
    read_predictor_metadata,
    save_predictor,
)
from nasforge.predictors.build import BuildReport, build_predictor, regression_metrics, sample_for_predictor
from nasforge.predictors.store import MeasurementStore

__all__ = [
    "MODELS",
    "PREDICTORS",
    "AccuracyPredictor",
    "BuildReport",
    "MeasurementStore",
    "build_predictor",
    "find_run_predictor",
    "load_predictor",
    "load_run_predictor",
    "make_predictor",
    "read_predictor_metadata",
    "regression_metrics",
    "sample_for_predictor",
    "save_predictor",
]
