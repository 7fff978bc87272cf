"""Static layer descriptions: what one block of an extracted subnet is.

A subnet is a list of `LayerSpec`. The same list drives three things, so they can never
disagree: the analytic cost model (`macs`, `params` here), the static PyTorch modules
of an extracted subnet (`nasforge.supernet.static`), and the keys of latency lookup
tables (`LayerSpec.key`).
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("conv", "residual_conv", "maxpool", "mbconv", "bottleneck", "mbv3_head", "resnet_head")
ACTIVATIONS = ("relu", "hswish", "none")
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


@dataclass(frozen=True)
class LayerSpec:
    """One block of a static network, with its input shape.

    kind: conv (conv-BN-act), residual_conv (conv-BN-act + identity), maxpool (3x3/2),
          mbconv (inverted residual), bottleneck (ResNet-D bottleneck), mbv3_head
          (1x1 conv-BN-act, pool, 1x1 conv-act, linear), resnet_head (pool, linear).
    mid_channels: expansion width (mbconv: 0 = no expansion conv; mbv3_head: final expand).
    """

    kind: str
    in_channels: int
    out_channels: int
    input_size: int
    kernel_size: int = 1
    stride: int = 1
    mid_channels: int = 0
    act: str = "relu"
    se: bool = False
    shortcut: str = "none"
    num_classes: int = 0

    @property
    def output_size(self) -> int:
        if self.kind in ("mbv3_head", "resnet_head"):
            return 1
        return conv_out_size(self.input_size, self.stride)

    @property
    def key(self) -> str:
        """Compact key naming this block and its input shape (a latency-table key)."""
        parts = [self.kind, f"i{self.in_channels}", f"o{self.out_channels}", f"hw{self.input_size}"]
        if self.kernel_size != 1:
            parts.append(f"k{self.kernel_size}")
        if self.stride != 1:
            parts.append(f"s{self.stride}")
        if self.mid_channels:
            parts.append(f"m{self.mid_channels}")
        if self.act != "relu":
            parts.append(self.act)
        if self.se:
            parts.append("se")
        if self.shortcut != "none":
            parts.append(f"sc-{self.shortcut}")
        if self.num_classes:
            parts.append(f"n{self.num_classes}")
        return "_".join(parts)


def _conv_macs(cin: int, cout: int, k: int, out_size: int, groups: int = 1) -> int:
    return out_size * out_size * cout * (cin // groups) * k * k


def layer_macs(spec: LayerSpec) -> int:
    """Multiply-accumulates of convolutions and linear layers (what torch's FlopCounterMode counts, halved)."""
    s_in, s_out = spec.input_size, spec.output_size
    if spec.kind in ("conv", "residual_conv"):
        return _conv_macs(spec.in_channels, spec.out_channels, spec.kernel_size, s_out)
    if spec.kind == "maxpool":
        return 0
    if spec.kind == "mbconv":
        mid = spec.mid_channels or spec.in_channels
        macs = 0
        if spec.mid_channels:
            macs += _conv_macs(spec.in_channels, mid, 1, s_in)
        macs += _conv_macs(mid, mid, spec.kernel_size, s_out, groups=mid)
        if spec.se:
            r = se_channels(mid)
            macs += 2 * mid * r
        macs += _conv_macs(mid, spec.out_channels, 1, s_out)
        return macs
    if spec.kind == "bottleneck":
        mid = spec.mid_channels
        macs = _conv_macs(spec.in_channels, mid, 1, s_in)
        macs += _conv_macs(mid, mid, spec.kernel_size, s_out)
        macs += _conv_macs(mid, spec.out_channels, 1, s_out)
        if spec.shortcut in ("conv", "avgpool_conv"):
            macs += _conv_macs(spec.in_channels, spec.out_channels, 1, s_out)
        return macs
    if spec.kind == "mbv3_head":
        macs = _conv_macs(spec.in_channels, spec.mid_channels, 1, s_in)
        macs += spec.mid_channels * spec.out_channels
        return macs + spec.out_channels * spec.num_classes
    if spec.kind == "resnet_head":
        return spec.in_channels * spec.num_classes
    raise ValueError(f"unknown layer kind {spec.kind!r}")


def layer_params(spec: LayerSpec) -> int:
    """Trainable parameters (conv/linear weights and biases, BN affine), as `numel` counts them."""
    cin, cout, k = spec.in_channels, spec.out_channels, spec.kernel_size
    if spec.kind in ("conv", "residual_conv"):
        return cin * cout * k * k + 2 * cout
    if spec.kind == "maxpool":
        return 0
    if spec.kind == "mbconv":
        mid = spec.mid_channels or cin
        n = 0
        if spec.mid_channels:
            n += cin * mid + 2 * mid
        n += mid * k * k + 2 * mid
        if spec.se:
            r = se_channels(mid)
            n += (mid * r + r) + (r * mid + mid)
        return n + mid * cout + 2 * cout
    if spec.kind == "bottleneck":
        mid = spec.mid_channels
        n = cin * mid + 2 * mid + mid * mid * k * k + 2 * mid + mid * cout + 2 * cout
        if spec.shortcut in ("conv", "avgpool_conv"):
            n += cin * cout + 2 * cout
        return n
    if spec.kind == "mbv3_head":
        n = cin * spec.mid_channels + 2 * spec.mid_channels
        n += spec.mid_channels * cout
        return n + cout * spec.num_classes + spec.num_classes
    if spec.kind == "resnet_head":
        return cin * spec.num_classes + spec.num_classes
    raise ValueError(f"unknown layer kind {spec.kind!r}")


def network_macs(layers: list[LayerSpec]) -> int:
    return sum(layer_macs(spec) for spec in layers)


def network_params(layers: list[LayerSpec]) -> int:
    return sum(layer_params(spec) for spec in layers)


def activation_bytes(spec: LayerSpec, bytes_per_value: int = 4) -> int:
    """Bytes a block reads and writes in activations and weights (for roofline estimates)."""
    s_in, s_out = spec.input_size, spec.output_size
    io = spec.in_channels * s_in * s_in + spec.out_channels * s_out * s_out
    inner = 0
    if spec.kind in ("mbconv", "bottleneck") and spec.mid_channels:
        inner = 2 * spec.mid_channels * (s_in * s_in + s_out * s_out)
    return bytes_per_value * (io + inner + layer_params(spec))


__all__ = [
    "KINDS",
    "LayerSpec",
    "activation_bytes",
    "conv_out_size",
    "layer_macs",
    "layer_params",
    "make_divisible",
    "network_macs",
    "network_params",
    "se_channels",
]
