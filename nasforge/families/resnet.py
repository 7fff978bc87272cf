"""Once-for-All's ResNet50-D family: a three-conv stem with a skippable middle conv, elastic bottleneck stages.

Width slots: 0 = the stem's input conv (and its skippable middle conv), 1 = the stem's output conv,
2.. = one per stage. The first elastic "stage" is the stem's middle residual conv: depth 0 skips it,
as OFA's `d[0]`. Once-for-All's forms of it (its `{d, e, w}` dict, `OFAResNets`' tensor names) are in
`nasforge.foreign.ofa_families`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nasforge.arch import ArchConfig
from nasforge.config import check, field_error
from nasforge.families.base import (
    FAMILIES,
    Family,
    ParsedSpace,
    PlacedLayer,
    SpaceFile,
    SpaceView,
    distinct_sorted,
)
from nasforge.families.conv import conv_stage
from nasforge.genes import CONV_GROUPS
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
    gene_groups = CONV_GROUPS

    def parse(self, cfg: ResNetFile) -> ParsedSpace:
        stages = [conv_stage("stem", "residual_conv", cfg.stem.channels, 1, "relu", False, cfg.stem.depths, (3,),
                             (1.0,), width_slot=0)]
        widths: list[tuple[float, ...]] = [cfg.stem.width_mults, cfg.stem.width_mults]
        for i, s in enumerate(cfg.stages):
            stages.append(conv_stage(s.name or f"stage{i + 1}", "bottleneck", s.channels, s.stride, "relu", False,
                                     s.depths, (3,), s.expand_ratios, width_slot=len(widths)))
            widths.append(s.width_mults)
        return ParsedSpace(cfg, tuple(stages), tuple(("width", w) for w in widths), (1.0,))

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
                mid = make_divisible(round(out_c * block["expand"]))
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
