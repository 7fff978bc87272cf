"""Elastic layers: one set of largest weights, any smaller config used through its leading slices.

Each op takes the active sizes as forward arguments (input channels come from the input
itself), so no op holds hidden "active" state. Channel re-ordering helpers permute the
stored weights so the most important channels come first.

Inside a training step (`ElasticSupernet.shared_step`, which turns the supernet's `StepContext`
on) two things change, neither the values nor the gradients: a sliced weight's gradient is added
in place into the leading slice of the full `.grad` (plain autograd would build a zero-filled
full-size tensor per slice per subnet and add it whole), and derived weights (the depthwise
kernel transformation) are computed once per step and shared by the step's subnets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.layers import se_channels

BodyRunner = Callable[[Callable[..., torch.Tensor], tuple[Any, ...], dict[str, Any]], torch.Tensor]


class StepContext:
    """What the subnets of one training step share; owned by a supernet, on only inside `shared_step`.

    `derived(key, sources, make)` returns leaf copies of weights computed from `sources` once per step
    (recomputed if a source changed in place since, so never stale); each subnet's backward sums into
    the leaves' `.grad`, and `backward()` (at the end of the step) carries those sums through the
    derivation once, into the sources' gradients. The derivation's graph is part of the step's graph:
    it is built from the step's weights and back-propagated before the optimizer step.
    """

    def __init__(self) -> None:
        self.active = False
        # how blocks run their functional body inside a step: None = call it; else runner(fn, tensors, static)
        self.runner: BodyRunner | None = None
        # key -> (state when made, derived values (in the graph), their leaf copies, the sources)
        self._derived: dict[Any, tuple[tuple[Any, ...], tuple[torch.Tensor, ...], tuple[torch.Tensor, ...],
                                       tuple[torch.Tensor, ...]]] = {}

    def __reduce__(self) -> tuple[type, tuple[()]]:
        # a copied or pickled supernet gets a fresh, idle context (no runner, nothing derived)
        return (StepContext, ())

    def derived(self, key: Any, sources: Sequence[torch.Tensor], make: Callable[[], tuple[torch.Tensor, ...]]
                ) -> tuple[torch.Tensor, ...]:
        state = (*(t._version for t in sources), torch.is_grad_enabled(),
                 torch.is_autocast_enabled(sources[0].device.type))
        hit = self._derived.get(key)
        if hit is not None and hit[0] == state:
            return hit[2]
        values = make()
        if not torch.is_grad_enabled():
            return values
        leaves = tuple(v.detach().requires_grad_() for v in values)
        self._derived[key] = (state, values, leaves, tuple(sources))
        return leaves

    def backward(self) -> None:
        """Back-propagate the gradients the step's subnets left on derived weights (once, all ops together)."""
        outputs, grads = [], []
        for _, values, leaves, _ in self._derived.values():
            for value, leaf in zip(values, leaves):
                if leaf.grad is not None and value.requires_grad:
                    outputs.append(value)
                    grads.append(leaf.grad)
        self._derived.clear()
        if outputs:
            torch.autograd.backward(outputs, grads)

    def sources(self) -> list[torch.Tensor]:
        """The weights this step's derived weights came from (their gradients arrive in `backward()`)."""
        return [t for entry in self._derived.values() for t in entry[3]]

    def discard(self) -> None:
        self._derived.clear()


class _SliceIntoGrad(torch.autograd.Function):
    """`weight[index]` whose backward adds into `weight.grad[index]` in place (allocating `.grad` once per step).

    Returns no gradient to autograd for `weight`, so `AccumulateGrad` never sees a full-size tensor (autograd
    still runs `weight`'s post-accumulate-grad hooks after this node, with `.grad` already updated).
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, index: tuple[slice, ...]) -> torch.Tensor:  # type: ignore[override]
        ctx.weight, ctx.index = weight, index
        return weight[index]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None]:  # type: ignore[override]
        weight = ctx.weight
        if weight.grad is None:
            weight.grad = torch.zeros_like(weight)
        weight.grad[ctx.index].add_(grad)
        return None, None


def leading_slice(tensor: torch.Tensor, sizes: Sequence[int], step: StepContext | None = None) -> torch.Tensor:
    """`tensor[:sizes[0], :sizes[1], ...]`; inside a training step, with its gradient added in place."""
    if all(s == d for s, d in zip(sizes, tensor.shape)):
        return tensor
    index = tuple(slice(0, s) for s in sizes)
    if (step is not None and step.active and tensor.is_leaf and tensor.requires_grad and torch.is_grad_enabled()
            and not torch.compiler.is_compiling()):
        return _SliceIntoGrad.apply(tensor, index)  # type: ignore[no-any-return]
    return tensor[index]


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """`F.conv2d(x, weight, None, stride, padding, 1, channels)`, with a faster weight gradient on the CPU.

    oneDNN's depthwise weight gradient on the CPU is slow for 5x5 and 7x7 kernels on small feature maps
    (on a 4x4 map, 10-100x its forward); there `_DepthwiseSmallMap` computes it as a depthwise *forward*
    conv instead (same sum, another order: ~1e-6 relative). Elsewhere (CUDA, 3x3, large maps, inside
    torch.compile) this is plain `F.conv2d`.
    """
    k = weight.shape[-1]
    if (x.device.type == "cpu" and k >= 5 and x.shape[-1] * x.shape[-2] <= _SMALL_MAP and weight.requires_grad
            and torch.is_grad_enabled() and x.dtype == torch.float32 and not torch.compiler.is_compiling()):
        return _DepthwiseSmallMap.apply(x, weight, stride, padding)  # type: ignore[no-any-return]
    return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])


_SMALL_MAP = 16 * 16  # input pixels up to which the forward-conv weight gradient wins (measured: AVX2 EPYC)


class _DepthwiseSmallMap(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int  # type: ignore[override]
                ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, (s, s), (p, p), (1, 1), False, (0, 0), x.shape[1], (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            grad_w = _depthwise_weight_grad(x, grad, weight.shape[-1], s, p).to(memory_format=_format_of(weight))
        return grad_x, grad_w, None, None


def _format_of(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
        and not t.is_contiguous() else torch.contiguous_format


def _depthwise_weight_grad(x: torch.Tensor, grad: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
    """d(loss)/d(weight) of a depthwise conv as one depthwise forward conv: batch folded into channels, the
    padded input as the image and the output gradient as a (dilated by `stride`) kernel, summed over batch."""
    b, c, h, w = x.shape
    ho, wo = grad.shape[-2:]
    image = x.new_zeros(h + 2 * padding, w + 2 * padding, b, c)
    image[padding : padding + h, padding : padding + w] = x.permute(2, 3, 0, 1)
    image = image.view(1, h + 2 * padding, w + 2 * padding, b * c).permute(0, 3, 1, 2)  # [1, B*C, Hp, Wp], NHWC
    kernel = grad.contiguous().view(b * c, 1, ho, wo)
    out = F.conv2d(image, kernel, None, 1, 0, stride, b * c)
    return out[:, :, :k, :k].reshape(b, c, k, k).sum(0).unsqueeze(1)


class StepAware:
    """Mixin of ops that behave differently inside a training step; the supernet hands them its context."""

    step_ctx: StepContext | None = None

    def compiled_step(self) -> bool:
        """Inside a training step whose blocks run through a runner (`compile: blocks`)."""
        step = self.step_ctx
        return step is not None and step.active and step.runner is not None

    def run_body(self, fn: Callable[..., torch.Tensor], tensors: tuple[Any, ...], static: dict[str, Any]
                 ) -> torch.Tensor:
        """`fn(*tensors, **static)`, inside a step through the step's runner (compiled per signature).

        `tensors[0]` is the block's input activation, the rest its weights (nested tuples, None where absent).
        Blocks run their modules instead outside compiled steps, so module hooks see every layer.
        """
        step = self.step_ctx
        if step is not None and step.active and step.runner is not None:
            return step.runner(fn, tensors, static)
        return fn(*tensors, **static)


BNArgs = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]
BNStatic = tuple[bool, float, float]  # use batch statistics, running-average factor, eps


def batch_norm(x: torch.Tensor, params: BNArgs, static: BNStatic) -> torch.Tensor:
    """`F.batch_norm` on `ElasticBatchNorm2d.functional`'s arguments (exactly what its forward computes)."""
    weight, bias, mean, var = params
    use_batch_stats, factor, eps = static
    return F.batch_norm(x, mean, var, weight, bias, use_batch_stats, factor, eps)


def squeeze_excite(x: torch.Tensor, reduce_w: torch.Tensor, reduce_b: torch.Tensor, expand_w: torch.Tensor,
                   expand_b: torch.Tensor) -> torch.Tensor:
    """SE on the active slices (`ElasticSqueezeExcite.weights_for`): mean, reduce + ReLU, expand + hard sigmoid."""
    y = x.mean((2, 3), keepdim=True)
    y = torch.relu(F.conv2d(y, reduce_w, reduce_b))
    y = F.hardsigmoid(F.conv2d(y, expand_w, expand_b))
    return x * y


class ElasticConv2d(StepAware, nn.Conv2d):
    """A conv (groups 1) whose leading output/input channels form the active conv."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int = 1, stride: int = 1, bias: bool = False):
        super().__init__(max_in, max_out, kernel_size, stride, kernel_size // 2, bias=bias)

    def active_weight(self, cin: int, cout: int) -> torch.Tensor:
        return self.weight[:cout, :cin]

    def weight_for(self, cin: int, cout: int) -> torch.Tensor:
        """The active weight as forward uses it (inside a step, its gradient lands in `.grad` in place)."""
        return leading_slice(self.weight, (cout, cin), self.step_ctx)

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:  # type: ignore[override]
        cout = self.out_channels if out_channels is None else out_channels
        bias = self.bias[:cout] if self.bias is not None else None
        return F.conv2d(x, self.weight_for(x.shape[1], cout), bias, self.stride, self.padding)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading channels; statistics of the slice update in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        return batch_norm(x, *self.functional(c))

    def functional(self, c: int) -> tuple[BNArgs, BNStatic]:
        """`batch_norm`'s arguments for the leading `c` channels; counts the batch, as forward does.

        (At full width this is what `nn.BatchNorm2d.forward` passes to `F.batch_norm`.)
        """
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or not self.track_running_stats
        params = (
            self.weight[:c],
            self.bias[:c],
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
        )
        return params, (use_batch_stats, factor, self.eps)


class ElasticDepthwiseConv2d(StepAware, nn.Module):
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

    def transformed_kernels(self) -> tuple[torch.Tensor, ...]:
        """Every smaller kernel for all channels, largest first (7x7 -> 5x5 -> 3x3): one chain of transforms."""
        out = []
        weight = self.weight
        channels = weight.shape[0]
        for small, big in zip(reversed(self.kernel_sizes[:-1]), reversed(self.kernel_sizes[1:])):
            start = (big - small) // 2
            centre = weight[:, :, start : start + small, start : start + small].reshape(channels, small * small)
            weight = F.linear(centre, self.kernel_transforms[f"{big}to{small}"]).reshape(channels, 1, small, small)
            out.append(weight)
        return tuple(out)

    def weight_for(self, channels: int, kernel_size: int) -> torch.Tensor:
        """The active kernel as forward uses it: inside a step the transformed kernels are computed once per
        step for all channels (shared by the step's subnets) and this subnet reads its leading channels."""
        step = self.step_ctx
        if kernel_size == self.max_kernel:
            return leading_slice(self.weight, (channels,), step)
        if step is not None and step.active:
            shared = step.derived(self, (self.weight, *self.kernel_transforms.values()), self.transformed_kernels)
            return leading_slice(shared[self.kernel_sizes[::-1].index(kernel_size) - 1], (channels,), step)
        return self.active_weight(channels, kernel_size)

    def forward(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight_for(x.shape[1], kernel_size), self.stride, kernel_size // 2)


class ElasticSqueezeExcite(StepAware, nn.Module):
    """SE whose reduce width follows the active channels (make_divisible(c // 4, 8))."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        mid = se_channels(max_channels)
        self.reduce = nn.Conv2d(max_channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, max_channels, 1, bias=True)

    def weights_for(self, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reduce weight, reduce bias, expand weight, expand bias) for `c` active channels."""
        r = se_channels(c)
        step = self.step_ctx
        return (leading_slice(self.reduce.weight, (r, c), step), self.reduce.bias[:r],
                leading_slice(self.expand.weight, (c, r), step), self.expand.bias[:c])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_excite(x, *self.weights_for(x.shape[1]))


class ElasticLinear(StepAware, nn.Linear):
    """A linear layer reading the leading input features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.linear(x, leading_slice(self.weight, (self.out_features, x.shape[1]), self.step_ctx), self.bias)


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
