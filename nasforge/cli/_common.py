"""Option types and helpers shared by command modules (defined once)."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

SpaceOpt = Annotated[str, typer.Option("--space", help="Shipped space name or a search-space YAML path.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Random seed (>= 0).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts and pipes) instead of a table.")]
ArchOpt = Annotated[str, typer.Option("--arch", help="Arch: JSON string, JSON file, or FILE#i (nasforge or OFA form).")]

DataDirOpt = Annotated[
    Optional[str],
    typer.Option("--data-dir", help="The run's dataset folder (an imported run's: an ImageFolder, e.g. ImageNet)."),
]
LoaderOpt = Annotated[Optional[str], typer.Option("--loader", help="auto | memory | stream (with --data-dir).")]

# In a pipe or a file there is no terminal width to respect: tables get the room their content needs.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 240)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 240)


def with_data(run, data_dir: str | None, loader: str | None):  # type: ignore[no-untyped-def]
    """`run` reading its dataset from --data-dir / with --loader (unchanged when neither is given)."""
    return run if data_dir is None and loader is None else run.with_data(data_dir, loader)


def warn(text: str) -> None:
    """One warning line on stderr, in the CLI's style."""
    err_console.print(f"[yellow]warning:[/] {text}", highlight=False)


def print_json(obj: Any) -> None:
    """One JSON document on stdout (plain: no colour, no wrapping)."""
    typer.echo(json.dumps(obj, indent=1, default=str))


class ResultTable(Table):
    """A rich table whose cells wrap instead of being cut with '…': names, keys and paths stay whole in
    pipes and 80-column terminals."""

    def add_column(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        kwargs.setdefault("overflow", "fold")
        super().add_column(*args, **kwargs)
