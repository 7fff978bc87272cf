"""What a block family is: the schema of its YAML, its genes, its static layers and its supernet.

A family owns everything that differs between, say, MobileNetV3 and ResNet spaces:

- `schema`: the frozen dataclass its space YAML becomes (`nasforge.config.load_dataclass`);
- `stages(cfg)`: the elastic stages (block kind, channels, stride, depth / kernel / expand choices);
- `genes(...)`: the encoding, as a list of `Gene`s (the default is nasforge's standard layout:
  resolution, one depth per stage, kernel slots, expand slots, width slots);
- `plan(space, arch)`: the static layers of an arch, each tagged with the (stage, position) of the
  elastic block it belongs to (None for fixed layers) — the one place with slot arithmetic;
- `supernet(space)`: the elastic network (torch is imported there, lazily);
- `probe_archs(space)`: archs whose layers hold every distinct block (latency tables).

Other projects' forms of a family's archs and tensors (Once-for-All's subnet dicts and names) are not the
family's business: they live in `nasforge.foreign`, registered per family.

`SearchSpace` is generic over these; nothing outside `families/` branches on a family's name.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from nasforge.arch import ArchConfig
from nasforge.config import check, field_error
from nasforge.errors import SpaceError
from nasforge.genes import DEPTH, RESOLUTION, BlockGenes, Gene, GeneGroup
from nasforge.layers import LayerSpec
from nasforge.registry import Registry

FAMILIES: Registry[Family] = Registry(
    "family", modules=("nasforge.families.mobilenetv3", "nasforge.families.resnet", "nasforge.families.vit"),
    error=SpaceError, plural="families",
)

@dataclass(frozen=True)
class StageSpec:
    """One elastic stage: `depths` blocks of one kind, each block with the values `block_choices` offers per
    block gene group (a group with one choice is fixed for the stage; with more, every position is a slot).

    Families add what their blocks need (channels, stride, ...) in a subclass (`nasforge.families.conv`).
    """

    name: str
    depths: tuple[int, ...]
    block_choices: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def choices(self, group: str) -> tuple[float, ...]:
        """The values a block of this stage may take in `group` (() when the stage has no such group)."""
        return next((c for g, c in self.block_choices if g == group), ())

    @property
    def max_depth(self) -> int:
        return max(self.depths)


@dataclass(frozen=True)
class PlacedLayer:
    """A static layer of an arch and the elastic block (stage, position) it realises; None for fixed layers."""

    spec: LayerSpec
    stage: int | None = None
    position: int | None = None


@dataclass(frozen=True)
class ParsedSpace:
    """What a family reads from a space YAML: its stages and its global genes, as (group, choices) in order."""

    config: Any  # the family's typed schema instance
    stages: tuple[StageSpec, ...]
    global_choices: tuple[tuple[str, tuple[float, ...]], ...] = ()
    width_mult_options: tuple[float, ...] = (1.0,)


class SpaceView(Protocol):
    """What a family reads of the `SpaceView` it serves (the space is generic over the family)."""

    name: str
    config: Any
    stages: tuple[StageSpec, ...]
    resolutions: tuple[int, ...]
    width_mult: float
    genes: tuple[Gene, ...]
    groups: tuple[GeneGroup, ...]

    @property
    def kernel_slots(self) -> tuple[Gene, ...]: ...

    @property
    def expand_slots(self) -> tuple[Gene, ...]: ...

    @property
    def width_choices(self) -> tuple[tuple[float, ...], ...]: ...

    def genes_of(self, group: str) -> tuple[Gene, ...]: ...

    def validate(self, arch: ArchConfig) -> ArchConfig: ...

    def block_choices(self, arch: ArchConfig) -> list[list[BlockGenes]]: ...

    def decode(self, genes: Sequence[int]) -> ArchConfig: ...


# ---------------------------------------------------------------------------- YAML schema pieces
@dataclass(frozen=True)
class ResolutionRange:
    min: int = field(metadata=check(ge=8))
    max: int = field(metadata=check(ge=8))
    step: int = field(default=1, metadata=check(gt=0))

    def __post_init__(self) -> None:
        if self.max < self.min:
            raise field_error("max", f"a value >= min ({self.min})", self.max)

    def values(self) -> tuple[int, ...]:
        return tuple(range(self.min, self.max + 1, self.step))


@dataclass(frozen=True, kw_only=True)
class SpaceFile:
    """The fields every space YAML has; a family's schema adds its own."""

    name: str
    family: str
    resolutions: tuple[int, ...] | ResolutionRange = field(metadata=check(ge=8))
    num_classes: int = field(default=1000, metadata=check(gt=0))
    description: str = ""
    bn_eps: float = field(default=1e-5, metadata=check(gt=0, lt=1))  # every BN of the supernet and its subnets

    def __post_init__(self) -> None:
        if not self.name:
            raise field_error("name", "a non-empty string", self.name)
        if isinstance(self.resolutions, tuple):
            object.__setattr__(self, "resolutions", distinct_sorted(self.resolutions, "resolutions", minimum=8))

    @property
    def resolution_list(self) -> tuple[int, ...]:
        r = self.resolutions
        return r.values() if isinstance(r, ResolutionRange) else r


def distinct_sorted(values: tuple[Any, ...], path: str, *, minimum: float | None = None,
                    positive: bool = False) -> tuple[Any, ...]:
    """A non-empty set of choices, sorted; one line naming the field otherwise."""
    if not values:
        raise field_error(path, "a non-empty list", list(values))
    if minimum is not None and any(v < minimum for v in values):
        raise field_error(path, f"a non-empty list of integers >= {minimum}", list(values))
    if positive and any(v <= 0 for v in values):
        raise field_error(path, "a non-empty list of positive numbers", list(values))
    if len(set(values)) != len(values):
        raise field_error(path, "distinct values", list(values))
    return tuple(sorted(values))


# ---------------------------------------------------------------------------- the family base
class Family:
    """Base of every block family; subclasses register with `@FAMILIES.register(name)`."""

    name: ClassVar[str] = ""
    schema: ClassVar[type[SpaceFile]] = SpaceFile
    gene_groups: ClassVar[tuple[GeneGroup, ...]] = (RESOLUTION, DEPTH)  # encoding order; see `nasforge.genes`
    # A small space of this family, as its YAML would hold it: the conformance suites run on it (beside every
    # shipped space), so a family that ships no space is still tested whole.
    example_space: ClassVar[dict[str, Any] | None] = None

    def prepare_yaml(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The YAML mapping before typing: stage entries inherit `defaults` (so errors still name
        `stages[i].field`)."""
        defaults = raw.get("defaults", {})
        stages = raw.get("stages")
        if isinstance(defaults, dict) and isinstance(stages, list):
            raw = {**raw, "stages": [{**defaults, **s} if isinstance(s, dict) else s for s in stages]}
        return raw

    def parse(self, cfg: Any) -> ParsedSpace:  # pragma: no cover - abstract
        """The stages (and width slots) of a validated schema instance."""
        raise NotImplementedError

    def genes(self, parsed: ParsedSpace, resolutions: tuple[int, ...]) -> tuple[Gene, ...]:
        """The encoding, group by group in `gene_groups` order: resolution, one depth per stage, then for each
        block group a slot for every block position of every stage that offers more than one choice, and
        for each global group one gene per entry of `parsed.global_choices`.

        A family whose dimensions do not fit this pattern (a per-stage gene besides depth) overrides it.
        """
        stages = parsed.stages
        out = [Gene("resolution", "resolution", tuple(float(r) for r in resolutions))]
        out += [Gene("depth", f"depth[{s.name}]", tuple(float(d) for d in s.depths), i) for i, s in enumerate(stages)]
        for group in self.gene_groups[2:]:
            j = 0
            if group.scope == "block":
                for i, s in enumerate(stages):
                    choices = s.choices(group.name)
                    if len(choices) > 1:
                        for p in range(s.max_depth):
                            out.append(Gene(group.name, f"{group.field}[{j}]", tuple(map(float, choices)), i, p))
                            j += 1
            else:
                for name, choices in parsed.global_choices:
                    if name == group.name:
                        out.append(Gene(group.name, f"{group.field}[{j}]", tuple(map(float, choices))))
                        j += 1
        return tuple(out)

    def plan(self, space: SpaceView, arch: ArchConfig, num_classes: int) -> list[PlacedLayer]:  # pragma: no cover
        """The static layers of a canonical `arch`, stem to classifier."""
        raise NotImplementedError

    def probe_archs(self, space: SpaceView) -> Iterator[ArchConfig]:
        """Archs whose layers together hold every distinct block of `space` (`nasforge.latency.enumerate`).

        Every stage at its largest depth; every combination of the genes that are not block slots (resolution,
        width, any global or per-stage gene); and per block group, choice index i everywhere at once for each
        i, combined across groups. Exact when a block depends only on those, its stage, position and own slots.
        """
        genes = space.genes
        context = [g for g, gene in enumerate(genes) if not gene.gated and gene.group != "depth"]
        block_groups = [g.name for g in space.groups if g.scope == "block"]
        counts = [max((len(gene.choices) for gene in space.genes_of(n)), default=1) for n in block_groups]
        base = [len(gene.choices) - 1 for gene in genes]  # depth genes (and the rest until set) at their largest
        for values in itertools.product(*[range(len(genes[g].choices)) for g in context]):
            for picks in itertools.product(*[range(n) for n in counts]):
                vector = list(base)
                for g, v in zip(context, values):
                    vector[g] = v
                for g, gene in enumerate(genes):
                    if gene.gated:
                        vector[g] = min(picks[block_groups.index(gene.group)], len(gene.choices) - 1)
                yield space.decode(vector)

    def supernet(self, space: SpaceView) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def dropout(self, space: SpaceView) -> float:
        """Dropout before the classifier of this space's networks."""
        return 0.0

__all__ = [
    "FAMILIES",
    "Family",
    "Gene",
    "ParsedSpace",
    "PlacedLayer",
    "ResolutionRange",
    "SpaceFile",
    "StageSpec",
    "distinct_sorted",
]
