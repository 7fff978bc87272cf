"""`nasforge quickstart`: the whole pipeline on the bundled digits data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from nasforge.cli import app
from nasforge.cli._common import console


@app.command("quickstart")
def quickstart_command(
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: a fresh one under runs/).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Quickstart YAML (default configs/quickstart.yaml).")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Tiny budgets (CI smoke run).")] = False,
) -> None:
    """Train a small supernet, price latency, build the predictor, search under a latency bound, export to ONNX."""
    from nasforge.quickstart import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig.load(config)
    if fast:
        cfg = cfg.fast()
    if out is None:
        out = Path("runs") / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    run_quickstart(cfg, out, console=console)
