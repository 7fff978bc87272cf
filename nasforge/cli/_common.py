"""Option types and helpers shared by command modules (defined once)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

SpaceOpt = Annotated[str, typer.Option("--space", help="Shipped space name or a search-space YAML path.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Random seed (>= 0).")]
ArchOpt = Annotated[str, typer.Option("--arch", help="Arch: JSON string, JSON file, or FILE#i (nasforge or OFA form).")]

DataDirOpt = Annotated[
    Optional[str],
    typer.Option("--data-dir", help="The run's dataset folder (an imported run's: an ImageFolder, e.g. ImageNet)."),
]
LoaderOpt = Annotated[Optional[str], typer.Option("--loader", help="auto | memory | stream (with --data-dir).")]

console = Console()
err_console = Console(stderr=True)


def with_data(run, data_dir: str | None, loader: str | None):  # type: ignore[no-untyped-def]
    """`run` reading its dataset from --data-dir / with --loader (unchanged when neither is given)."""
    return run if data_dir is None and loader is None else run.with_data(data_dir, loader)


def warn(text: str) -> None:
    """One warning line on stderr, in the CLI's style."""
    err_console.print(f"[yellow]warning:[/] {text}", highlight=False)
