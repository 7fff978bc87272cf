"""Rich progress for long library calls: the library reports through callbacks, the CLI draws.

`progress_bar(...)` gives a bar and an `update(advance=, completed=, **fields)` function for any stage
(search, profiling, measuring subnets, fine-tuning); training's bar is `nasforge.cli.train_progress`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _columns(label: str, extra: str = "") -> list[Any]:
    cols: list[Any] = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if extra:
        cols.append(TextColumn(extra))
    return [*cols, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]


@contextmanager
def progress_bar(console: Console, label: str, total: int, *, completed: int = 0, extra: str = "",
                 enabled: bool = True, transient: bool = False, **fields: Any) -> Iterator[Callable[..., None]]:
    """A bar for `total` units; yields `update(advance=0, completed=None, **fields)`."""
    with Progress(*_columns(label, extra), console=console, disable=not enabled, transient=transient) as bar:
        task = bar.add_task(label, total=total, completed=completed, **fields)

        def update(advance: int = 0, completed: int | None = None, **values: Any) -> None:
            bar.update(task, advance=advance, completed=completed, **values)

        yield update
