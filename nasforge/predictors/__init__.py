"""Accuracy predictors that stand in for the supernet during search, and the measurements they learn from.

Public entry points: `load_predictor(path, space)`, `find_run_predictor(run_dir)`, `make_predictor`,
`build_predictor`, `MeasurementStore`. Importing this package does not import torch or sklearn.
"""

from nasforge.predictors.base import (
    MODELS,
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
