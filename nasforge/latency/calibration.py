"""Validation metrics (MAPE, share within +-10%, Kendall tau) and the calibration of block sums.

A subnet's latency is predicted from per-arch *features*, each a sum over its blocks computed from
the table (`nasforge.latency.model.TableFeatures`):

  sum_ms     plain sum of the isolated block medians
  net_ms     the same, less the per-run overhead every isolated timing carries (`run_overhead_ms`)
  weight_mb  weights in MB: an isolated block reruns with its weights in L1/L2, a whole network
             fetches them again from L3 or DRAM on every inference
  act_mb     activations in MB (block inputs, outputs and inner tensors): traffic beyond L2
  blocks     number of blocks;  one: 1 (the per-inference fixed cost)

Calibration kind `nnls-features` (fitted now): measured = sum_k coef_k * feature_k with every
coefficient >= 0 (non-negative least squares on relative errors, one 3 x MAD outlier-rejection
refit). All features are >= 0, so a prediction can never go negative, and it is at least
coef_net * net_ms for the smallest subnet; the feature set is chosen among nested candidates by
5-fold cross-validation (`CANDIDATES`).

Calibration kind `linear-sum-blocks` (tables made before, still loaded): measured = a * sum_ms +
b * blocks + c. Its free intercept went to -2.07 ms on a loaded 2-core machine and predicted the
smallest subnet 45% low; it is no longer fitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nasforge.errors import LatencyError

KIND = "nnls-features"
LEGACY_KIND = "linear-sum-blocks"
FEATURES = ("sum_ms", "net_ms", "weight_mb", "act_mb", "blocks", "one")
# nested candidate sets, simplest first; a richer set must beat the best so far by 2% (relative MAPE)
CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("net_ms", "one"),
    ("net_ms", "weight_mb", "one"),
    ("net_ms", "weight_mb", "act_mb", "one"),
)
Features = Mapping[str, np.ndarray]


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


# ---------------------------------------------------------------------------- fitting
def _nnls_relative(x: np.ndarray, measured: np.ndarray, robust: bool) -> tuple[np.ndarray, int]:
    """Non-negative least squares on relative errors (rows / measured), optionally one 3 x MAD refit."""
    from scipy.optimize import nnls

    keep = np.ones(len(measured), dtype=bool)
    coef = np.zeros(x.shape[1])
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)  # columns of ~1: nnls converges on ms and MB alike
    for _ in range(2 if robust else 1):
        w = 1.0 / measured[keep]
        scaled, _ = nnls((x[keep] / scale) * w[:, None], measured[keep] * w, maxiter=50 * x.shape[1])
        coef = scaled / scale
        rel = (x @ coef - measured) / measured
        mad = 1.4826 * np.median(np.abs(rel - np.median(rel)))
        new_keep = np.abs(rel - np.median(rel)) <= max(3 * mad, 1e-9)
        if new_keep.sum() < max(3, x.shape[1] + 1):
            break
        keep = new_keep
    return coef, int((~keep).sum())


def fit_features(
    features: Features, measured: np.ndarray, names: Sequence[str], robust: bool = True
) -> dict[str, Any]:
    """One `nnls-features` calibration on the named features."""
    measured = np.asarray(measured, float)
    x = np.stack([np.asarray(features[n], float) for n in names], axis=1)
    coef, outliers = _nnls_relative(x, measured, robust)
    return {
        "kind": KIND,
        "features": list(names),
        "coef": {n: float(c) for n, c in zip(names, coef)},
        "fit": "non-negative least squares on relative errors" + (", one 3 x MAD outlier refit" if robust else ""),
        "n_outliers": outliers,
    }


def fit(
    features: Features,
    measured: np.ndarray,
    *,
    candidates: Sequence[Sequence[str]] = CANDIDATES,
    robust: bool = True,
    folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The calibration of the candidate feature set with the lowest cross-validated MAPE (simplest on a tie).

    A set is tried only with at least 3 subnets per coefficient; the chosen one is refitted on all.
    """
    measured = np.asarray(measured, float)
    n = len(measured)
    usable = [c for c in candidates if n >= 3 * len(c)] or [candidates[0]]
    scores: dict[str, float] = {}
    best = usable[0]
    if len(usable) > 1:
        best_score = math.inf
        for names in usable:
            def fitter(f: Features, m: np.ndarray, names: Sequence[str] = names) -> dict[str, Any]:
                return fit_features(f, m, names, robust)

            pred = cross_validated(features, measured, folds=folds, seed=seed, fitter=fitter)
            score = mape(pred, measured)
            scores["+".join(names)] = round(score, 3)
            if score < best_score * 0.98:
                best, best_score = names, score
    calibration = fit_features(features, measured, best, robust)
    if scores:
        calibration["selection"] = {"by": f"{folds}-fold CV MAPE (%), a richer set must gain 2%", "scores": scores}
    return calibration


def fit_linear(sums: np.ndarray, blocks: np.ndarray, measured: np.ndarray, robust: bool = True) -> dict[str, Any]:
    """The old `linear-sum-blocks` fit (free signs), kept to compare against; nasforge no longer stores it."""
    sums, blocks, measured = (np.asarray(v, float) for v in (sums, blocks, measured))
    x = np.stack([sums, blocks, np.ones(len(sums))], axis=1)
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
    return {"kind": LEGACY_KIND, "a": float(coef[0]), "b": float(coef[1]), "c": float(coef[2]),
            "fit": "relative least squares", "n_outliers": int((~keep).sum()) if robust else 0}


# ---------------------------------------------------------------------------- checking and applying
def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LatencyError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise LatencyError(f"{where} must be finite, got {value!r}")
    return float(value)


def check(calibration: Any, source: str = "latency table") -> dict[str, Any] | None:
    """The calibration block of a table's metadata, or None when there is none (null or {}).

    Coefficients must be finite numbers (and, for `nnls-features`, >= 0 on known features);
    anything else is a one-line LatencyError naming the field, never a numpy error at prediction time.
    """
    if calibration is None or calibration == {}:
        return None
    if not isinstance(calibration, dict):
        raise LatencyError(f"{source}: calibration must be a mapping, got {type(calibration).__name__}")
    kind = calibration.get("kind", LEGACY_KIND)
    if kind == LEGACY_KIND:
        for name in ("a", "b", "c"):
            _number(calibration.get(name), f"{source}: calibration '{name}'")
        return calibration
    if kind != KIND:
        raise LatencyError(
            f"{source}: calibration kind {kind!r} is not supported (expected {KIND!r} or {LEGACY_KIND!r})"
        )
    coef = calibration.get("coef")
    if not isinstance(coef, dict) or not coef:
        raise LatencyError(f"{source}: calibration 'coef' must map feature names to numbers")
    for name, value in coef.items():
        if name not in FEATURES:
            raise LatencyError(f"{source}: calibration feature {name!r} is unknown (known: {', '.join(FEATURES)})")
        if _number(value, f"{source}: calibration coef '{name}'") < 0:
            raise LatencyError(f"{source}: calibration coef '{name}' must be >= 0, got {value!r}")
    return calibration


def apply(
    calibration: dict[str, Any] | None, features: Features | np.ndarray, blocks: np.ndarray | None = None
) -> np.ndarray:
    """Calibrated predictions (plain block sums without a calibration).

    `apply(calibration, sums, blocks)` (the old form, arrays of block sums and counts) still works for
    the `linear-sum-blocks` kind and for no calibration.
    """
    if blocks is not None or not isinstance(features, Mapping):
        features = {"sum_ms": np.asarray(features, float), "blocks": np.asarray(blocks, float)}
    sums = np.asarray(features["sum_ms"], float)
    calibration = check(calibration)
    if calibration is None:
        return sums
    if calibration.get("kind", LEGACY_KIND) == LEGACY_KIND:
        a, b, c = (float(calibration[k]) for k in ("a", "b", "c"))
        return a * sums + b * np.asarray(features["blocks"], float) + c
    missing = [name for name in calibration["coef"] if name not in features]
    if missing:
        raise LatencyError(f"calibration needs feature(s) {', '.join(missing)} (pass TableFeatures' output)")
    out = np.zeros(len(sums))
    for name, value in calibration["coef"].items():
        out = out + float(value) * np.asarray(features[name], float)
    return out


def cross_validated(
    features: Features,
    measured: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    *,
    fitter: Callable[[Features, np.ndarray], dict[str, Any]] | None = None,
    always_train: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold predictions: each subnet predicted by a calibration fitted without it.

    always_train: a mask of subnets that stay in every training fold (they get in-sample
    predictions): the space-filling design points, so that the folds score the random subnets.
    """
    fitter = fitter or (lambda f, m: fit(f, m))
    measured = np.asarray(measured, float)
    n = len(measured)
    fixed = np.zeros(n, bool) if always_train is None else np.asarray(always_train, bool)
    rotating = np.flatnonzero(~fixed)
    order = rotating[np.random.default_rng(seed).permutation(len(rotating))]
    out = np.empty(n)
    fixed_idx = np.flatnonzero(fixed)
    if len(fixed_idx):
        out[fixed_idx] = apply(fitter(features, measured), _rows(features, fixed_idx))
    for f in range(min(folds, len(order))):
        test = order[f::folds]
        train = np.setdiff1d(np.arange(n), test)
        out[test] = apply(fitter(_rows(features, train), measured[train]), _rows(features, test))
    return out


def _rows(features: Features, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[idx] for k, v in features.items()}
