"""`nasforge report RUN`: one self-contained HTML page of a run (a thin wrapper over `nasforge.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nasforge.cli import app
from nasforge.cli._common import console


@app.command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="A run folder: a training run, or the quickstart's --out folder.")],
    out: Annotated[
        Optional[Path], typer.Option("--out", help="The HTML page (default RUN/report.html); PNGs go beside it.")
    ] = None,
) -> None:
    """Write one HTML page of a run: training curves, latency and predictor fits, Pareto fronts, exported models."""
    from nasforge.io import check_output_file
    from nasforge.report import build_report

    if out is not None:
        out = check_output_file(out, "--out")
    result = build_report(run, out)
    empty = [name for name in ("training", "latency", "predictor", "searches", "exports")
             if name in result.report.missing]
    console.print(f"report: {result.path}" + (f" (no data for: {', '.join(empty)})" if empty else ""),
                  markup=False, highlight=False)
