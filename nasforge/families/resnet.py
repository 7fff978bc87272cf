"""Once-for-All's ResNet50-D family: a three-conv stem with a skippable middle conv, elastic bottleneck stages."""

from __future__ import annotations

from typing import Any

from nasforge.arch import ArchConfig
from nasforge.layers import LayerSpec, make_divisible
from nasforge.space import FieldChecker, ParsedSpace, SearchSpace, StageSpec


class ResNetFamily:
    """Width slots: 0 = stem input conv (and the skippable middle conv), 1 = stem output conv, 2.. = stages.

    Depth 0 of the first elastic stage (`stem`) skips the stem's middle residual conv, as OFA's `d[0]`.
    """

    name = "resnet"

    def parse(self, raw: dict[str, Any], source: str) -> ParsedSpace:
        check = FieldChecker(source)
        stem = check.mapping(raw, "stem")
        defaults = check.mapping(raw, "defaults", default={})
        stages_raw = raw.get("stages")
        if not isinstance(stages_raw, list) or not stages_raw:
            raise check.fail("stages", "a non-empty list of stages", stages_raw)
        stem_depths = check.int_list(stem, "depths", "stem.", minimum=0)
        if not set(stem_depths) <= {0, 1}:
            raise check.fail("stem.depths", "a subset of [0, 1]", stem.get("depths"))
        stem_widths = check.number_list(stem, "width_mults", "stem.")
        stages = [
            StageSpec("stem", "residual_conv", check.positive_int(stem, "channels", "stem."), 1, "relu", False,
                      stem_depths, (3,), (1.0,), width_slot=0)
        ]
        widths: list[tuple[float, ...]] = [stem_widths, stem_widths]
        for i, st in enumerate(stages_raw):
            prefix = f"stages[{i}]."
            if not isinstance(st, dict):
                raise check.fail(f"stages[{i}]", "a mapping", st)
            merged = {**defaults, **st}
            stages.append(
                StageSpec(
                    name=str(merged.get("name", f"stage{i + 1}")),
                    block="bottleneck",
                    channels=check.positive_int(merged, "channels", prefix),
                    stride=check.positive_int(merged, "stride", prefix),
                    act="relu",
                    se=False,
                    depths=check.int_list(merged, "depths", prefix),
                    kernel_sizes=(3,),
                    expand_ratios=check.number_list(merged, "expand_ratios", prefix),
                    width_slot=len(widths),
                )
            )
            widths.append(check.number_list(merged, "width_mults", prefix))
        return ParsedSpace(tuple(stages), tuple(widths), {"width_mult_options": (1.0,)})

    def layers(self, space: SearchSpace, arch: ArchConfig, num_classes: int) -> list[LayerSpec]:
        stem = space.stages[0]
        size = arch.resolution
        stem_in = make_divisible(make_divisible(stem.channels * arch.width_mults[0]) // 2)
        stem_out = make_divisible(stem.channels * arch.width_mults[1])
        specs = [LayerSpec("conv", 3, stem_in, size, 3, 2)]
        size = specs[-1].output_size
        if arch.depths[0]:
            specs.append(LayerSpec("residual_conv", stem_in, stem_in, size, 3, 1, shortcut="identity"))
        specs.append(LayerSpec("conv", stem_in, stem_out, size, 3, 1))
        specs.append(LayerSpec("maxpool", stem_out, stem_out, size, 3, 2))
        size = specs[-1].output_size
        in_c = stem_out
        slot = 0
        for stage, depth in zip(space.stages[1:], arch.depths[1:]):
            width = arch.width_mults[stage.width_slot] if stage.width_slot is not None else 1.0
            out_c = make_divisible(stage.channels * width)
            for pos in range(depth):
                stride = stage.stride if pos == 0 else 1
                mid = make_divisible(round(out_c * arch.expand_ratios[slot + pos]))
                shortcut = "identity" if pos > 0 else ("conv" if stride == 1 else "avgpool_conv")
                specs.append(LayerSpec("bottleneck", in_c, out_c, size, 3, stride, mid, "relu", False, shortcut))
                size = specs[-1].output_size
                in_c = out_c
            slot += stage.max_depth
        specs.append(LayerSpec("resnet_head", in_c, num_classes, size, num_classes=num_classes))
        return specs

    def supernet(self, space: SearchSpace) -> Any:
        from nasforge.supernet.resnet import ElasticResNet

        return ElasticResNet(space)
