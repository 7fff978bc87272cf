"""`nasforge spaces` and `nasforge space sample|show`: look at search spaces."""

from __future__ import annotations

import json
from typing import Annotated

import numpy as np
import typer

from nasforge.cli import app
from nasforge.cli._common import ArchOpt, JsonOpt, ResultTable, SeedOpt, SpaceOpt, console, print_json
from nasforge.errors import ConfigError
from nasforge.io import read_arch_argument
from nasforge.space import list_spaces, load_space

space_app = typer.Typer(help="Sample and inspect archs of a search space.", no_args_is_help=True)
app.add_typer(space_app, name="space")


@app.command("spaces")
def spaces_command(as_json: JsonOpt = False) -> None:
    """List the shipped search spaces with their subnet counts and MACs range."""
    if as_json:
        print_json([load_space(name).describe() for name in list_spaces()])
        return
    table = ResultTable(title="nasforge search spaces")
    for col in ("name", "block family", "subnets", "resolutions", "MACs (min-max)", "fingerprint"):
        table.add_column(col, justify="right" if col in ("subnets", "resolutions") else "left")
    for name in list_spaces():
        info = load_space(name).describe()
        table.add_row(
            name,
            info["family"],
            f"{info['subnets']:.3e}",
            str(info["resolutions"]),
            f"{info['macs_min'] / 1e6:.1f}M-{info['macs_max'] / 1e6:.1f}M",
            info["fingerprint"],
        )
    console.print(table)


def _with_cost(space_name: str, arch_dict: dict, macs: int, params: int) -> str:
    return json.dumps({**arch_dict, "macs": macs, "params": params})


@space_app.command("sample")
def sample_command(
    space: SpaceOpt,
    n: Annotated[int, typer.Option("-n", "--num", help="How many archs.")] = 1,
    seed: SeedOpt = 0,
    stratified: Annotated[bool, typer.Option(help="Spread the archs evenly over MACs.")] = False,
) -> None:
    """Print N archs as JSON lines with their MACs and parameter counts."""
    if n <= 0:
        raise ConfigError(f"-n must be positive, got {n}")
    s = load_space(space)
    rng = np.random.default_rng(seed)
    archs = s.sample_stratified(rng, n) if stratified else s.sample_many(rng, n)
    for arch in archs:
        typer.echo(_with_cost(s.name, arch.to_dict(), s.macs(arch), s.params(arch)))


@space_app.command("show")
def show_command(space: SpaceOpt, arch: ArchOpt) -> None:
    """Print the canonical form of an arch (nasforge or Once-for-All dict form) with its cost."""
    s = load_space(space)
    a = s.parse_arch(read_arch_argument(arch))
    typer.echo(_with_cost(s.name, a.to_dict(), s.macs(a), s.params(a)))
