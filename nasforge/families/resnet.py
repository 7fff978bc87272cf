"""Once-for-All's ResNet50-D family: a three-conv stem with a skippable middle conv, elastic bottleneck stages.

Width slots: 0 = the stem's input conv (and its skippable middle conv), 1 = the stem's output conv,
2.. = one per stage. The first elastic "stage" is the stem's middle residual conv: depth 0 skips it,
as OFA's `d[0]`. Once-for-All's `{d, e, w}` subnet dict is this family's foreign arch form, and
`OFAResNets`' tensor names its `ofa_layout`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nasforge.arch import ArchConfig
from nasforge.config import check, field_error
from nasforge.errors import ArchError
from nasforge.families.base import (
    FAMILIES,
    Family,
    OFALayout,
    ParsedSpace,
    PlacedLayer,
    SpaceFile,
    SpaceView,
    StageSpec,
    distinct_sorted,
    foreign_resolution,
)
from nasforge.layers import LayerSpec, make_divisible


@dataclass(frozen=True)
class StemSpec:
    channels: int = field(metadata=check(gt=0))
    depths: tuple[int, ...]
    width_mults: tuple[float, ...]

    def __post_init__(self) -> None:
        depths = distinct_sorted(self.depths, "depths", minimum=0)
        if not set(depths) <= {0, 1}:
            raise field_error("depths", "a subset of [0, 1]", list(self.depths))
        object.__setattr__(self, "depths", depths)
        object.__setattr__(self, "width_mults", distinct_sorted(self.width_mults, "width_mults", positive=True))


@dataclass(frozen=True)
class BottleneckStageSpec:
    channels: int = field(metadata=check(gt=0))
    stride: int = field(metadata=check(gt=0))
    depths: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    width_mults: tuple[float, ...]
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", distinct_sorted(self.depths, "depths", minimum=1))
        object.__setattr__(self, "expand_ratios", distinct_sorted(self.expand_ratios, "expand_ratios", positive=True))
        object.__setattr__(self, "width_mults", distinct_sorted(self.width_mults, "width_mults", positive=True))


@dataclass(frozen=True, kw_only=True)
class ResNetFile(SpaceFile):
    stem: StemSpec
    stages: tuple[BottleneckStageSpec, ...] = field(metadata=check(nonempty=True))
    defaults: dict[str, Any] = field(default_factory=dict)
    dropout: float = field(default=0.0, metadata=check(ge=0.0, lt=1.0))


@FAMILIES.register("resnet", summary="Once-for-All's ResNet50-D: elastic bottleneck stages and widths")
class ResNetFamily(Family):
    name = "resnet"
    schema = ResNetFile

    def parse(self, cfg: ResNetFile) -> ParsedSpace:
        stages = [StageSpec("stem", "residual_conv", cfg.stem.channels, 1, "relu", False, cfg.stem.depths, (3,), (1.0,),
                            width_slot=0)]
        widths: list[tuple[float, ...]] = [cfg.stem.width_mults, cfg.stem.width_mults]
        for i, s in enumerate(cfg.stages):
            stages.append(StageSpec(s.name or f"stage{i + 1}", "bottleneck", s.channels, s.stride, "relu", False,
                                    s.depths, (3,), s.expand_ratios, width_slot=len(widths)))
            widths.append(s.width_mults)
        return ParsedSpace(cfg, tuple(stages), tuple(widths), (1.0,))

    def plan(self, space: SpaceView, arch: ArchConfig, num_classes: int) -> list[PlacedLayer]:
        stem = space.stages[0]
        size = arch.resolution
        stem_in = make_divisible(make_divisible(stem.channels * arch.width_mults[0]) // 2)
        stem_out = make_divisible(stem.channels * arch.width_mults[1])
        first = LayerSpec("conv", 3, stem_in, size, 3, 2)
        out = [PlacedLayer(first)]
        size = first.output_size
        if arch.depths[0]:
            out.append(PlacedLayer(LayerSpec("residual_conv", stem_in, stem_in, size, 3, 1, shortcut="identity"), 0, 0))
        out.append(PlacedLayer(LayerSpec("conv", stem_in, stem_out, size, 3, 1)))
        pool = LayerSpec("maxpool", stem_out, stem_out, size, 3, 2)
        out.append(PlacedLayer(pool))
        size, in_c = pool.output_size, stem_out
        blocks = space.block_choices(arch)
        for s in range(1, len(space.stages)):
            stage = space.stages[s]
            width = arch.width_mults[stage.width_slot] if stage.width_slot is not None else 1.0
            out_c = make_divisible(stage.channels * width)
            for p, block in enumerate(blocks[s]):
                stride = stage.stride if p == 0 else 1
                mid = make_divisible(round(out_c * block.expand_ratio))
                shortcut = "identity" if p > 0 else ("conv" if stride == 1 else "avgpool_conv")
                spec = LayerSpec("bottleneck", in_c, out_c, size, 3, stride, mid, "relu", False, shortcut)
                out.append(PlacedLayer(spec, s, p))
                size, in_c = spec.output_size, out_c
        out.append(PlacedLayer(LayerSpec("resnet_head", in_c, num_classes, size, num_classes=num_classes)))
        return out

    def supernet(self, space: SpaceView) -> Any:
        from nasforge.supernet.resnet import ElasticResNet

        return ElasticResNet(space)

    def dropout(self, space: SpaceView) -> float:
        return float(space.config.dropout)

    # ------------------------------------------------------------------ Once-for-All's subnet dict and names
    def parse_foreign(self, space: SpaceView, data: dict[str, Any]) -> ArchConfig | None:
        """OFA ResNet's `{d, e, w, image_size}`: `d` the stem (0 skips its middle conv) then the blocks each stage
        adds to its base depth, `e` per block, `w` indices into each slot's width multipliers."""
        if not ({"d", "e", "w"} & set(data)):
            return None
        missing = [k for k in ("d", "e", "w") if k not in data]
        if missing:
            raise ArchError(f"OFA ResNet arch dict is missing {missing}; expected keys d, e, w and image_size")
        d, e, w = (_as_list(data[k], k) for k in ("d", "e", "w"))
        sizes = {"d": len(space.stages), "e": len(space.expand_slots), "w": len(space.width_choices)}
        for name, values in (("d", d), ("e", e), ("w", w)):
            if len(values) != sizes[name]:
                raise ArchError(
                    f"OFA ResNet '{name}' needs {sizes[name]} entries for space '{space.name}', got {len(values)}"
                )
        keep = max(_relative_depths(space))
        if d[0] not in (0, keep):
            raise ArchError(
                f"OFA ResNet d[0] = {d[0]} is ambiguous (OFA's network keeps the stem's middle conv only "
                f"for {keep}, its accuracy predictor for any d[0] > 0); use 0 or {keep}"
            )
        depths = [1 if d[0] else 0] + [min(s.depths) + int(di) for s, di in zip(space.stages[1:], d[1:])]
        if any(
            isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(c) for i, c in zip(w, space.width_choices)
        ):
            raise ArchError(f"OFA ResNet 'w' holds indices into the width multipliers, got {w!r}")
        widths = tuple(choices[i] for i, choices in zip(w, space.width_choices))
        resolution = foreign_resolution(space, data, ArchError)
        return space.validate(ArchConfig(resolution, tuple(depths), (), tuple(e), widths))

    def foreign_forms(self, space: SpaceView, arch: ArchConfig) -> dict[str, dict[str, Any]]:
        """OFA's dict; inactive expand slots get the smallest choice (OFA needs a value there)."""
        try:
            keep = max(_relative_depths(space))
        except ArchError:
            return {}
        d = [keep if arch.depths[0] else 0]
        d += [depth - min(s.depths) for s, depth in zip(space.stages[1:], arch.depths[1:])]
        e = [e if e else min(slot.choices) for e, slot in zip(arch.expand_ratios, space.expand_slots)]
        w = [choices.index(w) for w, choices in zip(arch.width_mults, space.width_choices)]
        return {"ofa": {"d": d, "e": e, "w": w, "image_size": arch.resolution}}

    def ofa_layout(self, space: SpaceView) -> OFALayout:
        """`OFAResNets`' names: the stem's three convs, then `blocks` (the same names), every module dynamic."""
        groups = [g.group for g in space.genes]
        genes = [groups.index("depth")]  # the stem's middle conv: skipped or kept
        genes += [i for group in ("width", "expand") for i, g in enumerate(groups) if g == group]
        return OFALayout(
            rules=(
                (r"stem_conv\.", "input_stem.0."),
                (r"stem_residual\.", "input_stem.1.conv."),
                (r"stem_out\.", "input_stem.2."),
                (r"(blocks\.\d+)\.", r"\1."),  # conv1, conv2, conv3, downsample: the same names
                (r"classifier\.", "classifier.linear."),
            ),
            first_block=0,
            skip_stages=1,
            dynamic=r"",  # every module of OFAResNets is dynamic
            predictor_genes=tuple(genes),  # OFA's ResNetArchEncoder: stem kept, width indices, expand ratios
        )


def _relative_depths(space: SpaceView) -> tuple[int, ...]:
    """OFA ResNet's `depth_list`: blocks added to each stage's base depth (one list for all stages)."""
    lists = {tuple(d - min(s.depths) for d in s.depths) for s in space.stages[1:]}
    if len(lists) != 1:
        raise ArchError(f"space '{space.name}' has no OFA depth list: its stages add different block counts")
    return lists.pop()


def _as_list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ArchError(f"OFA ResNet '{key}' must be a list, got {value!r}")
    return list(value)
