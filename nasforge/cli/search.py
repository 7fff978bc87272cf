"""`nasforge search`: the best subnets of a trained supernet for a device (a thin layer over nasforge.search)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nasforge.cli import app
from nasforge.cli._common import console
from nasforge.errors import ConfigError


def _load_run(run_dir: Path) -> Any:
    """The trained run (space with its real class count, supernet, checkpoint hash)."""
    from nasforge.train.runs import load_run

    return load_run(run_dir, device="auto")


def _load_predictor(path: Path | None, run: Any, space: Any) -> Any:
    """The run's predictor (refused if built for another space or supernet), or the one at `path`."""
    from nasforge.predictors import load_predictor, load_run_predictor

    if run is not None:
        return load_run_predictor(run, path)
    if path is None:
        raise ConfigError("accuracy needs a predictor: give --predictor PATH or --run RUN_DIR")
    return load_predictor(path, space)


def _load_latency(target: str, space: Any, lut: Path | None) -> Any:
    from nasforge.latency import load_latency_model

    return load_latency_model(target, space, lut_path=lut)


def _measure(run: Any) -> Any:
    """linas's real measurement: top-1 on the run's validation split, BN recalibrated."""
    from nasforge.train.runs import evaluate_subnets

    return lambda archs: evaluate_subnets(run, list(archs), split="val")


@app.command("search")
def search_command(
    run: Annotated[Path | None, typer.Option("--run", help="Trained run dir: gives the space and predictor.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Latency target (LUT or roofline estimate).")] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="nsga2|agemoea|nsga3|evolution|tpe|gp|random|linas.")] = None,
    objectives: Annotated[str | None, typer.Option("--objectives", help="Comma list of accuracy,latency,macs,params.")] = None,
    constraint: Annotated[list[str] | None, typer.Option("--constraint", help='Hard bound, e.g. "latency<=15ms", "macs<=300M".')] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="Evaluations (measurements for linas).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output dir (checkpoints, study, front); default RUN_DIR/search-TARGET.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML with any of these settings; flags win.")] = None,
    space: Annotated[str | None, typer.Option("--space", help="Space name/YAML, for use without --run.")] = None,
    predictor: Annotated[Path | None, typer.Option("--predictor", help="Accuracy predictor file (default: the run's).")] = None,
    lut: Annotated[Path | None, typer.Option("--lut", help="Latency LUT file for --target.")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna storage URL (default sqlite in --out).")] = None,
    worker: Annotated[int | None, typer.Option("--worker", help="Worker index when several processes (same --seed and --storage) share a study.")] = None,
    pop_size: Annotated[int | None, typer.Option("--pop-size", help="Population size (pymoo engines, evolution).")] = None,
    mutation_rate: Annotated[float | None, typer.Option("--mutation-rate", help="Per-gene mutation rate (default 1/genes).")] = None,
    resume: Annotated[bool | None, typer.Option("--resume/--no-resume", help="Continue from a checkpoint in --out.")] = None,
) -> None:
    """Search a trained supernet's subnets for the best accuracy/latency/MACs/params trade-offs."""
    from nasforge.search.config import load_config_file, resolve_config

    file_values = load_config_file(config) if config is not None else {}
    cfg = resolve_config(
        file_values,
        {
            "run": run, "target": target, "engine": engine, "objectives": objectives,
            "constraints": tuple(constraint or ()), "budget": budget, "seed": seed, "out": out,
            "space": space, "predictor": predictor, "lut": lut, "storage": storage, "worker": worker,
            "pop_size": pop_size, "mutation_rate": mutation_rate, "resume": resume,
        },
    )
    run_search_from_config(cfg)


def run_search_from_config(cfg: Any) -> Any:
    """Load the space, predictor and latency model a config names, search, write and print the front."""
    import numpy as np
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from nasforge.search import Evaluator, SearchProblem, make_engine, run_search, write_outputs
    from nasforge.space import load_space

    run_dir = Path(cfg.run) if cfg.run else None
    if run_dir is not None and not run_dir.is_dir():
        raise ConfigError(f"--run {run_dir}: no such directory")
    loaded = _load_run(run_dir) if run_dir is not None else None
    if cfg.space is None and loaded is None:
        raise ConfigError("give --run RUN_DIR (or --space S with --predictor PATH)")
    space = load_space(cfg.space) if cfg.space else loaded.space
    constraints = cfg.parsed_constraints()
    used = set(cfg.objectives) | {c.metric for c in constraints}
    accuracy = _load_predictor(Path(cfg.predictor) if cfg.predictor else None, loaded, space) if "accuracy" in used else None
    if "latency" in used and not cfg.target:
        raise ConfigError("latency is an objective or constraint: give --target NAME")
    latency = _load_latency(cfg.target, space, Path(cfg.lut) if cfg.lut else None) if cfg.target else None
    measure = None
    if cfg.engine == "linas":
        if run_dir is None:
            raise ConfigError("engine linas measures real accuracy: give --run RUN_DIR")
        measure = _measure(loaded)
    problem = SearchProblem(space, Evaluator(space, accuracy, latency), tuple(cfg.objectives), constraints)
    eng = make_engine(cfg.engine, pop_size=cfg.pop_size, mutation_rate=cfg.mutation_rate, measure=measure)
    if cfg.out:
        out_dir = Path(cfg.out)
    elif run_dir is not None:
        out_dir = run_dir / f"search-{cfg.target or 'cost'}"
    else:
        out_dir = Path("search-out")
    with Progress(
        TextColumn(f"[bold]{cfg.engine}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("HV {task.fields[hv]:.4f}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task("search", total=cfg.budget, hv=0.0)
        result = run_search(
            problem, eng, budget=cfg.budget, seed=cfg.seed, out_dir=out_dir, storage=cfg.storage,
            worker=cfg.worker, resume=cfg.resume,
            on_step=lambda step, n, hv: progress.update(task, completed=n, hv=hv),
        )
    paths = write_outputs(result, out_dir)
    from nasforge.io import atomic_write_text

    import yaml

    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if not len(result.front):
        from nasforge.search import SearchError

        raise SearchError(
            f"no evaluated arch met {', '.join(c.text for c in constraints)} in {len(result.history)} evaluations; "
            f"history is in {paths['history']}"
        )
    _print_front(result, np)
    console.print(f"front: {len(result.front)} archs -> {paths['pareto']}  (history, hypervolume.csv, pareto.png in {out_dir})")
    return result


def _print_front(result: Any, np: Any) -> None:
    from rich.table import Table

    rows = result.front_rows()
    src = result.problem.evaluator.latency_source
    table = Table(title=f"Pareto front ({result.engine}, {len(result.history)} evaluations, HV {result.hv[-1][2]:.4f})")
    for col in ("#", "accuracy %", f"latency ms ({src})" if src else "latency ms", "MACs", "params", "arch"):
        table.add_column(col, justify="left" if col == "arch" else "right")
    for i, r in enumerate(rows):
        from nasforge.arch import ArchConfig

        table.add_row(
            str(i),
            "-" if r["accuracy"] is None else f"{r['accuracy']:.2f}",
            "-" if r["latency_ms"] is None else f"{r['latency_ms']:.3f}",
            f"{r['macs'] / 1e6:.2f}M",
            f"{r['params'] / 1e6:.3f}M",
            ArchConfig.from_dict(r["arch"]).key,
        )
    console.print(table)
