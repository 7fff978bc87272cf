"""`nasforge search`: the best subnets of a trained supernet for a device (a thin layer over nasforge.search)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nasforge.cli import app
from nasforge.cli._common import JsonOpt, ResultTable, console, print_json
from nasforge.cli.progress import progress_bar
from nasforge.search.engines.base import ENGINES


@app.command("search")
def search_command(
    run: Annotated[Path | None, typer.Option("--run", help="Trained run dir: gives the space and predictor.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Latency target (LUT or roofline estimate).")] = None,
    engine: Annotated[
        str | None, typer.Option("--engine", help=f"Search engine: {ENGINES.choices_help()}.")
    ] = None,
    objectives: Annotated[
        str | None, typer.Option("--objectives", help="Comma list of accuracy,latency,macs,params.")
    ] = None,
    constraint: Annotated[
        list[str] | None, typer.Option("--constraint", help='Hard bound, e.g. "latency<=15ms", "macs<=300M".')
    ] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="Evaluations (measurements for linas).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Random seed (>= 0).")] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output dir (checkpoints, study, front); default RUN_DIR/search-TARGET."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML with any of these settings; flags win.")] = None,
    space: Annotated[str | None, typer.Option("--space", help="Space name/YAML, for use without --run.")] = None,
    predictor: Annotated[
        Path | None, typer.Option("--predictor", help="Accuracy predictor file (default: the run's).")
    ] = None,
    lut: Annotated[Path | None, typer.Option("--lut", help="Latency LUT file for --target.")] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage URL (default sqlite in --out).")
    ] = None,
    worker: Annotated[
        int | None,
        typer.Option("--worker", help="Worker index when several processes (same --seed and --storage) share a study."),
    ] = None,
    pop_size: Annotated[
        int | None, typer.Option("--pop-size", help="Population size (pymoo engines, evolution).")
    ] = None,
    mutation_rate: Annotated[
        float | None, typer.Option("--mutation-rate", help="Per-gene mutation rate (default 1/genes).")
    ] = None,
    resume: Annotated[
        bool | None, typer.Option("--resume/--no-resume", help="Continue from a checkpoint in --out.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a trained supernet's subnets for the best accuracy/latency/MACs/params trade-offs."""
    from nasforge.search.config import load_config_file, resolve_config

    file_values = load_config_file(config) if config is not None else {}
    cfg = resolve_config(
        file_values,
        dict(run=run, target=target, engine=engine, objectives=objectives, constraints=tuple(constraint or ()),
             budget=budget, seed=seed, out=out, space=space, predictor=predictor, lut=lut, storage=storage,
             worker=worker, pop_size=pop_size, mutation_rate=mutation_rate, resume=resume),
        source=str(config) if config is not None else None,
    )
    from nasforge.pipelines.search import default_out, search_from_config

    with progress_bar(
        console, f"[bold]{cfg.engine}[/]", cfg.budget, extra="HV {task.fields[hv]:.4f}", transient=True, hv=0.0
    ) as update:
        outcome = search_from_config(cfg, on_step=lambda step, n, hv: update(completed=n, hv=hv))
    if as_json:
        r = outcome.result
        print_json({"front": r.front_rows(), "evaluations": len(r.history), "hypervolume": r.hv[-1][2],
                    "out": str(default_out(cfg)), "files": {k: str(v) for k, v in outcome.paths.items()}})
        return
    _print_front(outcome.result)
    console.print(
        f"front: {len(outcome.result.front)} archs -> {outcome.paths['pareto']}  "
        f"(history, hypervolume.csv, pareto.png in {default_out(cfg)})"
    )


def _print_front(result: Any) -> None:

    from nasforge.arch import ArchConfig
    from nasforge.latency.model import prediction_label

    rows = result.front_rows()
    latency = result.problem.evaluator.latency
    src = result.problem.evaluator.latency_source
    # a table's numbers are predictions too: "predicted", and the caption says from which machine's table
    label = prediction_label(latency) if latency is not None and latency.table is not None else None
    table = ResultTable(
        title=f"Pareto front ({result.engine}, {len(result.history)} evaluations, HV {result.hv[-1][2]:.4f})",
        caption=f"latency {label}" if label else None,
    )
    head = "latency ms (predicted)" if label else f"latency ms ({src})" if src else "latency ms"
    for col in ("#", "accuracy %", head, "MACs", "params", "arch"):
        table.add_column(col, justify="left" if col == "arch" else "right", overflow="fold")
    for i, r in enumerate(rows):
        table.add_row(
            str(i),
            "-" if r["accuracy"] is None else f"{r['accuracy']:.2f}",
            "-" if r["latency_ms"] is None else f"{r['latency_ms']:.3f}",
            f"{r['macs'] / 1e6:.2f}M",
            f"{r['params'] / 1e6:.3f}M",
            ArchConfig.from_dict(r["arch"]).key,
        )
    console.print(table)
