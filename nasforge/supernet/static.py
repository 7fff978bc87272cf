"""Plain PyTorch modules for one `LayerSpec` each: what an extracted subnet is made of.

Nothing here is elastic: Conv2d, BatchNorm2d, Linear and standard activations only, so
an extracted subnet exports to ONNX and runs anywhere. Which module a `LayerSpec` becomes is its
block kind's business (`nasforge.layers.BLOCKS`); latency profiling builds single blocks the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.layers import LayerSpec, build_layer, se_channels
from nasforge.supernet import activations


def set_bn_eps(module: nn.Module, eps: float) -> None:
    """Give every BatchNorm of `module` the epsilon `eps` (a space's `bn_eps`; OFA's ProxylessNAS uses 1e-3)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps = eps


def activation(name: str) -> nn.Module:
    """The static module of activation `name` (`nasforge.supernet.activations`, the one table)."""
    return activations.module(name)


class ConvBNAct(nn.Sequential):
    """Conv ('same' padding) -> BatchNorm -> activation."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, stride: int = 1, groups: int = 1, act: str = "relu"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = activation(act)

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> ConvBNAct:
        return cls(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, act=spec.act)


class SqueezeExcite(nn.Module):
    """MobileNetV3 SE: mean pool, 1x1 reduce + ReLU, 1x1 expand + hard sigmoid, rescale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = se_channels(channels)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = torch.relu(self.reduce(y))
        return x * nn.functional.hardsigmoid(self.expand(y))


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ identity)."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        mid = spec.mid_channels or spec.in_channels
        self.expand = ConvBNAct(spec.in_channels, mid, 1, 1, act=spec.act) if spec.mid_channels else None
        self.depthwise = ConvBNAct(mid, mid, spec.kernel_size, spec.stride, groups=mid, act=spec.act)
        self.se = SqueezeExcite(mid) if spec.se else None
        self.project = ConvBNAct(mid, spec.out_channels, 1, 1, act="none")
        self.residual = spec.shortcut == "identity"

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> MBConv:
        return cls(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class Bottleneck(nn.Module):
    """ResNet-D bottleneck: 1x1 -> 3x3 (stride) -> 1x1, shortcut identity / conv / avgpool+conv, ReLU."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        mid = spec.mid_channels
        self.conv1 = ConvBNAct(spec.in_channels, mid, 1, 1)
        self.conv2 = ConvBNAct(mid, mid, spec.kernel_size, spec.stride)
        self.conv3 = ConvBNAct(mid, spec.out_channels, 1, 1, act="none")
        self.shortcut_kind = spec.shortcut
        self.pool = (
            nn.AvgPool2d(spec.stride, spec.stride, ceil_mode=True, count_include_pad=False)
            if spec.shortcut == "avgpool_conv"
            else None
        )
        self.downsample = (
            ConvBNAct(spec.in_channels, spec.out_channels, 1, 1, act="none")
            if spec.shortcut in ("conv", "avgpool_conv")
            else None
        )
        # OFA's "conv" downsample of stride-1 blocks keeps stride 1; strided blocks pool first.

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> Bottleneck:
        return cls(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.conv2(self.conv1(x)))
        shortcut = x
        if self.pool is not None:
            shortcut = self.pool(shortcut)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return torch.relu(y + shortcut)


class ResidualConv(ConvBNAct):
    """Conv-BN-act with an identity shortcut (the skippable middle conv of ResNet's stem)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x + super().forward(x)


class MobileNetV3Head(nn.Module):
    """1x1 conv-BN-act to the final expand width, global pool, 1x1 conv-act (no BN), linear."""

    def __init__(self, spec: LayerSpec, dropout: float = 0.0) -> None:
        super().__init__()
        self.final_expand = ConvBNAct(spec.in_channels, spec.mid_channels, 1, 1, act=spec.act)
        self.feature_mix = nn.Conv2d(spec.mid_channels, spec.out_channels, 1, bias=False)
        self.act = activation(spec.act)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(spec.out_channels, spec.num_classes)

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> MobileNetV3Head:
        return cls(spec, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(x).mean((2, 3), keepdim=True)
        x = self.act(self.feature_mix(x)).flatten(1)
        return self.classifier(self.dropout(x))


class MobileNetV2Head(nn.Module):
    """1x1 conv-BN-act to the feature-mix width at full resolution, global pool, dropout, linear."""

    def __init__(self, spec: LayerSpec, dropout: float = 0.0) -> None:
        super().__init__()
        self.feature_mix = ConvBNAct(spec.in_channels, spec.out_channels, 1, 1, act=spec.act)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(spec.out_channels, spec.num_classes)

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> MobileNetV2Head:
        return cls(spec, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_mix(x).mean((2, 3))
        return self.classifier(self.dropout(x))


class ResNetHead(nn.Module):
    def __init__(self, spec: LayerSpec, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(spec.in_channels, spec.num_classes)

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> ResNetHead:
        return cls(spec, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(x.mean((2, 3))))


class MaxPool(nn.MaxPool2d):
    """Max-pool with 'same' padding (ResNet's stem)."""

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> MaxPool:
        return cls(spec.kernel_size, spec.stride, spec.kernel_size // 2)


class StaticSubnet(nn.Module):
    """A standalone subnet: a sequence of static layers, rebuildable from (arch, space) alone.

    `bn_eps` is the space's (`SearchSpace.bn_eps`): every BN gets it, so weights copied with
    `load_state_dict` (which carries no eps) compute what the supernet computes.
    """

    def __init__(self, layers: list[LayerSpec], arch: ArchConfig | None = None, dropout: float = 0.0,
                 bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.specs = list(layers)
        self.arch = arch
        self.layers = nn.Sequential(*[build_layer(s, dropout) for s in self.specs])
        set_bn_eps(self, bn_eps)

    @property
    def resolution(self) -> int:
        return self.specs[0].input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
