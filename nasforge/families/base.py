"""What a block family is: the schema of its YAML, its genes, its static layers and its supernet.

A family owns everything that differs between, say, MobileNetV3 and ResNet spaces:

- `schema`: the frozen dataclass its space YAML becomes (`nasforge.config.load_dataclass`);
- `stages(cfg)`: the elastic stages (block kind, channels, stride, depth / kernel / expand choices);
- `genes(...)`: the encoding, as a list of `Gene`s (the default is nasforge's standard layout:
  resolution, one depth per stage, kernel slots, expand slots, width slots);
- `plan(space, arch)`: the static layers of an arch, each tagged with the (stage, position) of the
  elastic block it belongs to (None for fixed layers) — the one place with slot arithmetic;
- `supernet(space)`: the elastic network (torch is imported there, lazily);
- foreign arch forms (Once-for-All's `{ks, e, d, r}` dict) through `parse_foreign` / `foreign_forms`;
- `ofa_layout(space)`: how Once-for-All names the tensors of the space's supernet and encodes its archs for
  OFA's accuracy predictor (`OFALayout`; `nasforge.foreign.ofa` applies it), or None.

`SearchSpace` is generic over these; nothing outside `families/` branches on a family's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from nasforge.arch import ArchConfig
from nasforge.config import check, field_error
from nasforge.errors import SpaceError
from nasforge.layers import LayerSpec
from nasforge.registry import Registry

FAMILIES: Registry[Family] = Registry(
    "family", modules=("nasforge.families.mobilenetv3", "nasforge.families.resnet"), error=SpaceError,
    plural="families",
)

# Gene groups in encoding order, and the ArchConfig field each one fills.
GENE_GROUPS: tuple[str, ...] = ("resolution", "depth", "kernel", "expand", "width")
ARCH_FIELDS: dict[str, str] = {
    "resolution": "resolution", "depth": "depths", "kernel": "kernel_sizes", "expand": "expand_ratios",
    "width": "width_mults",
}


@dataclass(frozen=True)
class StageSpec:
    """One elastic stage: blocks of one kind whose depth, kernel and expansion vary."""

    name: str
    block: str
    channels: int
    stride: int
    act: str
    se: bool
    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    width_slot: int | None = None

    @property
    def max_depth(self) -> int:
        return max(self.depths)


@dataclass(frozen=True)
class Gene:
    """One position of the integer encoding: a group, the values it indexes, and (for per-block slot
    genes) the stage whose depth switches it on and its block position there."""

    group: str
    name: str
    choices: tuple[float, ...]
    stage: int | None = None
    position: int | None = None


@dataclass(frozen=True)
class PlacedLayer:
    """A static layer of an arch and the elastic block (stage, position) it realises; None for fixed layers."""

    spec: LayerSpec
    stage: int | None = None
    position: int | None = None


@dataclass(frozen=True)
class OFALayout:
    """How Once-for-All lays out a space's supernet: data only, applied by `nasforge.foreign.ofa`.

    `rules` rename nasforge state-dict keys (whose `stages.S.P.` already reads OFA's `blocks.B.`) to OFA's:
    the first regex that matches a key's start wins. Keys matching `dynamic` belong to OFA's dynamic modules,
    which nest one more `conv.` / `bn.` / `linear.`. `predictor_genes`: the genes whose one-hot blocks, in
    this order, follow the resolution block in OFA's arch encoding (`ofa.nas.accuracy_predictor`).
    """

    rules: tuple[tuple[str, str], ...]
    first_block: int  # OFA's `blocks` index of the first elastic block
    skip_stages: int  # leading nasforge stages that are not in OFA's `blocks` (ResNet's stem)
    dynamic: str
    predictor_genes: tuple[int, ...]


@dataclass(frozen=True)
class ParsedSpace:
    """What a family reads from a space YAML."""

    config: Any  # the family's typed schema instance
    stages: tuple[StageSpec, ...]
    width_choices: tuple[tuple[float, ...], ...] = ()
    width_mult_options: tuple[float, ...] = (1.0,)


class SpaceView(Protocol):
    """What a family reads of the `SpaceView` it serves (the space is generic over the family)."""

    name: str
    config: Any
    stages: tuple[StageSpec, ...]
    resolutions: tuple[int, ...]
    width_mult: float
    kernel_slots: tuple[Gene, ...]
    expand_slots: tuple[Gene, ...]
    genes: tuple[Gene, ...]
    width_choices: tuple[tuple[float, ...], ...]

    def genes_of(self, group: str) -> tuple[Gene, ...]: ...

    def validate(self, arch: ArchConfig) -> ArchConfig: ...

    def block_choices(self, arch: ArchConfig) -> list[list[Any]]: ...


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
        """nasforge's standard encoding: resolution, depths, kernel slots, expand slots, width slots.

        A slot exists for every block position of a stage whose kernel (expansion) is elastic.
        """
        stages = parsed.stages
        out = [Gene("resolution", "resolution", tuple(float(r) for r in resolutions))]
        out += [Gene("depth", f"depth[{s.name}]", tuple(float(d) for d in s.depths)) for s in stages]
        for group, attr in (("kernel", "kernel_sizes"), ("expand", "expand_ratios")):
            j = 0
            for i, s in enumerate(stages):
                choices = getattr(s, attr)
                if len(choices) > 1:
                    for p in range(s.max_depth):
                        out.append(Gene(group, f"{ARCH_FIELDS[group]}[{j}]", tuple(float(c) for c in choices), i, p))
                        j += 1
        out += [Gene("width", f"width_mults[{j}]", tuple(float(c) for c in choices))
                for j, choices in enumerate(parsed.width_choices)]
        return tuple(out)

    def plan(self, space: SpaceView, arch: ArchConfig, num_classes: int) -> list[PlacedLayer]:  # pragma: no cover
        """The static layers of a canonical `arch`, stem to classifier."""
        raise NotImplementedError

    def supernet(self, space: SpaceView) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def dropout(self, space: SpaceView) -> float:
        """Dropout before the classifier of this space's networks."""
        return 0.0

    # foreign arch forms (other projects' ways of writing a subnet)
    def parse_foreign(self, space: SpaceView, data: dict[str, Any]) -> ArchConfig | None:
        """An arch written in another project's form, or None when `data` is not such a form."""
        return None

    def foreign_forms(self, space: SpaceView, arch: ArchConfig) -> dict[str, dict[str, Any]]:
        """`arch` in every foreign form this family knows, e.g. {"ofa": {"ks": ..., ...}}."""
        return {}

    def ofa_layout(self, space: SpaceView) -> OFALayout | None:
        """How Once-for-All names this space's supernet tensors; None when OFA has no such network."""
        return None


def foreign_resolution(space: SpaceView, data: dict[str, Any], error: type[Exception]) -> int:
    """The resolution of a foreign arch dict: `image_size` (OFA's encoders), `r` (OFA's tutorial, as a
    one-element list or a number) or `resolution`; the space's largest when none is given."""
    r = data.get("image_size", data.get("r", data.get("resolution", max(space.resolutions))))
    if isinstance(r, (list, tuple)):
        if len(r) != 1:
            raise error(f"OFA arch dict: one resolution expected, got {r!r}")
        r = r[0]
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not float(r).is_integer():
        raise error(f"OFA arch dict: the resolution must be an integer, got {r!r}")
    return int(r)


__all__ = [
    "ARCH_FIELDS",
    "FAMILIES",
    "GENE_GROUPS",
    "Family",
    "OFALayout",
    "Gene",
    "ParsedSpace",
    "PlacedLayer",
    "ResolutionRange",
    "SpaceFile",
    "StageSpec",
    "distinct_sorted",
    "foreign_resolution",
]
