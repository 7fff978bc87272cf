"""Once-for-All's MobileNetV3 family: a fixed stem and first block, elastic MBConv stages, a fixed head."""

from __future__ import annotations

from typing import Any

from nasforge.arch import ArchConfig
from nasforge.layers import LayerSpec, make_divisible
from nasforge.space import FieldChecker, ParsedSpace, SearchSpace, StageSpec

ACTS = ("relu", "hswish")


class MobileNetV3Family:
    name = "mobilenetv3"

    def parse(self, raw: dict[str, Any], source: str) -> ParsedSpace:
        check = FieldChecker(source)
        stem = check.mapping(raw, "stem")
        first = check.mapping(raw, "first_block")
        head = check.mapping(raw, "head")
        defaults = check.mapping(raw, "defaults", default={})
        stages_raw = raw.get("stages")
        if not isinstance(stages_raw, list) or not stages_raw:
            raise check.fail("stages", "a non-empty list of stages", stages_raw)
        options = raw.get("width_mult", [1.0])
        if not isinstance(options, list) or not options or any(not isinstance(v, (int, float)) for v in options):
            raise check.fail("width_mult", "a non-empty list of width multipliers", options)
        stages = []
        for i, st in enumerate(stages_raw):
            prefix = f"stages[{i}]."
            if not isinstance(st, dict):
                raise check.fail(f"stages[{i}]", "a mapping", st)
            merged = {**defaults, **st}
            stages.append(
                StageSpec(
                    name=str(merged.get("name", f"stage{i + 1}")),
                    block="mbconv",
                    channels=check.positive_int(merged, "channels", prefix),
                    stride=check.positive_int(merged, "stride", prefix),
                    act=check.choice(merged, "act", ACTS, prefix),
                    se=check.boolean(merged, "se", prefix),
                    depths=check.int_list(merged, "depths", prefix),
                    kernel_sizes=_odd(check, merged, "kernel_sizes", prefix),
                    expand_ratios=check.number_list(merged, "expand_ratios", prefix),
                )
            )
        build = {
            "stem_channels": check.positive_int(stem, "channels", "stem."),
            "stem_stride": check.positive_int(stem, "stride", "stem."),
            "stem_act": check.choice(stem, "act", ACTS, "stem.", default="hswish"),
            "first_channels": check.positive_int(first, "channels", "first_block."),
            "first_stride": check.positive_int(first, "stride", "first_block."),
            "first_act": check.choice(first, "act", ACTS, "first_block.", default="relu"),
            "final_expand": check.positive_int(head, "final_expand", "head."),
            "feature_mix": check.positive_int(head, "feature_mix", "head."),
            "head_act": check.choice(head, "act", ACTS, "head.", default="hswish"),
            "dropout": float(head.get("dropout", 0.0)),
            "width_mult_options": tuple(float(v) for v in options),
        }
        return ParsedSpace(tuple(stages), (), build)

    def layers(self, space: SearchSpace, arch: ArchConfig, num_classes: int) -> list[LayerSpec]:
        b, wm = space.build, space.width_mult
        size = arch.resolution
        stem_c = make_divisible(b["stem_channels"] * wm)
        specs = [LayerSpec("conv", 3, stem_c, size, 3, b["stem_stride"], act=b["stem_act"])]
        size = specs[-1].output_size
        first_c = make_divisible(b["first_channels"] * wm)
        shortcut = "identity" if b["first_stride"] == 1 and stem_c == first_c else "none"
        specs.append(LayerSpec("mbconv", stem_c, first_c, size, 3, b["first_stride"], 0, b["first_act"], False, shortcut))
        size = specs[-1].output_size
        in_c = first_c
        k_slot = e_slot = 0  # slots exist only for stages whose kernel / expansion is elastic
        for stage, depth in zip(space.stages, arch.depths):
            out_c = make_divisible(stage.channels * wm)
            k_elastic, e_elastic = len(stage.kernel_sizes) > 1, len(stage.expand_ratios) > 1
            for pos in range(depth):
                stride = stage.stride if pos == 0 else 1
                k = arch.kernel_sizes[k_slot + pos] if k_elastic else stage.kernel_sizes[0]
                e = arch.expand_ratios[e_slot + pos] if e_elastic else stage.expand_ratios[0]
                mid = make_divisible(round(in_c * e))
                shortcut = "identity" if stride == 1 and in_c == out_c else "none"
                specs.append(LayerSpec("mbconv", in_c, out_c, size, k, stride, mid, stage.act, stage.se, shortcut))
                size = specs[-1].output_size
                in_c = out_c
            k_slot += stage.max_depth if k_elastic else 0
            e_slot += stage.max_depth if e_elastic else 0
        specs.append(
            LayerSpec(
                "mbv3_head",
                in_c,
                make_divisible(b["feature_mix"] * wm),
                size,
                mid_channels=make_divisible(b["final_expand"] * wm),
                act=b["head_act"],
                num_classes=num_classes,
            )
        )
        return specs

    def supernet(self, space: SearchSpace) -> Any:
        from nasforge.supernet.mobilenetv3 import ElasticMobileNetV3

        return ElasticMobileNetV3(space)


def _odd(check: FieldChecker, raw: dict[str, Any], key: str, prefix: str) -> tuple[int, ...]:
    values = check.int_list(raw, key, prefix)
    if any(v % 2 == 0 for v in values):
        raise check.fail(prefix + key, "odd kernel sizes", raw.get(key))
    return values
