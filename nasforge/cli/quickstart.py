"""`nasforge quickstart`: the whole pipeline on the bundled digits data (`nasforge.pipelines.quickstart`)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nasforge.cli import app
from nasforge.cli._common import ResultTable, console, warn
from nasforge.cli.export import measured_latency_text


@app.command("quickstart")
def quickstart_command(
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Output folder (default: a fresh one under runs/).")
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="Quickstart YAML (default configs/quickstart.yaml).")
    ] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Tiny budgets (CI smoke run).")] = False,
) -> None:
    """Train a small supernet, price latency, build the predictor, search under a latency bound, export to ONNX."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from nasforge.cli.train_progress import TrainProgress
    from nasforge.pipelines.quickstart import QuickstartConfig, QuickstartHooks, run_quickstart

    cfg = QuickstartConfig.load(config)
    if fast:
        cfg = cfg.fast()
    if out is None:
        out = Path("runs") / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    train_bar = TrainProgress(console)
    with ExitStack() as stack:
        stack.callback(train_bar.close)
        bars = stack.enter_context(
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
        )

        def measuring(total: int, done: int) -> Any:
            task = bars.add_task("measuring subnets", total=total, completed=done)
            return lambda k: bars.advance(task, k)

        search_task: dict[str, Any] = {}

        def search_step(step: int, n: int, hv: float) -> None:
            if "id" not in search_task:
                search_task["id"] = bars.add_task(f"search {cfg.engine}", total=cfg.budget)
            bars.update(search_task["id"], completed=n)

        hooks = QuickstartHooks(
            stage=lambda i, n, title: console.rule(f"[bold]{i}/{n} {title}"),
            note=lambda text: console.print(text, markup=False, highlight=False),
            warning=warn,
            train_callbacks=[train_bar],
            on_measure=measuring,
            on_search_step=search_step,
        )
        summary = run_quickstart(cfg, out, hooks)
    _print_summary(summary)


def _print_summary(s: dict[str, Any]) -> None:
    table = ResultTable(title="nasforge quickstart: done")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    m = s["predictor_metrics"]
    table.add_row(
        "chosen subnet",
        f"predicted {s['predicted_accuracy']:.2f}% (predictor's held-out RMSE {m['rmse']:.2f} pts), measured val "
        f"{s['val_accuracy']:.2f}%, measured test {s['test_accuracy']:.2f}%",
    )
    cands = s["candidates"]
    table.add_row(
        "chosen by measured val among",
        f"the {len(cands)} most accurate feasible subnets by prediction, predicted / val: "
        + ", ".join(f"{c['predicted_accuracy']:.2f} / {c['val_accuracy']:.2f}" for c in cands),
    )
    table.add_row("latency", f"{s['latency_ms']:.3f} ms ({s['latency_source']}) <= {s['constraint_ms']:.3f} ms")
    table.add_row("latency timed here", measured_latency_text({
        "measured_ms": s.get("latency_measured_ms"), "cpu": s.get("latency_measured_cpu"),
        "measured_at_table_speed_ms": s.get("latency_measured_at_table_speed_ms"),
        "not_measured": s.get("latency_not_measured")}))
    table.add_row("ONNX Runtime vs PyTorch", f"max |diff| {s['ort_max_abs_diff']:.1e}")
    table.add_row("predictor (held-out)", f"Kendall tau {m['kendall_tau']:.3f}, RMSE {m['rmse']:.2f} pts")
    table.add_row("Pareto front", f"{s['front_size']} archs: {s['pareto']} (plot {s['pareto_png']})")
    table.add_row("supernet run", s["run"])
    table.add_row("model", f"{s['model']} (+ {s['sidecar']})")
    table.add_row("report", s["report"])
    console.print(table)
