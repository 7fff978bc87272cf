"""Elastic dimensions as data: the gene groups a family declares and the genes of a space's encoding.

A `GeneGroup` is one kind of elastic choice (kernel size, expansion ratio, attention heads, ...): its name,
the `ArchConfig` field (and JSON key) that holds its values, its scope and its number type. A family declares
the groups it uses, in encoding order (`Family.gene_groups`); a space holds one `Gene` per position of the
integer encoding. Scopes:

- ``global``: one or more genes that apply to the whole network (resolution, ResNet's width slots);
- ``stage``: one gene per stage (depth);
- ``block``: one gene per block position of a stage (a *slot*), active only while the stage's depth reaches it.

Nothing here names a particular group except the two every space has (resolution and depth); the others
(`KERNEL`, `EXPAND`, `WIDTH`) are the conv families' and are defined here only because several families share
them. A new family declares its own groups next to its code (`nasforge/testing/token_family.py`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

Scope = Literal["global", "stage", "block"]


@dataclass(frozen=True)
class GeneGroup:
    """One elastic dimension: `name` in configs (`elastic: {kernel: all}`), `field` in archs and JSON."""

    name: str
    field: str
    scope: Scope
    integer: bool = False

    def convert(self, value: float) -> int | float:
        """A value of this group in its number type (so archs from JSON, encodings and code compare equal)."""
        return int(value) if self.integer else float(value)


RESOLUTION = GeneGroup("resolution", "resolution", "global", integer=True)
DEPTH = GeneGroup("depth", "depths", "stage", integer=True)
KERNEL = GeneGroup("kernel", "kernel_sizes", "block", integer=True)
EXPAND = GeneGroup("expand", "expand_ratios", "block")
WIDTH = GeneGroup("width", "width_mults", "global")

CONV_GROUPS: tuple[GeneGroup, ...] = (RESOLUTION, DEPTH, KERNEL, EXPAND, WIDTH)


@dataclass(frozen=True)
class Gene:
    """One position of the integer encoding: its group, the values it indexes, and (for block genes) the
    stage whose depth switches it on and its block position there."""

    group: str
    name: str
    choices: tuple[float, ...]
    stage: int | None = None
    position: int | None = None

    @property
    def gated(self) -> bool:
        """A block slot: inactive (0 in archs and encodings) while its stage's depth does not reach it."""
        return self.position is not None


@dataclass(frozen=True)
class BlockGenes:
    """The values one active block of an arch uses, by group name (a stage's fixed values filled in)."""

    values: tuple[tuple[str, int | float], ...]

    def __getitem__(self, group: str) -> int | float:
        for name, value in self.values:
            if name == group:
                return value
        raise KeyError(f"this block has no {group!r} value; it has {[n for n, _ in self.values]}")

    def get(self, group: str, default: int | float | None = None) -> int | float | None:
        return next((v for n, v in self.values if n == group), default)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.values)

    def as_dict(self) -> Mapping[str, int | float]:
        return dict(self.values)


__all__ = [
    "CONV_GROUPS",
    "DEPTH",
    "EXPAND",
    "KERNEL",
    "RESOLUTION",
    "WIDTH",
    "BlockGenes",
    "Gene",
    "GeneGroup",
    "Scope",
]
