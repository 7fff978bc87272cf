"""Validation metrics (MAPE, share within +-10%, Kendall tau) and the calibration of block sums.

Calibration (kind `linear-sum-blocks`): measured = a * sum_of_block_medians + b * n_blocks + c,
fitted by least squares on relative errors over whole subnets measured with the same protocol. `b` absorbs the per-run
overhead every isolated block timing carries once (and the whole network pays once),
`a` the fusion and cache effects that scale with work.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nasforge.errors import LatencyError

KIND = "linear-sum-blocks"


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    return float(np.mean(np.abs(pred - true) / true) * 100)


def within(pred: np.ndarray, true: np.ndarray, tol: float = 0.10) -> float:
    """Fraction of predictions within +-tol (relative) of the measurement."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    return float(np.mean(np.abs(pred - true) <= tol * true + 1e-12))


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b (scipy's; ties handled); 0 when either side is constant."""
    from scipy.stats import kendalltau

    tau = kendalltau(np.asarray(a, float), np.asarray(b, float)).statistic
    return 0.0 if not np.isfinite(tau) else float(tau)


def metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {
        "mape": round(float(mape(pred, true)), 3),
        "within_10pct": round(within(pred, true), 4),
        "kendall_tau": round(float(kendall_tau(pred, true)), 4),
        "n": len(true),
    }


def _design(sums: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(sums, float), np.asarray(blocks, float), np.ones(len(sums))], axis=1)


def fit(sums: np.ndarray, blocks: np.ndarray, measured: np.ndarray, robust: bool = True) -> dict[str, Any]:
    """Least squares on relative errors (rows weighted by 1/measured); n_blocks is dropped when constant.

    robust: refit once without the subnets whose relative residual lies beyond 3 robust standard
    deviations (1.4826 x MAD): on a shared machine a few end-to-end timings are inflated by other
    processes, and one such point can drag a least-squares line far off.
    """
    sums, blocks, measured = (np.asarray(v, float) for v in (sums, blocks, measured))
    x = _design(sums, blocks)
    if np.ptp(x[:, 1]) == 0:
        x[:, 1] = 0.0
    keep = np.ones(len(measured), dtype=bool)
    coef = np.zeros(3)
    for _ in range(2 if robust else 1):
        w = 1.0 / measured[keep]
        coef, *_ = np.linalg.lstsq(x[keep] * w[:, None], measured[keep] * w, rcond=None)
        rel = (x @ coef - measured) / measured
        mad = 1.4826 * np.median(np.abs(rel - np.median(rel)))
        keep = np.abs(rel - np.median(rel)) <= max(3 * mad, 1e-9)
        if keep.sum() < 3:
            break
    return {
        "kind": KIND,
        "a": float(coef[0]),
        "b": float(coef[1]),
        "c": float(coef[2]),
        "fit": "relative least squares" + (", one outlier-rejection refit (3 x MAD)" if robust else ""),
        "n_outliers": int((~keep).sum()) if robust else 0,
    }


def check(calibration: Any, source: str = "latency table") -> dict[str, Any] | None:
    """The calibration block of a table's metadata, or None when there is none (null or {}).

    Coefficients must be finite numbers; anything else is a one-line LatencyError naming the field,
    never a numpy error at prediction time.
    """
    if calibration is None or calibration == {}:
        return None
    if not isinstance(calibration, dict):
        raise LatencyError(f"{source}: calibration must be a mapping with a, b and c, got {type(calibration).__name__}")
    kind = calibration.get("kind", KIND)
    if kind != KIND:
        raise LatencyError(f"{source}: calibration kind {kind!r} is not supported (expected {KIND!r})")
    for name in ("a", "b", "c"):
        value = calibration.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LatencyError(f"{source}: calibration '{name}' must be a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise LatencyError(f"{source}: calibration '{name}' must be finite, got {value!r}")
    return calibration


def apply(calibration: dict[str, Any] | None, sums: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    sums = np.asarray(sums, float)
    calibration = check(calibration)
    if calibration is None:
        return sums
    a, b, c = (float(calibration[k]) for k in ("a", "b", "c"))
    return a * sums + b * np.asarray(blocks, float) + c


def cross_validated(
    sums: np.ndarray, blocks: np.ndarray, measured: np.ndarray, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold calibrated predictions: each subnet predicted by a calibration fitted without it."""
    n = len(measured)
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        cal = fit(sums[train], blocks[train], measured[train])
        out[test] = apply(cal, sums[test], blocks[test])
    return out
