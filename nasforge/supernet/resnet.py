"""Once-for-All's elastic ResNet50-D: elastic stem widths, skippable stem conv, elastic bottlenecks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.layers import LayerSpec, make_divisible
from nasforge.space import SearchSpace
from nasforge.supernet.base import ElasticSupernet
from nasforge.supernet.ops import (
    BNArgs,
    BNStatic,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticLinear,
    Permutation,
    StepAware,
    batch_norm,
    copy_bn,
    copy_conv,
    importance_order,
    init_weights,
    permute_,
    permute_bn_,
)
from nasforge.supernet.static import Bottleneck, ConvBNAct, StaticSubnet, set_bn_eps


class ElasticConvBN(nn.Module):
    """Conv-BN(-ReLU) with elastic output width."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int, stride: int, relu: bool = True) -> None:
        super().__init__()
        self.conv = ElasticConv2d(max_in, max_out, kernel_size, stride)
        self.bn = ElasticBatchNorm2d(max_out)
        self.relu = relu

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        y = self.bn(self.conv(x, out_channels))
        return F.relu(y) if self.relu else y

    @torch.no_grad()
    def copy_into(self, dst: ConvBNAct) -> None:
        copy_conv(dst.conv, self.conv.active_weight(dst.conv.in_channels, dst.conv.out_channels))
        copy_bn(dst.bn, self.bn)


def bottleneck_body(
    x: torch.Tensor, w1: torch.Tensor, bn1: BNArgs, w2: torch.Tensor, bn2: BNArgs, w3: torch.Tensor, bn3: BNArgs,
    down_w: torch.Tensor | None, down_bn: BNArgs | None, *, stride: int, shortcut: str, bn: tuple[BNStatic, ...],
) -> torch.Tensor:
    """An elastic bottleneck on its active weights: a pure function of tensors plus a static signature
    (stride, shortcut kind, BN settings), compiled once per signature under `compile: blocks`.
    `ElasticBottleneck.forward` computes the same through its modules except inside a compiled step."""
    y = F.relu(batch_norm(F.conv2d(x, w1), bn1, bn[0]))
    y = F.relu(batch_norm(F.conv2d(y, w2, None, stride, 1), bn2, bn[1]))
    y = batch_norm(F.conv2d(y, w3), bn3, bn[2])
    s = x
    if shortcut == "avgpool_conv":
        s = F.avg_pool2d(s, stride, stride, ceil_mode=True, count_include_pad=False)
    if down_w is not None and down_bn is not None:
        s = batch_norm(F.conv2d(s, down_w), down_bn, bn[3])
    return F.relu(y + s)


class ElasticBottleneck(StepAware, nn.Module):
    """Bottleneck with elastic output width and expand ratio (mid = out * ratio, rounded to 8)."""

    def __init__(self, max_in: int, max_out: int, expand_ratios: tuple[float, ...], stride: int, shortcut: str) -> None:
        super().__init__()
        max_mid = make_divisible(round(max_out * max(expand_ratios)))
        self.conv1 = ElasticConvBN(max_in, max_mid, 1, 1)
        self.conv2 = ElasticConvBN(max_mid, max_mid, 3, stride)
        self.conv3 = ElasticConvBN(max_mid, max_out, 1, 1, relu=False)
        self.shortcut = shortcut
        self.stride = stride
        self.downsample = ElasticConvBN(max_in, max_out, 1, 1, relu=False) if shortcut != "identity" else None

    def forward(self, x: torch.Tensor, out_channels: int, expand_ratio: float) -> torch.Tensor:
        if self.compiled_step():
            return self._forward_body(x, out_channels, expand_ratio)
        mid = make_divisible(round(out_channels * expand_ratio))
        y = self.conv3(self.conv2(self.conv1(x, mid), mid), out_channels)
        shortcut = x
        if self.shortcut == "avgpool_conv":
            shortcut = F.avg_pool2d(shortcut, self.stride, self.stride, ceil_mode=True, count_include_pad=False)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut, out_channels)
        return F.relu(y + shortcut)

    def _forward_body(self, x: torch.Tensor, out_channels: int, expand_ratio: float) -> torch.Tensor:
        """The same computation as `bottleneck_body` on this block's active weights, through the step's runner."""
        mid = make_divisible(round(out_channels * expand_ratio))
        bn1, s1 = self.conv1.bn.functional(mid)
        bn2, s2 = self.conv2.bn.functional(mid)
        bn3, s3 = self.conv3.bn.functional(out_channels)
        statics: tuple[BNStatic, ...] = (s1, s2, s3)
        down_w = down_bn = None
        if self.downsample is not None:
            down_bn, s4 = self.downsample.bn.functional(out_channels)
            down_w = self.downsample.conv.weight_for(x.shape[1], out_channels)
            statics = (*statics, s4)
        tensors = (x, self.conv1.conv.weight_for(x.shape[1], mid), bn1, self.conv2.conv.weight_for(mid, mid), bn2,
                   self.conv3.conv.weight_for(mid, out_channels), bn3, down_w, down_bn)
        return self.run_body(bottleneck_body, tensors, {"stride": self.stride, "shortcut": self.shortcut,
                                                         "bn": statics})

    @torch.no_grad()
    def copy_into(self, block: Bottleneck) -> None:
        self.conv1.copy_into(block.conv1)
        self.conv2.copy_into(block.conv2)
        self.conv3.copy_into(block.conv3)
        if self.downsample is not None and block.downsample is not None:
            self.downsample.copy_into(block.downsample)

    @torch.no_grad()
    def reorder(self, log: list[Permutation]) -> None:
        order = importance_order(self.conv3.conv.weight, dim=1)
        permute_(self.conv3.conv.weight, 1, order, log)
        permute_(self.conv2.conv.weight, 0, order, log)
        permute_bn_(self.conv2.bn, order, log)
        order = importance_order(self.conv2.conv.weight, dim=1)
        permute_(self.conv2.conv.weight, 1, order, log)
        permute_(self.conv1.conv.weight, 0, order, log)
        permute_bn_(self.conv1.bn, order, log)


class ElasticResNet(ElasticSupernet):
    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        specs = space.layers(space.largest())
        stem_mid, stem_out = specs[0].out_channels, specs[2].out_channels
        self.stem_conv = ElasticConvBN(3, stem_mid, 3, 2)
        self.stem_residual = ElasticConvBN(stem_mid, stem_mid, 3, 1)
        self.stem_out = ElasticConvBN(stem_mid, stem_out, 3, 1)
        self.stages = nn.ModuleList()
        in_c = stem_out
        for stage in space.stages[1:]:
            out_c = make_divisible(stage.channels * max(space.width_choices[stage.width_slot or 0]))
            blocks = nn.ModuleList()
            for pos in range(stage.max_depth):
                stride = stage.stride if pos == 0 else 1
                shortcut = "identity" if pos > 0 else ("conv" if stride == 1 else "avgpool_conv")
                blocks.append(ElasticBottleneck(in_c, out_c, stage.expand_ratios, stride, shortcut))
                in_c = out_c
            self.stages.append(blocks)
        self.classifier = ElasticLinear(in_c, space.num_classes)
        init_weights(self)
        set_bn_eps(self, space.bn_eps)
        self._plan(self._active)

    def _plan(self, arch: ArchConfig) -> None:
        specs = self.space.layers(arch)
        self._stem_widths = (specs[0].out_channels, specs[-1].in_channels)
        self._stem_skip = arch.depths[0] == 0
        self._stem_out_channels = next(s for s in specs if s.kind == "maxpool").out_channels
        blocks = [s for s in specs if s.kind == "bottleneck"]
        plan: list[tuple[ElasticBottleneck, int, float]] = []
        it = iter(blocks)
        for choices, elastic in zip(self.space.block_choices(arch)[1:], self.stages):
            for p, block in enumerate(choices):
                plan.append((elastic[p], next(it).out_channels, float(block["expand"])))  # type: ignore[arg-type]
        self._blocks_plan = plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self._stem_widths[0]
        x = self.stem_conv(x, mid)
        if not self._stem_skip:
            x = x + self.stem_residual(x, mid)
        x = self.stem_out(x, self._stem_out_channels)
        x = F.max_pool2d(x, 3, 2, 1)
        for block, out_c, e in self._blocks_plan:
            x = block(x, out_c, e)
        return self.classifier(x.mean((2, 3)))

    def _copy_into(self, subnet: StaticSubnet) -> None:
        layers = list(subnet.layers)
        i = 0
        self.stem_conv.copy_into(layers[i])
        i += 1
        if not self._stem_skip:
            self.stem_residual.copy_into(layers[i])
            i += 1
        self.stem_out.copy_into(layers[i])
        i += 2  # and the max-pool
        for layer, (block, _, _) in zip(layers[i:-1], self._blocks_plan):
            block.copy_into(layer)
        head = layers[-1]
        with torch.no_grad():
            head.classifier.weight.copy_(self.classifier.weight[:, : head.classifier.in_features])
            head.classifier.bias.copy_(self.classifier.bias)

    def reorder_channels(self) -> list[Permutation]:
        log: list[Permutation] = []
        for blocks in self.stages:
            for block in blocks:
                block.reorder(log)  # type: ignore[operator]
        return log


__all__ = ["ElasticResNet", "LayerSpec"]
