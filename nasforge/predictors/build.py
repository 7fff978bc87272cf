"""Build an accuracy predictor: sample subnets, measure them (cached), fit, score on held-out, save.

The library takes a `measure(archs) -> accuracies` callable, so it runs the same on a real supernet
(BN-recalibrated evaluation, batched on GPU) and on a synthetic function in tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import ConfigError
from nasforge.predictors.base import AccuracyPredictor, make_predictor, predictor_metadata, save_predictor
from nasforge.predictors.store import Measure, MeasurementStore
from nasforge.space import SearchSpace

CHUNK = 50  # archs per sampling chunk; see `sample_for_predictor`


def sample_for_predictor(
    space: SearchSpace, n: int, *, seed: int = 0, bins: int = 5, pool_factor: int = 8
) -> list[ArchConfig]:
    """`n` distinct archs stratified over resolution and, within each resolution, over MACs.

    Drawn in chunks of CHUNK, each from its own generator seeded by (seed, chunk), so the sample is
    prefix-stable: the first 500 of a 1,000-arch sample are the 500-arch sample, and growing N
    re-uses every cached measurement.
    """
    if n <= 0:
        raise ConfigError(f"the number of samples must be positive, got {n}")
    total = space.num_subnets(include_resolution=True)
    if n > total:
        raise ConfigError(f"space '{space.name}' has only {total} subnets; cannot sample {n} distinct ones")
    res_list = list(space.resolutions)
    edges = [
        np.linspace(space.macs(space.smallest(r)), space.macs(space.largest(r)) + 1, bins + 1) for r in res_list
    ]
    chosen: dict[str, ArchConfig] = {}
    chunk = stalls = 0
    while len(chosen) < n:
        before = len(chosen)
        rng = np.random.default_rng([seed, chunk])
        for arch in _stratified_chunk(space, rng, chunk * CHUNK, edges, pool_factor):
            if len(chosen) >= n:
                break
            chosen.setdefault(arch.key, arch)
        chunk += 1
        stalls = stalls + 1 if len(chosen) == before else 0
        if stalls > 20:  # the space is (nearly) exhausted: stop instead of looping forever
            raise ConfigError(f"could not find {n} distinct subnets in space '{space.name}' (found {len(chosen)})")
    return list(chosen.values())


def _stratified_chunk(
    space: SearchSpace, rng: np.random.Generator, offset: int, edges: list[np.ndarray], pool_factor: int
) -> list[ArchConfig]:
    """CHUNK archs; arch i of the whole sample gets resolution i mod R and MACs bin (i div R) mod bins."""
    n_res, bins = len(edges), len(edges[0]) - 1
    out: list[ArchConfig] = []
    for i in range(offset, offset + CHUNK):
        r, target = i % n_res, (i // n_res) % bins
        genes = space.sample_genes(rng, pool_factor)
        genes[:, 0] = r
        pool = space.decode_batch(genes)
        macs = np.array([space.macs(a) for a in pool], dtype=np.float64)
        which = np.clip(np.searchsorted(edges[r], macs, side="right") - 1, 0, bins - 1)
        idx = np.nonzero(which == target)[0]
        if len(idx) == 0:  # empty bin in this pool: take the member nearest to the bin's centre
            centre = (edges[r][target] + edges[r][target + 1]) / 2
            idx = np.array([int(np.argmin(np.abs(macs - centre)))])
        out.append(pool[int(rng.choice(idx))])
    return out


def regression_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """RMSE and MAE in accuracy points, Kendall tau and Spearman rho."""
    from scipy.stats import kendalltau, spearmanr

    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    err = p - a
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "kendall_tau": float(kendalltau(p, a)[0]),
        "spearman": float(spearmanr(p, a)[0]),
    }


def split_holdout(n: int, holdout: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Train / held-out indices; `holdout` < 1 is a fraction, >= 1 a count."""
    n_hold = int(round(n * holdout)) if holdout < 1 else int(holdout)
    if holdout <= 0 or n_hold < 2 or n - n_hold < 2:
        raise ConfigError(f"--holdout {holdout} leaves too few train or held-out measurements out of {n}")
    perm = rng.permutation(n)
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


@dataclass(frozen=True)
class BuildReport:
    model: str
    path: str
    num_samples: int
    num_train: int
    num_holdout: int
    newly_measured: int
    measure_seconds: float
    archs_per_second: float
    fit_seconds: float
    predict_10k_seconds: float
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_predictor(
    space: SearchSpace,
    measure: Measure,
    *,
    samples: int,
    model: str = "mlp",
    seed: int = 0,
    holdout: float = 0.2,
    out_dir: str | Path,
    store_path: str | Path,
    checkpoint_sha256: str,
    dataset: str,
    split: str = "val",
    batch_size: int = 64,
    model_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], Callable[[int], None]] | None = None,
    extra_metadata: dict[str, Any] | None = None,
    protocol: dict[str, Any] | None = None,
) -> tuple[AccuracyPredictor, BuildReport]:
    """Sample, measure (only what the store lacks), fit on the train split, score on held-out, save.

    `progress(total, already_done)` may return a callback advanced by each measured batch.
    """
    store = MeasurementStore(
        store_path, space, checkpoint_sha256=checkpoint_sha256, dataset=dataset, split=split, protocol=protocol
    )
    archs = sample_for_predictor(space, samples, seed=seed)
    todo = len(store.missing(archs))
    advance = progress(len(archs), len(archs) - todo) if progress is not None else None
    t0 = time.perf_counter()
    acc, newly = store.measure(archs, measure, batch_size=batch_size, progress=advance)
    measure_s = time.perf_counter() - t0

    features = space.features(archs)
    train_idx, hold_idx = split_holdout(len(archs), holdout, np.random.default_rng([seed, 1]))
    predictor = make_predictor(model, space.num_features, seed=seed, **(model_options or {}))
    t0 = time.perf_counter()
    predictor.fit(features[train_idx], acc[train_idx])
    fit_s = time.perf_counter() - t0
    metrics = regression_metrics(predictor.predict(features[hold_idx]), acc[hold_idx])

    bench = space.features(space.sample_many(np.random.default_rng([seed, 2]), 10_000))
    t0 = time.perf_counter()
    predictor.predict(bench)
    predict_s = time.perf_counter() - t0

    meta = predictor_metadata(
        space,
        checkpoint_sha256=checkpoint_sha256,
        dataset=dataset,
        num_measurements=len(archs),
        metrics={**metrics, "num_train": len(train_idx), "num_holdout": len(hold_idx)},
        split=split,
        protocol=dict(protocol or {}),
        seed=seed,
        holdout=holdout,
        **(extra_metadata or {}),
    )
    save_predictor(predictor, out_dir, meta)
    report = BuildReport(
        model=model,
        path=str(out_dir),
        num_samples=len(archs),
        num_train=len(train_idx),
        num_holdout=len(hold_idx),
        newly_measured=newly,
        measure_seconds=measure_s,
        archs_per_second=newly / measure_s if newly and measure_s > 0 else float("nan"),
        fit_seconds=fit_s,
        predict_10k_seconds=predict_s,
        metrics=metrics,
    )
    return predictor, report
