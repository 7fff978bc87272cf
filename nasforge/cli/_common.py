"""Option types and helpers shared by command modules (defined once)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

SpaceOpt = Annotated[str, typer.Option("--space", help="Shipped space name or a search-space YAML path.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Random seed (>= 0).")]
ArchOpt = Annotated[str, typer.Option("--arch", help="Arch: JSON string, JSON file, or FILE#i (nasforge or OFA form).")]

console = Console()
err_console = Console(stderr=True)


def warn(text: str) -> None:
    """One warning line on stderr, in the CLI's style."""
    err_console.print(f"[yellow]warning:[/] {text}", highlight=False)
