"""Once-for-All's MobileNet family: a fixed stem and first block, elastic MBConv stages, a fixed head.

Its YAML (see `search_spaces/mobilenetv3-ofa.yaml`) names the stem, the first block, the stages
(channels, stride, activation, squeeze-excite, depth / kernel / expand choices; `defaults` fill in
what a stage leaves out), the head and the width multipliers on offer. The head is MobileNetV3's
(`final_expand` given: 1x1 conv-BN-act, pool, 1x1 conv-act, linear) or MobileNetV2's / ProxylessNAS's
(no `final_expand`: 1x1 conv-BN-act, pool, linear), so `search_spaces/proxylessnas-ofa.yaml` is a space
of this family too. Once-for-All's forms of it (its `{ks, e, d, r}` dict, `OFAMobileNetV3` /
`OFAProxylessNASNets` tensor names) are in `nasforge.foreign.ofa_families`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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

Act = Literal["relu", "relu6", "hswish"]


@dataclass(frozen=True)
class ConvSpec:
    channels: int = field(metadata=check(gt=0))
    stride: int = field(metadata=check(gt=0))
    act: Act = "hswish"


@dataclass(frozen=True)
class FirstBlockSpec:
    channels: int = field(metadata=check(gt=0))
    stride: int = field(metadata=check(gt=0))
    act: Act = "relu"


@dataclass(frozen=True)
class MBStageSpec:
    channels: int = field(metadata=check(gt=0))
    stride: int = field(metadata=check(gt=0))
    act: Act
    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    se: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", distinct_sorted(self.depths, "depths", minimum=1))
        ks = distinct_sorted(self.kernel_sizes, "kernel_sizes", minimum=1)
        if any(k % 2 == 0 for k in ks):
            raise field_error("kernel_sizes", "odd kernel sizes", list(self.kernel_sizes))
        object.__setattr__(self, "kernel_sizes", ks)
        object.__setattr__(self, "expand_ratios", distinct_sorted(self.expand_ratios, "expand_ratios", positive=True))


@dataclass(frozen=True)
class HeadSpec:
    """MobileNetV3's head with `final_expand`; without it MobileNetV2's / ProxylessNAS's (`mbv2_head`)."""

    feature_mix: int = field(metadata=check(gt=0))
    final_expand: int | None = field(default=None, metadata=check(gt=0))
    act: Act = "hswish"
    dropout: float = field(default=0.0, metadata=check(ge=0.0, lt=1.0))


@dataclass(frozen=True, kw_only=True)
class MobileNetV3File(SpaceFile):
    stem: ConvSpec
    first_block: FirstBlockSpec
    stages: tuple[MBStageSpec, ...] = field(metadata=check(nonempty=True))
    head: HeadSpec
    defaults: dict[str, Any] = field(default_factory=dict)
    width_mult: tuple[float, ...] = field(default=(1.0,), metadata=check(gt=0, nonempty=True))  # first = default

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.width_mult)) != len(self.width_mult):
            raise field_error("width_mult", "distinct width multipliers", list(self.width_mult))


@FAMILIES.register(
    "mobilenetv3", summary="Once-for-All's MobileNet spaces (MobileNetV3, ProxylessNAS): elastic MBConv stages"
)
class MobileNetV3Family(Family):
    name = "mobilenetv3"
    schema = MobileNetV3File
    gene_groups = CONV_GROUPS

    def parse(self, cfg: MobileNetV3File) -> ParsedSpace:
        stages = tuple(
            conv_stage(s.name or f"stage{i + 1}", "mbconv", s.channels, s.stride, s.act, s.se, s.depths,
                       s.kernel_sizes, s.expand_ratios)
            for i, s in enumerate(cfg.stages)
        )
        return ParsedSpace(cfg, stages, (), tuple(cfg.width_mult))

    def plan(self, space: SpaceView, arch: ArchConfig, num_classes: int) -> list[PlacedLayer]:
        cfg: MobileNetV3File = space.config
        wm = space.width_mult
        size = arch.resolution
        stem_c = make_divisible(cfg.stem.channels * wm)
        stem = LayerSpec("conv", 3, stem_c, size, 3, cfg.stem.stride, act=cfg.stem.act)
        size = stem.output_size
        first_c = make_divisible(cfg.first_block.channels * wm)
        shortcut = "identity" if cfg.first_block.stride == 1 and stem_c == first_c else "none"
        first = LayerSpec("mbconv", stem_c, first_c, size, 3, cfg.first_block.stride, 0, cfg.first_block.act, False,
                          shortcut)
        out = [PlacedLayer(stem), PlacedLayer(first)]
        size, in_c = first.output_size, first_c
        for s, (stage, blocks) in enumerate(zip(space.stages, space.block_choices(arch))):
            out_c = make_divisible(stage.channels * wm)
            for p, block in enumerate(blocks):
                stride = stage.stride if p == 0 else 1
                mid = make_divisible(round(in_c * block["expand"]))
                shortcut = "identity" if stride == 1 and in_c == out_c else "none"
                spec = LayerSpec("mbconv", in_c, out_c, size, int(block["kernel"]), stride, mid, stage.act, stage.se,
                                 shortcut)
                out.append(PlacedLayer(spec, s, p))
                size, in_c = spec.output_size, out_c
        feature_mix = make_divisible(cfg.head.feature_mix * wm)
        if cfg.head.final_expand is None:
            head = LayerSpec("mbv2_head", in_c, feature_mix, size, act=cfg.head.act, num_classes=num_classes)
        else:
            final_expand = make_divisible(cfg.head.final_expand * wm)
            head = LayerSpec("mbv3_head", in_c, feature_mix, size, mid_channels=final_expand, act=cfg.head.act,
                             num_classes=num_classes)
        out.append(PlacedLayer(head))
        return out

    def supernet(self, space: SpaceView) -> Any:
        from nasforge.supernet.mobilenetv3 import ElasticMobileNetV3

        return ElasticMobileNetV3(space)

    def dropout(self, space: SpaceView) -> float:
        return float(space.config.head.dropout)
