"""The whole pipeline in one call: train -> latency -> accuracy predictor -> search -> export.

Each stage writes its artifact under the output folder and is skipped when that artifact is
already there, so an interrupted quickstart picks up where it stopped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nasforge.errors import ConfigError
from nasforge.io import read_yaml
from nasforge.resources import shipped_dir

DEFAULT_CONFIG = shipped_dir("configs") / "quickstart.yaml"


@dataclass(frozen=True)
class QuickstartConfig:
    train_config: str = "configs/train/quickstart.yaml"
    epochs: int = 12
    device: str = "cpu"
    predictor_samples: int = 400
    predictor_model: str = "mlp"
    calib_images: int = 500
    target: str = "cpu"
    latency_fraction: float = 0.5
    engine: str = "nsga2"
    budget: int = 2000
    seed: int = 0

    @classmethod
    def load(cls, path: str | Path | None = None) -> QuickstartConfig:
        path = Path(path) if path else DEFAULT_CONFIG
        raw = read_yaml(path, ConfigError, "quickstart config") or {}
        known = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or set(raw) - known:
            raise ConfigError(f"{path}: unknown keys {sorted(set(raw) - known) if isinstance(raw, dict) else raw!r}")
        cfg = cls(**raw)
        if not 0 < cfg.latency_fraction <= 1:
            raise ConfigError(f"{path}: latency_fraction must be in (0, 1], got {cfg.latency_fraction}")
        return cfg

    def fast(self) -> QuickstartConfig:
        """A reduced run for CI: the same stages with tiny budgets."""
        return replace(self, epochs=2, predictor_samples=24, calib_images=128, budget=300)


def _resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else shipped_dir() / p


def run_quickstart(cfg: QuickstartConfig, out: str | Path, console: Console | None = None) -> dict[str, Any]:
    """Run every stage into `out`; returns where each artifact is and the chosen model's numbers."""
    from nasforge.cli.search import run_search_from_config
    from nasforge.export.pipeline import export_prepared, prepare_from_run
    from nasforge.latency import load_latency_model
    from nasforge.predictors import build_predictor, load_run_predictor
    from nasforge.search.config import SearchConfig
    from nasforge.train.config import load_config
    from nasforge.train.loop import train_supernet
    from nasforge.train.runs import evaluate_subnets, load_run

    console = console or Console()
    out = Path(out)
    run_dir = out / "supernet"

    console.rule("[bold]1/5 train the supernet")
    if (run_dir / "supernet.pt").exists():
        console.print(f"{run_dir} already trained: skipping")
    else:
        train_cfg = load_config(_resolve(cfg.train_config), {"epochs": cfg.epochs, "device": cfg.device,
                                                             "seed": cfg.seed})
        resume = (run_dir / "checkpoints" / "last.pt").exists()
        train_supernet(train_cfg, run_dir, resume=resume, console=console)
    run = load_run(run_dir, device=cfg.device)
    space = run.space

    console.rule("[bold]2/5 latency on the target")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latency = load_latency_model(cfg.target, space)
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}")
    lo, hi = (float(v) for v in latency.predict([space.smallest(), space.largest()]))
    bound = lo + cfg.latency_fraction * (hi - lo)
    console.print(f"target {cfg.target}: {latency.source} latency from {lo:.3f} ms (smallest) to {hi:.3f} ms "
                  f"(largest); constraint latency <= {bound:.3f} ms")

    console.rule("[bold]3/5 accuracy predictor")
    predictor_dir = run_dir / "predictor"
    _, report = build_predictor(
        space,
        lambda archs: evaluate_subnets(run, list(archs), "val", calib_images=cfg.calib_images),
        samples=cfg.predictor_samples,
        model=cfg.predictor_model,
        seed=cfg.seed,
        out_dir=predictor_dir,
        store_path=run_dir / "measurements" / "val.jsonl",
        checkpoint_sha256=run.checkpoint_sha256,
        dataset=run.config.data.dataset,
        protocol={"calib_images": cfg.calib_images},
    )
    load_run_predictor(run, predictor_dir)  # the search will refuse anything else
    m = report.metrics
    console.print(f"{cfg.predictor_model} on {report.num_holdout} held-out subnets: RMSE {m['rmse']:.2f} pts, "
                  f"Kendall tau {m['kendall_tau']:.3f}, Spearman {m['spearman']:.3f}")

    console.rule("[bold]4/5 search")
    search_dir = out / "search"
    result = run_search_from_config(SearchConfig(
        run=str(run_dir), target=cfg.target, engine=cfg.engine, objectives=("accuracy", "latency"),
        constraints=(f"latency<={bound:.4f}ms",), budget=cfg.budget, seed=cfg.seed, out=str(search_dir),
    ))
    rows = result.front_rows()
    best = max(rows, key=lambda r: r["accuracy"])

    console.rule("[bold]5/5 export the most accurate subnet under the constraint")
    arch = space.parse_arch(best["arch"])
    exported = export_prepared(prepare_from_run(run, arch, calib_images=cfg.calib_images), out / "model.onnx",
                               target=cfg.target)
    side = exported.sidecar
    summary = {
        "run": str(run_dir),
        "predictor": str(predictor_dir),
        "search": str(search_dir),
        "pareto": str(search_dir / "pareto.json"),
        "pareto_png": str(search_dir / "pareto.png"),
        "model": str(exported.model_path),
        "sidecar": str(exported.sidecar_path),
        "constraint_ms": bound,
        "predicted_accuracy": float(best["accuracy"]),
        "test_accuracy": side["accuracy"]["test_top1"],
        "latency_ms": side["latency"]["ms"],
        "latency_source": side["latency"]["source"],
        "ort_max_abs_diff": side["onnx"]["max_abs_diff_vs_torch"],
    }
    _print_summary(console, summary, len(rows), m)
    return summary


def _print_summary(console: Console, s: dict[str, Any], front_size: int, metrics: dict[str, float]) -> None:
    table = Table(title="nasforge quickstart: done")
    table.add_column("what")
    table.add_column("value")
    table.add_row("chosen subnet", f"predicted {s['predicted_accuracy']:.2f}%, measured test {s['test_accuracy']:.2f}%")
    table.add_row("latency", f"{s['latency_ms']:.3f} ms ({s['latency_source']}) <= {s['constraint_ms']:.3f} ms")
    table.add_row("ONNX Runtime vs PyTorch", f"max |diff| {s['ort_max_abs_diff']:.1e}")
    table.add_row("predictor (held-out)", f"Kendall tau {metrics['kendall_tau']:.3f}, RMSE {metrics['rmse']:.2f} pts")
    table.add_row("Pareto front", f"{front_size} archs: {s['pareto']} (plot {s['pareto_png']})")
    table.add_row("supernet run", s["run"])
    table.add_row("model", f"{s['model']} (+ {s['sidecar']})")
    console.print(table)
