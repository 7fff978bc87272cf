"""The `nasforge` command: a thin Typer layer over the library.

Every command module registers itself on `app`; `main()` is the one error boundary:
a `NasforgeError` (or a bad flag) becomes one line on stderr and exit code 2. Set
NASFORGE_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer
from typer.core import TyperGroup

from nasforge.errors import NasforgeError

# `nasforge --help` lists the commands in the order a user meets them: look around, try it all, then the
# pipeline's stages, then Once-for-All's files. A command missing here is listed last.
COMMAND_ORDER = (
    "spaces", "space", "targets", "quickstart", "train-supernet", "train-subnet", "evaluate", "build-predictor",
    "profile", "lut", "latency", "search", "export", "report", "finetune", "import-ofa", "import",
)


class _ErrorBoundary(TyperGroup):
    """Maps library errors to one line and exit code 2, and library warnings to one `warning:` line each
    (the first time a message appears), for `main()` and `CliRunner` alike; lists commands in pipeline order."""

    def list_commands(self, ctx):  # type: ignore[no-untyped-def]
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))  # stable: unknown ones keep their order

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        shown: set[str] = set()

        def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            text = str(message)
            if text not in shown:
                shown.add(text)
                typer.echo(f"warning: {text}", err=True)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = show
                return super().invoke(ctx)
        except NasforgeError as exc:
            if os.environ.get("NASFORGE_DEBUG"):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_ErrorBoundary,
    name="nasforge",
    help="Once-for-all NAS: train one elastic supernet, then specialise it for any hardware target.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # One module per command group, in pipeline order; each adds its commands to `app`.
    from nasforge.cli import (
        export,  # noqa: F401
        latency,  # noqa: F401
        ofa,  # noqa: F401
        predict,  # noqa: F401
        quickstart,  # noqa: F401
        report,  # noqa: F401
        search,  # noqa: F401
        spaces,  # noqa: F401
        train,  # noqa: F401
    )


_register()


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:])
