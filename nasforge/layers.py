"""Static layer descriptions: what one block of an extracted subnet is, and what it costs.

A subnet is a list of `LayerSpec`. The same list drives three things, so they can never
disagree: the analytic cost model (MACs, parameters), the static PyTorch modules of an
extracted subnet (`BlockKind.build`), and the keys of latency lookup tables (`LayerSpec.key`).

Each `kind` is a `BlockKind` in the `BLOCKS` registry: its cost formulas and its static module
live together, so a new block kind is one decorated class (and `nasforge.testing.conformance`
checks its formulas against the module it builds). This module imports no torch; `build`
imports it when called.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from nasforge.errors import SpaceError
from nasforge.registry import Registry

if TYPE_CHECKING:
    from torch import nn

SHORTCUTS = ("none", "identity", "conv", "avgpool_conv")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of `divisor` without dropping more than 10% (as in MobileNet/OFA)."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def se_channels(channels: int) -> int:
    """Squeeze-and-excite bottleneck width (reduction 4, rounded to 8), as in OFA."""
    return make_divisible(channels // 4, 8)


def conv_out_size(size: int, stride: int) -> int:
    """Output side of a 'same'-padded conv/pool with odd kernel: ceil(size / stride)."""
    return -(-size // stride)


AttrValue = int | float | str | bool


@dataclass(frozen=True)
class LayerSpec:
    """One block of a static network, with the shape of its input.

    kind: a registered `BlockKind` (conv, residual_conv, maxpool, mbconv, bottleneck, mbv3_head,
          mbv2_head, resnet_head, ...; see `BLOCKS`), which owns the block's input and output shapes, costs,
          module and table key.
    The named fields are what image blocks need (channels, a square `input_size`, kernel, ...; mid_channels:
    expansion width, 0 = no expansion conv for mbconv, the final expand for mbv3_head); a kind that needs
    something else (a token count, attention heads) keeps it in `attrs`, read with `attr(name)`.
    """

    kind: str
    in_channels: int = 0
    out_channels: int = 0
    input_size: int = 0
    kernel_size: int = 1
    stride: int = 1
    mid_channels: int = 0
    act: str = "relu"
    se: bool = False
    shortcut: str = "none"
    num_classes: int = 0
    attrs: tuple[tuple[str, AttrValue], ...] = ()

    def attr(self, name: str, default: AttrValue | None = None) -> AttrValue | None:
        return next((v for n, v in self.attrs if n == name), default)

    @property
    def block(self) -> type[BlockKind]:
        return BLOCKS.get(self.kind)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input example (no batch dimension): (C, H, W) for images, (tokens, dim), ..."""
        return self.block.input_shape(self)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.block.output_shape(self)

    @property
    def output_size(self) -> int:
        return self.block.output_size(self)

    @property
    def key(self) -> str:
        """Compact key naming this block and its input shape (a latency-table key)."""
        return self.block.key(self)


BLOCKS: Registry[type[BlockKind]] = Registry("block kind", error=SpaceError)


class BlockKind:
    """Cost formulas and the static module of one kind of block (class methods only: no state)."""

    name: ClassVar[str] = ""

    @classmethod
    def input_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        """One input example's shape (no batch): an image block's (C, H, W)."""
        return (spec.in_channels, spec.input_size, spec.input_size)

    @classmethod
    def output_size(cls, spec: LayerSpec) -> int:
        return conv_out_size(spec.input_size, spec.stride)

    @classmethod
    def output_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        size = cls.output_size(spec)
        return (spec.out_channels, size, size)

    @classmethod
    def input_dtype(cls, spec: LayerSpec) -> str:
        """The input's element type, as torch names it (token ids are "int64")."""
        return "float32"

    @classmethod
    def key(cls, spec: LayerSpec) -> str:
        """The latency-table key: kind, then each attribute that differs from its default, then `attrs`."""
        parts = [spec.kind, f"i{spec.in_channels}", f"o{spec.out_channels}", f"hw{spec.input_size}"]
        if spec.kernel_size != 1:
            parts.append(f"k{spec.kernel_size}")
        if spec.stride != 1:
            parts.append(f"s{spec.stride}")
        if spec.mid_channels:
            parts.append(f"m{spec.mid_channels}")
        if spec.act != "relu":
            parts.append(spec.act)
        if spec.se:
            parts.append("se")
        if spec.shortcut != "none":
            parts.append(f"sc-{spec.shortcut}")
        if spec.num_classes:
            parts.append(f"n{spec.num_classes}")
        parts += [f"{name}{_attr_text(value)}" for name, value in spec.attrs]
        return "_".join(parts)

    @classmethod
    def activation_values(cls, spec: LayerSpec) -> int:
        """Values the block reads and writes besides its weights (roofline estimates): input, output, inner.

        An image block counts its input and its `out_channels` x output side^2 (a head: its pooled features).
        """
        s_in, s_out = spec.input_size, cls.output_size(spec)
        io = spec.in_channels * s_in * s_in + spec.out_channels * s_out * s_out
        return io + cls.inner_activations(spec)

    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        """Multiply-accumulates of convolutions and linear layers (what torch's FlopCounterMode counts, halved)."""
        raise NotImplementedError

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        """Trainable parameters (conv/linear weights and biases, BN affine), as `numel` counts them."""
        raise NotImplementedError

    @classmethod
    def inner_activations(cls, spec: LayerSpec) -> int:
        """Values written and read inside the block besides its input and output (roofline estimates)."""
        return 0

    module: ClassVar[str] = ""  # "package.module:Class" of its static nn.Module, imported when first built

    @classmethod
    def build(cls, spec: LayerSpec, dropout: float = 0.0) -> nn.Module:
        """A freshly initialised static module (plain Conv/BN/Linear: exports to ONNX as is).

        The module class is named by string (so this file needs no torch) and has `from_spec(spec, dropout)`.
        """
        module_name, _, attr = cls.module.partition(":")
        return getattr(importlib.import_module(module_name), attr).from_spec(spec, dropout)  # type: ignore[no-any-return]


def _conv_macs(cin: int, cout: int, k: int, out_size: int, groups: int = 1) -> int:
    return out_size * out_size * cout * (cin // groups) * k * k


@BLOCKS.register("conv", summary="conv-BN-act")
class Conv(BlockKind):
    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        return _conv_macs(spec.in_channels, spec.out_channels, spec.kernel_size, spec.output_size)

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        return spec.in_channels * spec.out_channels * spec.kernel_size**2 + 2 * spec.out_channels

    module = "nasforge.supernet.static:ConvBNAct"


@BLOCKS.register("residual_conv", summary="conv-BN-act plus an identity shortcut (ResNet's skippable stem conv)")
class ResidualConv(Conv):
    module = "nasforge.supernet.static:ResidualConv"


@BLOCKS.register("maxpool", summary="max-pool, 'same' padding")
class MaxPool(BlockKind):
    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        return 0

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        return 0

    module = "nasforge.supernet.static:MaxPool"


@BLOCKS.register("mbconv", summary="inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project")
class MBConv(BlockKind):
    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        mid = spec.mid_channels or spec.in_channels
        s_in, s_out = spec.input_size, spec.output_size
        macs = _conv_macs(spec.in_channels, mid, 1, s_in) if spec.mid_channels else 0
        macs += _conv_macs(mid, mid, spec.kernel_size, s_out, groups=mid)
        if spec.se:
            macs += 2 * mid * se_channels(mid)
        return macs + _conv_macs(mid, spec.out_channels, 1, s_out)

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        cin, cout, k = spec.in_channels, spec.out_channels, spec.kernel_size
        mid = spec.mid_channels or cin
        n = cin * mid + 2 * mid if spec.mid_channels else 0
        n += mid * k * k + 2 * mid
        if spec.se:
            r = se_channels(mid)
            n += (mid * r + r) + (r * mid + mid)
        return n + mid * cout + 2 * cout

    @classmethod
    def inner_activations(cls, spec: LayerSpec) -> int:
        return 2 * spec.mid_channels * (spec.input_size**2 + spec.output_size**2) if spec.mid_channels else 0

    module = "nasforge.supernet.static:MBConv"


@BLOCKS.register(
    "bottleneck", summary="ResNet-D bottleneck: 1x1 -> 3x3 -> 1x1, identity / conv / avgpool+conv shortcut"
)
class Bottleneck(BlockKind):
    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        mid, s_in, s_out = spec.mid_channels, spec.input_size, spec.output_size
        macs = _conv_macs(spec.in_channels, mid, 1, s_in)
        macs += _conv_macs(mid, mid, spec.kernel_size, s_out)
        macs += _conv_macs(mid, spec.out_channels, 1, s_out)
        if spec.shortcut in ("conv", "avgpool_conv"):
            macs += _conv_macs(spec.in_channels, spec.out_channels, 1, s_out)
        return macs

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        cin, cout, k, mid = spec.in_channels, spec.out_channels, spec.kernel_size, spec.mid_channels
        n = cin * mid + 2 * mid + mid * mid * k * k + 2 * mid + mid * cout + 2 * cout
        if spec.shortcut in ("conv", "avgpool_conv"):
            n += cin * cout + 2 * cout
        return n

    @classmethod
    def inner_activations(cls, spec: LayerSpec) -> int:
        return 2 * spec.mid_channels * (spec.input_size**2 + spec.output_size**2)

    module = "nasforge.supernet.static:Bottleneck"


@BLOCKS.register("mbv3_head", summary="MobileNetV3 head: 1x1 conv-BN-act, pool, 1x1 conv-act, linear")
class MobileNetV3Head(BlockKind):
    @classmethod
    def output_size(cls, spec: LayerSpec) -> int:
        return 1

    @classmethod
    def output_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        return (spec.num_classes,)

    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        macs = _conv_macs(spec.in_channels, spec.mid_channels, 1, spec.input_size)
        return macs + spec.mid_channels * spec.out_channels + spec.out_channels * spec.num_classes

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        n = spec.in_channels * spec.mid_channels + 2 * spec.mid_channels + spec.mid_channels * spec.out_channels
        return n + spec.out_channels * spec.num_classes + spec.num_classes

    module = "nasforge.supernet.static:MobileNetV3Head"


@BLOCKS.register("mbv2_head", summary="MobileNetV2 / ProxylessNAS head: 1x1 conv-BN-act, global pool, linear")
class MobileNetV2Head(BlockKind):
    @classmethod
    def output_size(cls, spec: LayerSpec) -> int:
        return 1

    @classmethod
    def output_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        return (spec.num_classes,)

    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        macs = _conv_macs(spec.in_channels, spec.out_channels, 1, spec.input_size)
        return macs + spec.out_channels * spec.num_classes

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        n = spec.in_channels * spec.out_channels + 2 * spec.out_channels
        return n + spec.out_channels * spec.num_classes + spec.num_classes

    @classmethod
    def inner_activations(cls, spec: LayerSpec) -> int:
        return 2 * spec.out_channels * spec.input_size**2  # the full-resolution feature mix, written then pooled

    module = "nasforge.supernet.static:MobileNetV2Head"


@BLOCKS.register("resnet_head", summary="ResNet head: global pool, linear")
class ResNetHead(BlockKind):
    @classmethod
    def output_size(cls, spec: LayerSpec) -> int:
        return 1

    @classmethod
    def output_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        return (spec.num_classes,)

    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        return spec.in_channels * spec.num_classes

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        return spec.in_channels * spec.num_classes + spec.num_classes

    module = "nasforge.supernet.static:ResNetHead"


def layer_macs(spec: LayerSpec) -> int:
    return spec.block.macs(spec)


def layer_params(spec: LayerSpec) -> int:
    return spec.block.params(spec)


def network_macs(layers: list[LayerSpec]) -> int:
    return sum(layer_macs(spec) for spec in layers)


def network_params(layers: list[LayerSpec]) -> int:
    return sum(layer_params(spec) for spec in layers)


def activation_bytes(spec: LayerSpec, bytes_per_value: int = 4) -> int:
    """Bytes a block reads and writes in activations and weights (for roofline estimates)."""
    return bytes_per_value * (spec.block.activation_values(spec) + layer_params(spec))


def _attr_text(value: AttrValue) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def build_layer(spec: LayerSpec, dropout: float = 0.0) -> Any:
    """A freshly initialised static module for one layer spec."""
    return spec.block.build(spec, dropout)


__all__ = [
    "BLOCKS",
    "BlockKind",
    "LayerSpec",
    "activation_bytes",
    "build_layer",
    "conv_out_size",
    "layer_macs",
    "layer_params",
    "make_divisible",
    "network_macs",
    "network_params",
    "se_channels",
]
