"""Benchmarks for `nasforge search` (numbers for BENCHMARKS.md).

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/bench_search.py [--quick] [--json OUT.json]

1. Throughput: 10,000 evaluations, 2 objectives (accuracy, latency), nsga2, on mobilenetv3-ofa-cifar
   with an MLP-sized fake predictor and a table-sum latency fake; split into predictor, latency,
   MACs/params and engine time; against OFA-style one-arch-at-a-time queries through the same predictor.
2. Hypervolume after equal budgets, every engine vs random (3 seeds), on synthetic problems:
   tiny-mbv3 (true front known by enumeration) and mobilenetv3-ofa-cifar.
3. linas: measured evaluations to reach 95% of the best hypervolume seen, vs nsga2 measuring every point.
With `--run RUN --only-throughput`: 1. on the run's own predictor and the target's latency table for its space.
With `--run RUN`: 2. on the run's predictor and the target's latency table; with `--run RUN --linas-budget N`:
3. with real measurements, against the run's measured stratified sample (RUN/measurements/val.jsonl).

linas runs on equal terms everywhere: its problem holds no accuracy predictor (`NoPredictor`, a constant the
engine never reads either), so its surrogate learns only from the measurements its budget counts, as in
DyNAS-T. (Until 2026-12 it started from the run's predictor, built from ~1,000 measurements of the very pool
the random baseline draws from: information it was not charged for.)
A run to benchmark on (small, CPU, minutes): `nasforge train-supernet --config configs/train/quickstart.yaml
--out RUN` (digits), then `nasforge build-predictor --run RUN --samples 1200 --holdout 200 --calib-images 500`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from nasforge.search import Evaluator, SearchProblem, hypervolume_for, make_engine, run_search
from nasforge.space import load_space
from nasforge.testing import tiny_space
from nasforge.testing.search import MLPAccuracy, SyntheticAccuracy, TableLatency, all_encodings

console = Console()


class Timed:
    """Wraps a model's predict and adds up its wall time."""

    def __init__(self, model):
        self.model = model
        self.seconds = 0.0
        self.target = getattr(model, "target", None)
        self.source = getattr(model, "source", None)

    def predict(self, x):
        t = time.perf_counter()
        out = self.model.predict(x)
        self.seconds += time.perf_counter() - t
        return out


class NoPredictor:
    """A constant accuracy: what linas's problem holds, so that nothing but its own measurements informs it."""

    def predict(self, features):
        return np.full(len(features), 50.0)


class TorchMLP:
    """OFA's accuracy predictor shape (features -> 400 -> 400 -> 400 -> 1, torch, CPU)."""

    def __init__(self, space):
        import torch

        torch.manual_seed(0)
        torch.set_num_threads(1)
        n = space.num_features
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n, 400),
            torch.nn.ReLU(),
            torch.nn.Linear(400, 400),
            torch.nn.ReLU(),
            torch.nn.Linear(400, 400),
            torch.nn.ReLU(),
            torch.nn.Linear(400, 1),
        ).eval()

    def predict(self, features):
        import torch

        with torch.no_grad():
            return self.net(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy().reshape(-1) + 80.0


def throughput(n: int = 10_000, torch_predictor: bool = False, run_dir: str | None = None,
               target: str = "cpu") -> dict:
    """`run_dir`: the run's own accuracy predictor and the target's latency table for its space (what
    `nasforge search` runs on); otherwise mobilenetv3-ofa-cifar with fakes of their shapes."""
    if run_dir is not None:
        from nasforge.latency import load_latency_model
        from nasforge.predictors import load_run_predictor
        from nasforge.train.runs import load_run

        run = load_run(run_dir, device="cpu")
        space = run.space
        acc, lat = Timed(load_run_predictor(run)), Timed(load_latency_model(target, space))
        name = f"{space.name} run predictor + {target} latency ({lat.source})"
    else:
        space = load_space("mobilenetv3-ofa-cifar")
        acc, lat = Timed(TorchMLP(space) if torch_predictor else MLPAccuracy(space)), Timed(TableLatency(space))
        name = "torch MLP (OFA shape)" if torch_predictor else "numpy MLP"
    ev = Evaluator(space, acc, lat)
    t = time.perf_counter()
    _ = ev.cost  # one-off: exact per-block cost tables for this space
    build = time.perf_counter() - t
    make_engine("nsga2")  # imports
    run_search(
        SearchProblem(space, Evaluator(space, acc, lat), ("accuracy", "latency")),
        make_engine("nsga2"),
        budget=200,
        seed=99,
    )
    acc.seconds = lat.seconds = 0.0
    p = SearchProblem(space, ev, ("accuracy", "latency"))
    t = time.perf_counter()
    r = run_search(p, make_engine("nsga2"), budget=n, seed=0)
    total = time.perf_counter() - t
    # OFA's finder: decode, encode and predict one arch at a time.
    m = 1000
    archs = space.sample_many(np.random.default_rng(0), m)
    t = time.perf_counter()
    for a in archs:
        acc.model.predict(space.features([a]))
        lat.model.predict([a])
    one = (time.perf_counter() - t) / m
    return {
        "predictor": name,
        "evaluations": len(r.history),
        "distinct": int(ev.evaluations and len(ev._cache)),
        "seconds_total": round(total, 3),
        "seconds_predictor": round(acc.seconds, 3),
        "seconds_latency": round(lat.seconds, 3),
        "seconds_engine_and_rest": round(total - acc.seconds - lat.seconds, 3),
        "evaluations_per_s": round(len(r.history) / total),
        "cost_table_build_s": round(build, 3),
        "one_at_a_time_queries_per_s": round(1 / one),
        "one_at_a_time_s_per_10k": round(10_000 * one, 2),
    }


ENGINE_BUDGETS = {"nsga2": 1000, "nsga3": 1000, "evolution": 1000, "tpe": 300, "gp": 60, "linas": 100}


def engines_vs_random(
    space_name: str, seeds=(0, 1, 2), quick: bool = False, run_dir: str | None = None, target: str = "cpu"
) -> list[dict]:
    """HV per engine vs random at equal budgets: on synthetic fakes, or (`run_dir`) on a trained run's
    predictor and the target's latency model, with linas measuring real validation accuracy."""
    if run_dir is not None:
        from nasforge.latency import load_latency_model
        from nasforge.predictors import load_run_predictor
        from nasforge.train.runs import evaluate_subnets, load_run

        run = load_run(run_dir, device="auto")
        space, truth, latency = run.space, load_run_predictor(run), load_latency_model(target, run.space)
        space_name = f"{space.name} (run)"
        real_measure = lambda archs: evaluate_subnets(run, list(archs), "val", calib_images=500)  # noqa: E731
    else:
        space = tiny_space(space_name) if space_name.startswith("tiny") else load_space(space_name)
        truth, latency, real_measure = SyntheticAccuracy(space), TableLatency(space), None

    def problem(accuracy=truth):
        return SearchProblem(space, Evaluator(space, accuracy, latency), ("accuracy", "latency"))

    true_hv = None
    if space.num_subnets(include_resolution=True) <= 50_000:
        p = problem()
        ev = p.evaluate(all_encodings(space))
        true_hv = hypervolume_for(p)(ev.F)
    rows = []
    for engine, budget in ENGINE_BUDGETS.items():
        if quick and engine in ("gp", "tpe"):
            continue
        hv_e, hv_r, secs = [], [], []
        for seed in seeds[:1] if engine == "gp" else seeds:  # GP refits per trial: one seed only
            measure = real_measure or (lambda archs: truth.predict(space.features(list(archs))))
            kw = {"measure": measure} if engine == "linas" else {}
            # linas: no predictor to start from (equal terms); every accuracy it sees is measured
            p = problem(NoPredictor() if engine == "linas" else truth)
            t = time.perf_counter()
            r = run_search(p, make_engine(engine, **kw), budget=budget, seed=seed, storage="memory")
            secs.append(time.perf_counter() - t)
            hv_e.append(r.hv[-1][2])
            hv_r.append(run_search(problem(), make_engine("random"), budget=budget, seed=seed).hv[-1][2])
        rows.append(
            {
                "space": space_name,
                "engine": engine,
                "budget": budget,
                "hv": round(float(np.mean(hv_e)), 5),
                "hv_random": round(float(np.mean(hv_r)), 5),
                "hv_true": None if true_hv is None else round(true_hv, 5),
                "seconds": round(float(np.mean(secs)), 2),
            }
        )
        console.print(rows[-1])
    return rows


def linas_vs_nsga2(space_name: str = "mobilenetv3-ofa-cifar", budget: int = 400) -> dict:
    space = load_space(space_name)
    truth = SyntheticAccuracy(space)
    lat = TableLatency(space)
    measure = lambda archs: truth.predict(space.features(list(archs)))  # noqa: E731
    lin = run_search(
        SearchProblem(space, Evaluator(space, NoPredictor(), lat), ("accuracy", "latency")),
        make_engine("linas", measure=measure),
        budget=budget,
        seed=0,
    )
    # nsga2 with every evaluation a measurement (accuracy = the truth)
    ns = run_search(
        SearchProblem(space, Evaluator(space, truth, lat), ("accuracy", "latency")),
        make_engine("nsga2"),
        budget=5000,
        seed=0,
    )
    best = max(lin.hv[-1][2], ns.hv[-1][2])

    def first_reach(hv):
        for _, n, v in hv:
            if v >= 0.95 * best:
                return n
        return None

    return {
        "best_hv": round(best, 5),
        "linas_measured_to_95pct": first_reach(lin.hv),
        "linas_budget": budget,
        "nsga2_measured_to_95pct": first_reach(ns.hv),
        "nsga2_budget": 5000,
        "linas_final_hv": round(lin.hv[-1][2], 5),
        "nsga2_final_hv": round(ns.hv[-1][2], 5),
    }


def linas_real(run_dir: str, target: str, budget: int = 200, seed: int = 0, pool: int = 1200) -> dict:
    """linas on a trained run with real measurements, against the measured stratified random sample of
    `nasforge build-predictor` (RUN/measurements/val.jsonl, same protocol: val split, 500 calibration images):
    measurements each needs to reach 95% / 99% of the best measured hypervolume seen by either."""
    from nasforge.latency import load_latency_model
    from nasforge.predictors import MeasurementStore, sample_for_predictor
    from nasforge.train.runs import evaluate_subnets, load_run

    run = load_run(run_dir, device="auto")
    space = run.space
    # no predictor: linas's surrogate learns from its own `budget` measurements only (equal terms with random)
    problem = SearchProblem(
        space, Evaluator(space, NoPredictor(), load_latency_model(target, space)), ("accuracy", "latency")
    )
    measure = lambda archs: evaluate_subnets(run, list(archs), "val", calib_images=500)  # noqa: E731
    t = time.perf_counter()
    lin = run_search(problem, make_engine("linas", measure=measure), budget=budget, seed=seed, storage="memory")
    linas_s = time.perf_counter() - t
    curve_linas = [(n, v) for _, n, v in lin.hv]

    archs = sample_for_predictor(space, pool, seed=0)
    store = MeasurementStore(
        run.path / "measurements" / "val.jsonl",
        space,
        checkpoint_sha256=run.checkpoint_sha256,
        dataset=run.config.data.dataset,
        split="val",
        protocol={"calib_images": 500},
    )
    acc, newly = store.measure(archs, measure, batch_size=32)
    ev = problem.evaluate(space.encode_batch(archs))
    F = problem.to_minimise({**ev.metrics, "accuracy": np.asarray(acc, dtype=np.float64)})
    hv = hypervolume_for(problem)
    curve_random = [(k, hv(F[:k])) for k in range(10, pool + 1, 10)]
    best = max(max(v for _, v in curve_linas), max(v for _, v in curve_random))

    def first_reach(curve, frac):
        return next((n for n, v in curve if v >= frac * best), None)

    return {
        "space": space.name,
        "target": target,
        "best_hv": round(best, 5),
        "linas_budget": budget,
        "linas_final_hv": round(curve_linas[-1][1], 5),
        "random_pool": pool,
        "random_final_hv": round(curve_random[-1][1], 5),
        "random_newly_measured": newly,
        **{f"linas_to_{p}pct": first_reach(curve_linas, p / 100) for p in (95, 99, 99.5)},
        **{f"random_to_{p}pct": first_reach(curve_random, p / 100) for p in (95, 99, 99.5)},
        "linas_seconds": round(linas_s, 1),
        "linas_curve": curve_linas,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip tpe/gp and use one seed")
    ap.add_argument("--json", default=None)
    ap.add_argument("--only-throughput", action="store_true")
    ap.add_argument("--run", default=None, help="engines vs random on this trained run's predictor and latency table")
    ap.add_argument("--target", default="cpu")
    ap.add_argument(
        "--linas-budget",
        type=int,
        default=None,
        help="with --run: linas with real measurements vs the run's measured stratified sample",
    )
    ap.add_argument("--linas-seeds", type=int, nargs="+", default=[0], help="with --linas-budget: linas seeds")
    args = ap.parse_args()
    if args.run and args.linas_budget:
        runs = [linas_real(args.run, args.target, args.linas_budget, seed=seed) for seed in args.linas_seeds]
        for seed, res in zip(args.linas_seeds, runs):
            console.print({"seed": seed, **{k: v for k, v in res.items() if k != "linas_curve"}})
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(runs[0] if len(runs) == 1 else {"seeds": args.linas_seeds, "runs": runs}, fh, indent=2)
        return
    if args.run and args.only_throughput:
        result = throughput(run_dir=args.run, target=args.target)
        console.print(result)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"throughput": result}, fh, indent=2)
        return
    if args.run:
        rows = engines_vs_random(
            "", (0,) if args.quick else (0, 1, 2), args.quick, run_dir=args.run, target=args.target
        )
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"engines": rows}, fh, indent=2)
        return
    seeds = (0,) if args.quick else (0, 1, 2)
    results = {"throughput": throughput(), "throughput_torch": throughput(torch_predictor=True)}
    console.print(results["throughput"], results["throughput_torch"])
    if args.only_throughput:
        return
    results["engines"] = engines_vs_random("tiny-mbv3", seeds, args.quick) + engines_vs_random(
        "mobilenetv3-ofa-cifar", seeds, args.quick
    )
    results["linas"] = linas_vs_nsga2()
    console.print(results["linas"])
    table = Table(title="hypervolume at equal budgets (mean over seeds)")
    for c in ("space", "engine", "budget", "hv", "hv_random", "hv_true", "seconds"):
        table.add_column(c)
    for r in results["engines"]:
        table.add_row(*(str(r[c]) for c in ("space", "engine", "budget", "hv", "hv_random", "hv_true", "seconds")))
    console.print(table)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
