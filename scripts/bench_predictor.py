"""Benchmark the accuracy predictors on a SYNTHETIC accuracy function, or on a trained run's real accuracies.

For each model and training-set size: Kendall tau, Spearman and RMSE on a fixed held-out set, fit time,
and the time to predict 10,000 archs on this CPU. The accuracy is `nasforge.testing.synthetic.
SyntheticAccuracy` (linear in the one-hot encoding + pairwise interactions + noise), so these numbers
say how well each model learns an encoding-shaped function, NOT how it does on a trained supernet.

    PYTHONPATH=. python scripts/bench_predictor.py --space mobilenetv3-ofa-cifar --out bench.json

With `--run RUN` the accuracies are real: each subnet's top-1 on the run's validation split after BN
recalibration, cached in RUN/measurements/val.jsonl like `nasforge build-predictor` (re-runs measure only
what is missing):

    PYTHONPATH=. python scripts/bench_predictor.py --run runs/qs/supernet --train-sizes 100 200 300 --holdout 100
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from nasforge.predictors import make_predictor, regression_metrics, sample_for_predictor
from nasforge.space import load_space
from nasforge.testing.synthetic import SyntheticAccuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mobilenetv3-ofa-cifar")
    ap.add_argument("--train-sizes", type=int, nargs="+", default=[250, 500, 1000])
    ap.add_argument("--holdout", type=int, default=200)
    ap.add_argument("--models", nargs="+", default=["mlp", "ensemble", "ridge", "gp", "gbm"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.1, help="std of per-arch noise, accuracy points")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--run", default=None, help="measure real validation accuracy on this trained run")
    ap.add_argument("--calib-images", type=int, default=2000, help="BN recalibration images (with --run)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    total = max(args.train_sizes) + args.holdout
    measure_info: dict[str, float] = {}
    if args.run:
        space, archs, acc, measure_info = _measure_run(args.run, total, args.seed, args.calib_images)
    else:
        space = load_space(args.space)
        archs = sample_for_predictor(space, total, seed=args.seed)
        acc = SyntheticAccuracy(space, seed=args.seed, noise=args.noise)(archs)
    x = space.features(archs)
    perm = np.random.default_rng(args.seed).permutation(len(archs))
    hold, pool = perm[: args.holdout], perm[args.holdout :]
    x10k = space.features(space.sample_many(np.random.default_rng(args.seed + 1), 10_000))

    rows = []
    console = Console()
    for model in args.models:
        for n in args.train_sizes:
            tr = pool[:n]
            p = make_predictor(model, space.num_features, seed=args.seed)
            t0 = time.perf_counter()
            p.fit(x[tr], acc[tr])
            fit_s = time.perf_counter() - t0
            m = regression_metrics(p.predict(x[hold]), acc[hold])
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                p.predict(x10k)
                times.append(time.perf_counter() - t0)
            row = {"model": model, "train": n, "holdout": args.holdout, **m, "fit_s": fit_s,
                   "predict_10k_s": min(times)}
            rows.append(row)
            console.print(row)

    kind = f"run {args.run} (real val accuracy)" if args.run else f"SYNTHETIC function, noise {args.noise}"
    table = Table(title=f"predictor benchmark on {space.name}: {kind}, {args.holdout} held out")
    for col in ("model", "train", "Kendall tau", "Spearman", "RMSE (pts)", "fit s", "10k predict s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["model"], str(r["train"]), f"{r['kendall_tau']:.3f}", f"{r['spearman']:.3f}",
                      f"{r['rmse']:.3f}", f"{r['fit_s']:.1f}", f"{r['predict_10k_s']:.3f}")
    console.print(table)
    spread = float(np.std(acc))
    console.print(f"accuracy spread over the sample: std {spread:.2f} points; {measure_info or ''}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"space": space.name, "synthetic": not args.run, "run": args.run, "noise": args.noise,
                       "accuracy_std": spread, "threads": args.threads, "measure": measure_info, "rows": rows},
                      fh, indent=2)


def _measure_run(run_dir: str, n: int, seed: int, calib_images: int):  # type: ignore[no-untyped-def]
    """Real accuracies of `n` stratified subnets of a trained run (cached like `nasforge build-predictor`)."""
    from pathlib import Path

    from nasforge.predictors import MeasurementStore
    from nasforge.train.runs import evaluate_subnets, load_run

    run = load_run(run_dir, device="auto")
    archs = sample_for_predictor(run.space, n, seed=seed)
    store = MeasurementStore(Path(run.path) / "measurements" / "val.jsonl", run.space,
                             checkpoint_sha256=run.checkpoint_sha256, dataset=run.config.data.dataset,
                             split="val", protocol={"calib_images": calib_images})
    t0 = time.perf_counter()
    acc, newly = store.measure(archs, lambda a: evaluate_subnets(run, list(a), "val", calib_images=calib_images),
                               batch_size=32)
    seconds = time.perf_counter() - t0
    info = {"newly_measured": newly, "seconds": round(seconds, 1),
            "subnets_per_s": round(newly / seconds, 2) if newly else 0.0, "device": str(run.device)}
    return run.space, archs, acc, info


if __name__ == "__main__":
    main()
