"""Latency: hardware targets, ORT profiling of blocks into lookup tables, calibration, roofline fallback."""

from nasforge.latency.model import LatencyModel, load_latency_model

__all__ = ["LatencyModel", "load_latency_model"]
