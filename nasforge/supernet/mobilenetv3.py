"""Once-for-All's elastic MobileNets (MobileNetV3, ProxylessNAS): fixed stem, first block and head; elastic MBConv
stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.layers import LayerSpec, build_layer, make_divisible
from nasforge.space import SearchSpace
from nasforge.supernet import activations
from nasforge.supernet.base import ElasticSupernet
from nasforge.supernet.ops import (
    BNArgs,
    BNStatic,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticDepthwiseConv2d,
    ElasticSqueezeExcite,
    Permutation,
    StepAware,
    batch_norm,
    copy_bn,
    copy_conv,
    depthwise_conv2d,
    importance_order,
    init_weights,
    permute_,
    permute_bn_,
    squeeze_excite,
)
from nasforge.supernet.static import MBConv, StaticSubnet, set_bn_eps


def mbconv_body(
    x: torch.Tensor, expand_w: torch.Tensor, expand_bn: BNArgs, dw_w: torch.Tensor, dw_bn: BNArgs,
    se: tuple[torch.Tensor, ...] | None, project_w: torch.Tensor, project_bn: BNArgs, *,
    kernel_size: int, stride: int, act: str, residual: bool, bn: tuple[BNStatic, BNStatic, BNStatic],
) -> torch.Tensor:
    """An elastic MBConv on its active weights: a pure function of tensors plus a static signature
    (kernel, stride, activation, residual, BN settings), so one compiled version serves every block
    and subnet with that signature. `ElasticMBConv.forward` computes the same through its modules
    (so module hooks fire) except inside a compiled training step."""
    y = activations.apply(act, batch_norm(F.conv2d(x, expand_w), expand_bn, bn[0]))
    y = depthwise_conv2d(y, dw_w, stride, kernel_size // 2)
    y = activations.apply(act, batch_norm(y, dw_bn, bn[1]))
    if se is not None:
        y = squeeze_excite(y, *se)
    y = batch_norm(F.conv2d(y, project_w), project_bn, bn[2])
    return x + y if residual else y


class ElasticMBConv(StepAware, nn.Module):
    """Inverted residual with elastic kernel (3/5/7) and expand ratio; in/out widths fixed per block."""

    def __init__(
        self, in_c: int, out_c: int, kernel_sizes: tuple[int, ...], expand_ratios: tuple[float, ...],
        stride: int, act: str, se: bool,
    ) -> None:
        super().__init__()
        self.in_c, self.out_c, self.stride = in_c, out_c, stride
        self.act = act
        max_mid = make_divisible(round(in_c * max(expand_ratios)))
        self.expand_conv = ElasticConv2d(in_c, max_mid, 1)
        self.expand_bn = ElasticBatchNorm2d(max_mid)
        self.depthwise = ElasticDepthwiseConv2d(max_mid, kernel_sizes, stride)
        self.depthwise_bn = ElasticBatchNorm2d(max_mid)
        self.se = ElasticSqueezeExcite(max_mid) if se else None
        self.project_conv = ElasticConv2d(max_mid, out_c, 1)
        self.project_bn = ElasticBatchNorm2d(out_c)
        self.residual = stride == 1 and in_c == out_c

    def mid_channels(self, expand_ratio: float) -> int:
        return make_divisible(round(self.in_c * expand_ratio))

    def forward(self, x: torch.Tensor, kernel_size: int, expand_ratio: float) -> torch.Tensor:
        if self.compiled_step():
            return self._forward_body(x, kernel_size, expand_ratio)
        mid = self.mid_channels(expand_ratio)
        y = activations.apply(self.act, self.expand_bn(self.expand_conv(x, mid)))
        y = activations.apply(self.act, self.depthwise_bn(self.depthwise(y, kernel_size)))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project_conv(y, self.out_c))
        return x + y if self.residual else y

    def _forward_body(self, x: torch.Tensor, kernel_size: int, expand_ratio: float) -> torch.Tensor:
        """The same computation as `mbconv_body` on this block's active weights, through the step's runner."""
        mid = self.mid_channels(expand_ratio)
        expand_bn, expand_static = self.expand_bn.functional(mid)
        dw_bn, dw_static = self.depthwise_bn.functional(mid)
        project_bn, project_static = self.project_bn.functional(self.out_c)
        tensors = (
            x, self.expand_conv.weight_for(x.shape[1], mid), expand_bn, self.depthwise.weight_for(mid, kernel_size),
            dw_bn, self.se.weights_for(mid) if self.se is not None else None,
            self.project_conv.weight_for(mid, self.out_c), project_bn,
        )
        static = {"kernel_size": kernel_size, "stride": self.stride, "act": self.act, "residual": self.residual,
                  "bn": (expand_static, dw_static, project_static)}
        return self.run_body(mbconv_body, tensors, static)

    @torch.no_grad()
    def copy_into(self, block: MBConv, spec: LayerSpec) -> None:
        mid = spec.mid_channels
        assert block.expand is not None  # elastic blocks always expand (ratio > 1)
        copy_conv(block.expand.conv, self.expand_conv.active_weight(self.in_c, mid))
        copy_bn(block.expand.bn, self.expand_bn)
        copy_conv(block.depthwise.conv, self.depthwise.active_weight(mid, spec.kernel_size))
        copy_bn(block.depthwise.bn, self.depthwise_bn)
        if self.se is not None and block.se is not None:
            r = block.se.reduce.out_channels
            copy_conv(block.se.reduce, self.se.reduce.weight[:r, :mid], self.se.reduce.bias[:r])
            copy_conv(block.se.expand, self.se.expand.weight[:mid, :r], self.se.expand.bias[:mid])
        copy_conv(block.project.conv, self.project_conv.active_weight(mid, self.out_c))
        copy_bn(block.project.bn, self.project_bn)

    @torch.no_grad()
    def reorder(self, log: list[Permutation]) -> None:
        order = importance_order(self.project_conv.weight, dim=1)
        permute_(self.project_conv.weight, 1, order, log)
        permute_(self.depthwise.weight, 0, order, log)
        permute_bn_(self.depthwise_bn, order, log)
        permute_(self.expand_conv.weight, 0, order, log)
        permute_bn_(self.expand_bn, order, log)
        if self.se is not None:
            permute_(self.se.reduce.weight, 1, order, log)
            permute_(self.se.expand.weight, 0, order, log)
            permute_(self.se.expand.bias, 0, order, log)
            se_order = importance_order(self.se.expand.weight, dim=1)
            permute_(self.se.expand.weight, 1, se_order, log)
            permute_(self.se.reduce.weight, 0, se_order, log)
            permute_(self.se.reduce.bias, 0, se_order, log)


class ElasticMobileNetV3(ElasticSupernet):
    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        largest = space.largest()
        specs = space.layers(largest)
        self.stem = build_layer(specs[0])
        self.first_block = build_layer(specs[1])
        self.stages = nn.ModuleList()
        in_c = specs[1].out_channels
        for stage in space.stages:
            out_c = make_divisible(stage.channels * space.width_mult)
            blocks = nn.ModuleList()
            for pos in range(stage.max_depth):
                blocks.append(
                    ElasticMBConv(in_c, out_c, stage.kernel_sizes, stage.expand_ratios,
                                  stage.stride if pos == 0 else 1, stage.act, stage.se)
                )
                in_c = out_c
            self.stages.append(blocks)
        self.head = build_layer(specs[-1], dropout=space.dropout)  # MobileNetV3's or MobileNetV2's head
        init_weights(self)
        set_bn_eps(self, space.bn_eps)
        self._blocks_plan: list[tuple[ElasticMBConv, int, float]] = []
        self._plan(self._active)

    @property
    def dropout_rate(self) -> float:
        return self.space.dropout

    def _plan(self, arch: ArchConfig) -> None:
        self._blocks_plan = [
            (blocks[p], int(block["kernel"]), float(block["expand"]))  # type: ignore[misc]
            for blocks, choices in zip(self.stages, self.space.block_choices(arch))
            for p, block in enumerate(choices)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for block, k, e in self._blocks_plan:
            x = block(x, k, e)
        return self.head(x)

    def _copy_into(self, subnet: StaticSubnet) -> None:
        layers = list(subnet.layers)
        layers[0].load_state_dict(self.stem.state_dict())
        layers[1].load_state_dict(self.first_block.state_dict())
        for layer, spec, (block, _, _) in zip(layers[2:-1], subnet.specs[2:-1], self._blocks_plan):
            block.copy_into(layer, spec)
        layers[-1].load_state_dict(self.head.state_dict())

    def reorder_channels(self) -> list[Permutation]:
        log: list[Permutation] = []
        for blocks in self.stages:
            for block in blocks:
                block.reorder(log)  # type: ignore[operator]
        return log
