"""Once-for-All's MobileNetV3 family: a fixed stem and first block, elastic MBConv stages, a fixed head.

Its YAML (see `search_spaces/mobilenetv3-ofa.yaml`) names the stem, the first block, the stages
(channels, stride, activation, squeeze-excite, depth / kernel / expand choices; `defaults` fill in
what a stage leaves out), the head and the width multipliers on offer. Once-for-All's subnet dict
`{ks, e, d, r}` is this family's foreign arch form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nasforge.arch import ArchConfig
from nasforge.config import check, field_error
from nasforge.errors import ArchError
from nasforge.families.base import (
    FAMILIES,
    Family,
    ParsedSpace,
    PlacedLayer,
    SpaceFile,
    SpaceView,
    StageSpec,
    distinct_sorted,
)
from nasforge.layers import LayerSpec, make_divisible

Act = Literal["relu", "hswish"]


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
    final_expand: int = field(metadata=check(gt=0))
    feature_mix: int = field(metadata=check(gt=0))
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


@FAMILIES.register("mobilenetv3", summary="Once-for-All's MobileNetV3: elastic MBConv stages (SE, h-swish)")
class MobileNetV3Family(Family):
    name = "mobilenetv3"
    schema = MobileNetV3File

    def parse(self, cfg: MobileNetV3File) -> ParsedSpace:
        stages = tuple(
            StageSpec(s.name or f"stage{i + 1}", "mbconv", s.channels, s.stride, s.act, s.se, s.depths,
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
                mid = make_divisible(round(in_c * block.expand_ratio))
                shortcut = "identity" if stride == 1 and in_c == out_c else "none"
                spec = LayerSpec("mbconv", in_c, out_c, size, block.kernel_size, stride, mid, stage.act, stage.se,
                                 shortcut)
                out.append(PlacedLayer(spec, s, p))
                size, in_c = spec.output_size, out_c
        head = LayerSpec("mbv3_head", in_c, make_divisible(cfg.head.feature_mix * wm), size,
                         mid_channels=make_divisible(cfg.head.final_expand * wm), act=cfg.head.act,
                         num_classes=num_classes)
        out.append(PlacedLayer(head))
        return out

    def supernet(self, space: SpaceView) -> Any:
        from nasforge.supernet.mobilenetv3 import ElasticMobileNetV3

        return ElasticMobileNetV3(space)

    def dropout(self, space: SpaceView) -> float:
        return float(space.config.head.dropout)

    # ------------------------------------------------------------------ Once-for-All's subnet dict
    def parse_foreign(self, space: SpaceView, data: dict[str, Any]) -> ArchConfig | None:
        """OFA's `{ks, e, d, r}` (as OFA and DyNAS-T write it); scalars mean "every block"; inactive slots ignored."""
        if not ({"ks", "d"} & set(data)):
            return None
        missing = [k for k in ("ks", "e", "d") if k not in data]
        if missing:
            raise ArchError(f"OFA arch dict is missing {missing}; expected keys ks, e, d and r")
        n_slots, n_stages = len(space.kernel_slots), len(space.stages)
        r = data.get("r", data.get("resolution", max(space.resolutions)))
        if isinstance(r, (list, tuple)):
            if len(r) != 1:
                raise ArchError(f"OFA 'r' must be one resolution, got {r!r}")
            r = r[0]
        ks, es, ds = (_per_slot(data[k], n, k) for k, n in (("ks", n_slots), ("e", n_slots), ("d", n_stages)))
        arch = ArchConfig.from_dict({"resolution": r, "depths": ds, "kernel_sizes": ks, "expand_ratios": es})
        return space.validate(arch)

    def foreign_forms(self, space: SpaceView, arch: ArchConfig) -> dict[str, dict[str, Any]]:
        """OFA's dict; inactive slots get the smallest choice (OFA needs a value there)."""
        if len(space.kernel_slots) != len(space.expand_slots):
            return {}  # OFA's dict needs kernel and expand per block
        ks = [k if k else int(min(s.choices)) for k, s in zip(arch.kernel_sizes, space.kernel_slots)]
        es = [_number(e) if e else _number(min(s.choices)) for e, s in zip(arch.expand_ratios, space.expand_slots)]
        return {"ofa": {"ks": ks, "e": es, "d": list(arch.depths), "r": arch.resolution}}


def _per_slot(value: Any, n: int, key: str) -> list[Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value] * n  # OFA's set_active_subnet accepts one value for every block
    if not isinstance(value, (list, tuple)):
        raise ArchError(f"OFA '{key}' must be a number or a list, got {value!r}")
    if len(value) != n:
        raise ArchError(f"OFA '{key}' needs {n} entries for this space, got {len(value)}")
    return list(value)


def _number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)
