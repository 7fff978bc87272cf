"""Once-for-All's forms of nasforge's conv families: subnet dicts, tensor names and predictor encodings.

OFA's subnet dict (`{ks, e, d, r}` for its MobileNets, `{d, e, w, image_size}` for its ResNets) and the names
its `OFAMobileNetV3` / `OFAProxylessNASNets` / `OFAResNets` give their tensors belong to Once-for-All, not to
the families: each family OFA has a counterpart for registers an `OFAAdapter` here, by family name, and
`nasforge.foreign.ofa` (weights), `ofa_predictor` (its accuracy predictors) and the `ofa` arch form
(`nasforge.foreign.forms`) apply it. A family without an adapter simply has no OFA form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasforge.arch import ArchConfig
from nasforge.errors import ArchError
from nasforge.registry import Registry

if TYPE_CHECKING:
    from nasforge.space import SearchSpace


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


class OFAAdapter:
    """How Once-for-All writes one family's archs and names its supernet's tensors (class methods: no state)."""

    def parse(self, space: SearchSpace, data: dict[str, Any]) -> ArchConfig | None:  # pragma: no cover
        """The canonical arch of an OFA subnet dict, or None when `data` is not one."""
        raise NotImplementedError

    def write(self, space: SearchSpace, arch: ArchConfig) -> dict[str, Any] | None:  # pragma: no cover
        """OFA's subnet dict of a canonical `arch`, or None when this space has none."""
        raise NotImplementedError

    def layout(self, space: SearchSpace) -> OFALayout:  # pragma: no cover
        raise NotImplementedError


OFA_ADAPTERS: Registry[type[OFAAdapter]] = Registry("Once-for-All adapter", error=ArchError)


def adapter(space: SearchSpace) -> OFAAdapter | None:
    """The OFA adapter of `space`'s family, or None when Once-for-All has no such network."""
    if space.family.name not in OFA_ADAPTERS:
        return None
    return OFA_ADAPTERS.get(space.family.name)()


@OFA_ADAPTERS.register("mobilenetv3", summary="OFAMobileNetV3 / OFAProxylessNASNets: {ks, e, d, r}")
class OFAMobileNet(OFAAdapter):
    def parse(self, space: SearchSpace, data: dict[str, Any]) -> ArchConfig | None:
        """OFA's `{ks, e, d, r}` (as OFA and DyNAS-T write it; or `image_size`, as OFA's encoders do); scalars
        mean "every block"; inactive slots ignored; a depth beyond a stage's blocks means all of them (OFA's
        `set_active_subnet` clamps it too: ProxylessNAS's one-block last stage takes any `d`)."""
        if not ({"ks", "d"} & set(data)):
            return None
        missing = [k for k in ("ks", "e", "d") if k not in data]
        if missing:
            raise ArchError(f"OFA arch dict is missing {missing}; expected keys ks, e, d and r")
        n_slots, n_stages = len(space.kernel_slots), len(space.stages)
        r = foreign_resolution(space, data, ArchError)
        ks, es, ds = (_per_slot(data[k], n, k) for k, n in (("ks", n_slots), ("e", n_slots), ("d", n_stages)))
        ds = [min(d, s.max_depth) if isinstance(d, (int, float)) else d for d, s in zip(ds, space.stages)]
        arch = ArchConfig.from_dict({"resolution": r, "depths": ds, "kernel_sizes": ks, "expand_ratios": es})
        return space.validate(arch)

    def write(self, space: SearchSpace, arch: ArchConfig) -> dict[str, Any] | None:
        """OFA's dict; inactive slots get the smallest choice (OFA needs a value there)."""
        if len(space.kernel_slots) != len(space.expand_slots):
            return None  # OFA's dict needs kernel and expand per block
        ks = [k if k else int(min(s.choices)) for k, s in zip(arch.kernel_sizes, space.kernel_slots)]
        es = [_number(e) if e else _number(min(s.choices)) for e, s in zip(arch.expand_ratios, space.expand_slots)]
        return {"ks": ks, "e": es, "d": list(arch.depths), "r": arch.resolution}

    def layout(self, space: SearchSpace) -> OFALayout:
        """`OFAMobileNetV3`'s names, or `OFAProxylessNASNets`' for the MobileNetV2 head (its feature mix has a BN)."""
        if space.config.head.final_expand is None:
            head: tuple[tuple[str, str], ...] = ((r"head\.feature_mix\.", "feature_mix_layer."),)
        else:
            head = (
                (r"head\.final_expand\.", "final_expand_layer."),
                (r"head\.feature_mix\.", "feature_mix_layer.conv."),
            )
        genes = [i for group in ("kernel", "expand") for i, g in enumerate(space.genes) if g.group == group]
        return OFALayout(
            rules=(
                (r"stem\.", "first_conv."),
                (r"first_block\.depthwise\.", "blocks.0.conv.depth_conv."),
                (r"first_block\.project\.", "blocks.0.conv.point_linear."),
                (r"(blocks\.\d+)\.expand_conv\.", r"\1.conv.inverted_bottleneck.conv."),
                (r"(blocks\.\d+)\.expand_bn\.", r"\1.conv.inverted_bottleneck.bn."),
                (r"(blocks\.\d+)\.depthwise\.kernel_transforms\.(\d+to\d+)", r"\1.conv.depth_conv.conv.\2_matrix"),
                (r"(blocks\.\d+)\.depthwise\.", r"\1.conv.depth_conv.conv."),
                (r"(blocks\.\d+)\.depthwise_bn\.", r"\1.conv.depth_conv.bn."),
                (r"(blocks\.\d+)\.se\.", r"\1.conv.depth_conv.se.fc."),
                (r"(blocks\.\d+)\.project_conv\.", r"\1.conv.point_linear.conv."),
                (r"(blocks\.\d+)\.project_bn\.", r"\1.conv.point_linear.bn."),
                *head,
                (r"head\.classifier\.", "classifier.linear."),
            ),
            first_block=1,
            skip_stages=0,
            dynamic=r"blocks\.[1-9]",  # the elastic blocks; stem, first block and head are static layers
            predictor_genes=tuple(genes),  # OFA's MobileNetArchEncoder: kernels of every block, then expand ratios
        )


@OFA_ADAPTERS.register("resnet", summary="OFAResNets: {d, e, w, image_size}")
class OFAResNet(OFAAdapter):
    def parse(self, space: SearchSpace, data: dict[str, Any]) -> ArchConfig | None:
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

    def write(self, space: SearchSpace, arch: ArchConfig) -> dict[str, Any] | None:
        """OFA's dict; inactive expand slots get the smallest choice (OFA needs a value there)."""
        try:
            keep = max(_relative_depths(space))
        except ArchError:
            return None
        d = [keep if arch.depths[0] else 0]
        d += [depth - min(s.depths) for s, depth in zip(space.stages[1:], arch.depths[1:])]
        e = [e if e else min(slot.choices) for e, slot in zip(arch.expand_ratios, space.expand_slots)]
        w = [choices.index(w) for w, choices in zip(arch.width_mults, space.width_choices)]
        return {"d": d, "e": e, "w": w, "image_size": arch.resolution}

    def layout(self, space: SearchSpace) -> OFALayout:
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


def foreign_resolution(space: SearchSpace, data: dict[str, Any], error: type[Exception]) -> int:
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


def _relative_depths(space: SearchSpace) -> tuple[int, ...]:
    """OFA ResNet's `depth_list`: blocks added to each stage's base depth (one list for all stages)."""
    lists = {tuple(d - min(s.depths) for d in s.depths) for s in space.stages[1:]}
    if len(lists) != 1:
        raise ArchError(f"space '{space.name}' has no OFA depth list: its stages add different block counts")
    return lists.pop()


def _as_list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ArchError(f"OFA ResNet '{key}' must be a list, got {value!r}")
    return list(value)
