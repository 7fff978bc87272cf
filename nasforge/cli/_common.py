"""Option types and helpers shared by command modules (defined once)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich.console import Console, ConsoleDimensions
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

SpaceOpt = Annotated[str, typer.Option("--space", help="Shipped space name or a search-space YAML path.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Random seed (>= 0).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts and pipes) instead of a table.")]
ArchOpt = Annotated[str, typer.Option("--arch", help="Arch: JSON string, JSON file, or FILE#i (nasforge or OFA form).")]

DataDirOpt = Annotated[
    Optional[str],
    typer.Option("--data-dir", help="The run's dataset folder (an imported run's: an ImageFolder, e.g. ImageNet)."),
]
LoaderOpt = Annotated[Optional[str], typer.Option("--loader", help="auto | memory | stream (with --data-dir).")]

# Wider than any line nasforge prints: in a pipe a line is as long as its content.
PIPE_WIDTH = 1 << 16


class CliConsole(Console):
    """A rich console that is plain outside a terminal: writing to a pipe or a file (or `CliRunner`) it uses
    no colour and no terminal width, whatever COLUMNS or FORCE_COLOR say, so a table cell, a name, a path or
    an arch key is never wrapped or cut with '…' for `grep`, `awk` or a log. In a terminal nothing changes."""

    def _tty(self) -> bool:
        isatty = getattr(self.file, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # a closed file
            return False

    @property
    def is_terminal(self) -> bool:
        return self._tty()

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self._tty() else ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    def rule(self, title: Any = "", **kwargs: Any) -> None:
        """A section line; in a pipe as wide as its title needs (at least 80), not PIPE_WIDTH."""
        if self._tty():
            return super().rule(title, **kwargs)
        text = Text.from_markup(title) if isinstance(title, str) else title
        self.print(Rule(text, **kwargs), width=max(80, text.cell_len + 8) if isinstance(text, Text) else 80)


console = CliConsole()
err_console = CliConsole(stderr=True)


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
    """A rich table whose cells wrap instead of being cut with '…' (80-column terminals), and which is at least
    as wide as its title: a title that is an arch key or a path stays on one line wherever the room allows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.title, str):
            self.min_width = max(self.min_width or 0, Text.from_markup(self.title).cell_len)

    def add_column(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        kwargs.setdefault("overflow", "fold")
        super().add_column(*args, **kwargs)
