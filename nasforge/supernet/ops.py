"""Elastic layers: one set of largest weights, any smaller config used through its leading slices.

Each op takes the active sizes as forward arguments (input channels come from the input
itself), so no op holds hidden "active" state. Channel re-ordering helpers permute the
stored weights so the most important channels come first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.layers import se_channels


class ElasticConv2d(nn.Conv2d):
    """A conv (groups 1) whose leading output/input channels form the active conv."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int = 1, stride: int = 1, bias: bool = False):
        super().__init__(max_in, max_out, kernel_size, stride, kernel_size // 2, bias=bias)

    def active_weight(self, cin: int, cout: int) -> torch.Tensor:
        return self.weight[:cout, :cin]

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:  # type: ignore[override]
        cout = self.out_channels if out_channels is None else out_channels
        bias = self.bias[:cout] if self.bias is not None else None
        return F.conv2d(x, self.weight[:cout, : x.shape[1]], bias, self.stride, self.padding)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading channels; statistics of the slice update in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
            self.weight[:c],
            self.bias[:c],
            use_batch_stats,
            factor,
            self.eps,
        )


class ElasticDepthwiseConv2d(nn.Module):
    """Depthwise conv with elastic channels and elastic kernel (Once-for-All's kernel transformation).

    A smaller kernel is the centre of the next larger one passed through a learned
    (k*k x k*k) matrix shared by all channels: 7x7 -> centre 5x5 -> 25x25 map -> centre
    3x3 -> 9x9 map. The maps start as identity, so at init a small kernel is the plain centre.
    """

    def __init__(self, max_channels: int, kernel_sizes: Sequence[int], stride: int = 1) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(set(kernel_sizes)))
        self.max_kernel = self.kernel_sizes[-1]
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.kernel_transforms = nn.ParameterDict(
            {
                f"{big}to{small}": nn.Parameter(torch.eye(small * small))
                for small, big in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:])
            }
        )

    def active_weight(self, channels: int, kernel_size: int) -> torch.Tensor:
        weight = self.weight[:channels]
        for small, big in zip(reversed(self.kernel_sizes[:-1]), reversed(self.kernel_sizes[1:])):
            if big <= kernel_size:
                break
            start = (big - small) // 2
            centre = weight[:, :, start : start + small, start : start + small].reshape(channels, small * small)
            weight = F.linear(centre, self.kernel_transforms[f"{big}to{small}"]).reshape(channels, 1, small, small)
        return weight

    def forward(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.active_weight(c, kernel_size), None, self.stride, kernel_size // 2, 1, c)


class ElasticSqueezeExcite(nn.Module):
    """SE whose reduce width follows the active channels (make_divisible(c // 4, 8))."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        mid = se_channels(max_channels)
        self.reduce = nn.Conv2d(max_channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, max_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        r = se_channels(c)
        y = x.mean((2, 3), keepdim=True)
        y = torch.relu(F.conv2d(y, self.reduce.weight[:r, :c], self.reduce.bias[:r]))
        y = F.hardsigmoid(F.conv2d(y, self.expand.weight[:c, :r], self.expand.bias[:c]))
        return x * y


class ElasticLinear(nn.Linear):
    """A linear layer reading the leading input features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)


def act_fn(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "hswish":
        return nn.Hardswish()
    return nn.Identity()


def init_weights(module: nn.Module) -> None:
    """He (fan-out) init for convs, unit BN, small uniform linear: as OFA's `init_model`."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.weight.shape[1])
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------- copying and permuting


@torch.no_grad()
def copy_conv(dst: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    dst.weight.copy_(weight)
    if bias is not None and dst.bias is not None:
        dst.bias.copy_(bias)


@torch.no_grad()
def copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    c = dst.num_features
    dst.weight.copy_(src.weight[:c])
    dst.bias.copy_(src.bias[:c])
    if src.running_mean is not None and dst.running_mean is not None:
        dst.running_mean.copy_(src.running_mean[:c])
        dst.running_var.copy_(src.running_var[:c])
        dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.eps, dst.momentum = src.eps, src.momentum


Permutation = tuple[torch.Tensor, int, torch.Tensor]  # (tensor, dim, index)


@torch.no_grad()
def permute_(tensor: torch.Tensor, dim: int, index: torch.Tensor, log: list[Permutation]) -> None:
    tensor.copy_(tensor.index_select(dim, index))
    log.append((tensor, dim, index))


def permute_bn_(bn: nn.BatchNorm2d, index: torch.Tensor, log: list[Permutation]) -> None:
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        if t is not None:
            permute_(t, 0, index, log)


def importance_order(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """Channels along `dim` sorted by descending L1 norm of the weights that read them (stable)."""
    dims = [d for d in range(weight.dim()) if d != dim]
    importance = weight.detach().abs().sum(dim=dims)
    return torch.sort(importance, descending=True, stable=True).indices
