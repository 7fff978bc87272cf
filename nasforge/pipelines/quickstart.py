"""The whole pipeline in one call: train -> latency -> accuracy predictor -> search -> export.

Each stage writes its artifact under the output folder and is skipped when that artifact is
already there, so an interrupted quickstart picks up where it stopped. Every config it will use
(its own, the training config, the target) is read and checked before any work starts.
Progress and messages go to a `QuickstartHooks` (the CLI draws them; the library prints nothing).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nasforge.config import Validated, check, load_dataclass
from nasforge.errors import ConfigError
from nasforge.io import check_output_dir, read_yaml
from nasforge.predictors.base import PREDICTORS
from nasforge.resources import shipped_dir
from nasforge.search.engines.base import ENGINES

if TYPE_CHECKING:
    from nasforge.latency.model import LatencyModel
    from nasforge.latency.targets import Target
    from nasforge.predictors.base import AccuracyPredictor
    from nasforge.train.runs import Run

DEFAULT_CONFIG = shipped_dir("configs") / "quickstart.yaml"
STAGES = 5


@dataclass(frozen=True)
class QuickstartConfig(Validated):
    train_config: str = "configs/train/quickstart.yaml"
    epochs: int = field(default=12, metadata=check(gt=0))
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    predictor_samples: int = field(default=400, metadata=check(ge=4))
    predictor_model: str = field(default="mlp", metadata=check(choices=PREDICTORS))
    calib_images: int = field(default=500, metadata=check(gt=0))  # BN recalibration (training's eval.calib_images too)
    target: str = "cpu"
    latency_fraction: float = field(default=0.5, metadata=check(gt=0, le=1))
    engine: str = field(default="nsga2", metadata=check(choices=ENGINES))
    budget: int = field(default=2000, metadata=check(gt=0))
    seed: int = field(default=0, metadata=check(ge=0))

    @classmethod
    def load(cls, path: str | Path | None = None) -> QuickstartConfig:
        path = Path(path) if path else DEFAULT_CONFIG
        return load_dataclass(cls, read_yaml(path, ConfigError, "quickstart config"), source=str(path))

    def fast(self) -> QuickstartConfig:
        """A reduced run for CI: the same stages with tiny budgets."""
        return replace(self, epochs=2, predictor_samples=24, calib_images=128, budget=300)


@dataclass
class QuickstartHooks:
    """Where the quickstart reports; every hook is optional."""

    stage: Callable[[int, int, str], None] = lambda i, n, title: None
    note: Callable[[str], None] = lambda text: None
    warning: Callable[[str], None] = lambda text: None
    train_callbacks: Sequence[Any] = ()
    on_measure: Callable[[int, int], Callable[[int], None]] | None = None  # (total, done) -> advance(k)
    on_search_step: Callable[[int, int, float], None] | None = None


def resolve_shipped(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else shipped_dir() / p


PROFILE_VALIDATE = 24  # whole subnets the quickstart measures when it profiles its space on this machine


def _latency_model(target: Target | str, space: Any, hooks: QuickstartHooks) -> LatencyModel:
    """Stage 2: the target's latency model; a `local` target (cpu) is profiled here once (~30 s), then reused.

    A table measured on another machine (the shipped Intel Xeon examples) is never used for `cpu`
    while this machine can be measured: the numbers would be another CPU's. The table found is used as is;
    only after profiling is it looked up again (a new one was written).
    """
    from nasforge.latency import load_latency_model
    from nasforge.latency.model import find_best_table, latency_model_for, source_label
    from nasforge.latency.targets import Target, load_target

    target = target if isinstance(target, Target) else load_target(target)
    table = None
    if target.local:
        table, _ = find_best_table(target, space)
        if table is None or source_label(table, target) != "measured":
            _profile_here(target, space, hooks)
            table = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latency = load_latency_model(target, space) if table is None else latency_model_for(target, space, table)
    for w in caught:
        hooks.warning(str(w.message))
    return latency


def _profile_here(target: Target, space: Any, hooks: QuickstartHooks) -> None:
    """Measure `space`'s table on this machine (every block, then whole subnets for the calibration)."""
    from nasforge.latency.ort_timing import device_string
    from nasforge.latency.profiler import profile

    hooks.note(f"profiling {space.name} on this machine ({device_string()}): every block, then "
               f"{PROFILE_VALIDATE} whole subnets to calibrate (once; later runs reuse the table)")
    progress: dict[str, Any] = {}

    def advance(stage: str) -> Callable[[int, int], None]:
        def update(done: int, total: int) -> None:
            if hooks.on_measure is None:
                return
            if stage not in progress:
                progress[stage] = (hooks.on_measure(total, 0), 0)
            step, seen = progress[stage]
            step(done - seen)
            progress[stage] = (step, done)

        return update

    result = profile(space, target, validate=PROFILE_VALIDATE, on_blocks=advance("blocks"),
                     on_subnets=advance("subnets"))
    v = result.validation
    if v is not None and not v.is_trusted:
        reason = v.noise.reason if v.noise is not None else "no reason recorded"
        hooks.warning(f"this machine was too noisy to calibrate the table ({reason}): "
                      "plain block sums are used")
    elif v is not None:
        c = v.headline
        hooks.note(f"table {result.path}: calibrated, 5-fold CV {c.mape:.1f}% MAPE, "
                   f"{c.within_10pct:.0%} within +-10%, Kendall tau {c.kendall_tau:.2f}")


def run_quickstart(cfg: QuickstartConfig, out: str | Path, hooks: QuickstartHooks | None = None) -> dict[str, Any]:
    """Run every stage into `out`; returns where each artifact is and the chosen model's numbers."""
    from nasforge.latency.targets import load_target
    from nasforge.train.config import load_config
    from nasforge.train.runs import load_run
    from nasforge.train.trainer import train_supernet

    hooks = hooks or QuickstartHooks()
    out = check_output_dir(out)
    run_dir = out / "supernet"
    # every config first: a typo must not surface after minutes of training
    train_cfg = load_config(resolve_shipped(cfg.train_config), {
        "epochs": cfg.epochs, "device": cfg.device, "seed": cfg.seed, "eval.calib_images": cfg.calib_images})
    target = load_target(cfg.target)

    hooks.stage(1, STAGES, "train the supernet")
    if (run_dir / "supernet.pt").exists():
        hooks.note(f"{run_dir} already trained: skipping")
    else:
        resume = (run_dir / "checkpoints" / "last.pt").exists()
        train_supernet(train_cfg, run_dir, resume=resume, callbacks=hooks.train_callbacks)
    run = load_run(run_dir, device=cfg.device)
    space = run.space

    hooks.stage(2, STAGES, "latency on the target")
    from nasforge.latency.model import prediction_label

    latency = _latency_model(target, space, hooks)
    lo, hi = (float(v) for v in latency.predict([space.smallest(), space.largest()]))
    bound = lo + cfg.latency_fraction * (hi - lo)
    hooks.note(f"target {cfg.target}: latency {prediction_label(latency)}, from {lo:.3f} ms (smallest) to "
               f"{hi:.3f} ms (largest); constraint latency <= {bound:.3f} ms")

    hooks.stage(3, STAGES, "accuracy predictor")
    predictor_dir, predictor, metrics, measure = _predictor(cfg, run, hooks)

    hooks.stage(4, STAGES, "search, then measure the best candidates on the validation split")
    search_dir, front, chosen, candidates = _search_and_choose(
        cfg, run, (predictor, latency), bound, measure, metrics, hooks)

    hooks.stage(5, STAGES, "export the chosen subnet")
    from nasforge.export.pipeline import export_prepared, prepare_from_run

    exported = export_prepared(prepare_from_run(run, chosen.arch, calib_images=cfg.calib_images),
                               out / "model.onnx", target=cfg.target, latency=latency)
    side = exported.sidecar
    lat = side["latency"]
    from nasforge.report import Resolved, build_report

    # one page of everything above (out/report.html), from what this command has loaded already
    report = build_report(out, resolved=Resolved(run=run, predictor=predictor, table=latency.table))
    return {
        "run": str(run_dir), "predictor": str(predictor_dir), "search": str(search_dir),
        "pareto": str(search_dir / "pareto.json"), "pareto_png": str(search_dir / "pareto.png"),
        "model": str(exported.model_path), "sidecar": str(exported.sidecar_path), "constraint_ms": bound,
        "predicted_accuracy": chosen.predicted, "val_accuracy": chosen.val,
        "test_accuracy": side["accuracy"]["test_top1"],
        "candidates": [c.to_dict() for c in candidates],
        "latency_ms": lat["ms"], "latency_source": lat["source"], "latency_measured_ms": lat.get("measured_ms"),
        "latency_measured_cpu": lat.get("cpu"), "latency_not_measured": lat.get("not_measured"),
        "latency_measured_at_table_speed_ms": lat.get("measured_at_table_speed_ms"),
        "ort_max_abs_diff": side["onnx"]["max_abs_diff_vs_torch"], "front_size": len(front),
        "predictor_metrics": dict(metrics), "report": str(report.path),
    }


def _predictor(
    cfg: QuickstartConfig, run: Run, hooks: QuickstartHooks
) -> tuple[Path, AccuracyPredictor, dict[str, Any], Any]:
    """Stage 3: measure a stratified sample on the validation split and fit the predictor.

    Returns its folder, the predictor as saved (loaded back once: the search uses it), its held-out metrics and
    the measurement function (through the same store and protocol).
    """
    from nasforge.predictors import MeasurementStore, build_predictor, load_run_predictor
    from nasforge.train.runs import evaluate_subnets

    run_dir = Path(run.path)
    predictor_dir = run_dir / "predictor"
    protocol = {"calib_images": cfg.calib_images}
    store_path = run_dir / "measurements" / "val.jsonl"

    def evaluate(archs: Any) -> Any:
        return evaluate_subnets(run, list(archs), "val", calib_images=cfg.calib_images)

    _, report = build_predictor(
        run.space, evaluate, samples=cfg.predictor_samples, model=cfg.predictor_model, seed=cfg.seed,
        out_dir=predictor_dir, store_path=store_path, checkpoint_sha256=run.checkpoint_sha256,
        dataset=run.config.data.dataset, protocol=protocol, progress=hooks.on_measure,
    )
    predictor = load_run_predictor(run, predictor_dir)  # the saved one, checked against the run: the search uses it
    m = report.metrics
    hooks.note(f"{cfg.predictor_model} on {report.num_holdout} held-out subnets: RMSE {m['rmse']:.2f} pts, "
               f"Kendall tau {m['kendall_tau']:.3f}, Spearman {m['spearman']:.3f}")
    store = MeasurementStore(store_path, run.space, checkpoint_sha256=run.checkpoint_sha256,
                             dataset=run.config.data.dataset, split="val", protocol=protocol)
    return predictor_dir, predictor, dict(m), lambda archs: store.measure(archs, evaluate)[0]


def _search_and_choose(
    cfg: QuickstartConfig, run: Run, models: tuple[AccuracyPredictor, LatencyModel], bound: float, measure: Any,
    metrics: dict[str, Any], hooks: QuickstartHooks,
) -> tuple[Path, list[dict[str, Any]], Any, list[Any]]:
    """Stage 4: search under the latency bound (with the run, predictor and latency model resolved already), then
    choose among the best few feasible subnets by measured validation accuracy (`nasforge.pipelines.choice`)."""
    from nasforge.pipelines.choice import CANDIDATES, choose_by_validation, top_feasible
    from nasforge.pipelines.search import search_from_config
    from nasforge.search.config import SearchConfig

    run_dir = Path(run.path)
    search_dir = run_dir.parent / "search"
    outcome = search_from_config(SearchConfig(
        run=str(run_dir), target=cfg.target, engine=cfg.engine, objectives=("accuracy", "latency"),
        constraints=(f"latency<={bound:.4f}ms",), budget=cfg.budget, seed=cfg.seed, out=str(search_dir),
    ), on_step=hooks.on_search_step, device=cfg.device, run=run, accuracy=models[0], latency=models[1])
    chosen, candidates = choose_by_validation(top_feasible(outcome.result, CANDIDATES), measure)
    hooks.note(f"the {len(candidates)} most accurate feasible subnets by prediction (held-out RMSE "
               f"{metrics['rmse']:.2f} pts), measured on the validation split:")
    for i, c in enumerate(candidates):
        mark = "  <- chosen" if c is chosen else ""
        hooks.note(f"  #{i + 1}: predicted {c.predicted:.2f}%, measured val {c.val:.2f}%{mark}")
    return search_dir, outcome.result.front_rows(), chosen, candidates
