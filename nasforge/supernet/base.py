"""The elastic supernet interface shared by every block family."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.space import SearchSpace
from nasforge.supernet.ops import Permutation, StepAware, StepContext
from nasforge.supernet.static import StaticSubnet


class ElasticSupernet(nn.Module):
    """One module holding the largest weights; `set_active(arch)` picks the subnet the next forward runs.

    The active arch is the only run-time state, and it lives on this module. Input resolution
    is the caller's: feed images of `active_arch.resolution` (see `resize_to`).
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self._active = space.largest()
        self._step_ctx: StepContext | None = None

    @property
    def active_arch(self) -> ArchConfig:
        return self._active

    def set_active(self, arch: ArchConfig) -> None:
        self._active = self.space.validate(arch)
        self._plan(self._active)

    @contextmanager
    def active(self, arch: ArchConfig) -> Iterator[ElasticSupernet]:
        """Run a block with `arch` active, restoring the previous subnet afterwards."""
        previous = self._active
        self.set_active(arch)
        try:
            yield self
        finally:
            self.set_active(previous)

    @contextmanager
    def shared_step(self) -> Iterator[StepContext]:
        """One training step's subnets run inside: they share derived weights and add sliced gradients in place.

        On a normal exit the gradients that reached the shared derived weights are back-propagated to the
        weights they came from (so call `backward()` of every subnet inside, the optimizer step after).
        Values and gradients equal those of running each subnet on its own (see `nasforge.supernet.ops`).
        """
        ctx = self.step_context()
        ctx.active = True
        try:
            yield ctx
            ctx.active = False
            ctx.backward()
        finally:
            ctx.active = False
            ctx.discard()

    def step_context(self) -> StepContext:
        """The context `shared_step` turns on (created, and handed to the step-aware ops, on first use)."""
        ctx = self._step_ctx
        if ctx is None:
            ctx = self._step_ctx = StepContext()
            for module in self.modules():
                if isinstance(module, StepAware):
                    module.step_ctx = ctx
        return ctx

    @contextmanager
    def outside_step(self) -> Iterator[None]:
        """Plain autograd inside a step (e.g. while a CUDA graph is captured): nothing shared, nothing in place."""
        ctx = self.step_context()
        was = ctx.active
        ctx.active = False
        try:
            yield
        finally:
            ctx.active = was

    def extract(self, arch: ArchConfig | None = None) -> StaticSubnet:
        """A standalone static copy (weights and BN statistics) of `arch` (default: the active one)."""
        arch = self._active if arch is None else self.space.validate(arch)
        specs = self.space.layers(arch)
        subnet = StaticSubnet(specs, arch, dropout=self.dropout_rate, bn_eps=self.space.bn_eps)
        with self.active(arch):
            self._copy_into(subnet)
        subnet.to(next(self.parameters()).device)
        return subnet.train(self.training)

    @property
    def dropout_rate(self) -> float:
        return 0.0

    def reorder_channels(self) -> list[Permutation]:
        """Sort elastic channels by importance (L1) so leading slices keep the strongest ones.

        The largest network computes the same function afterwards. Returns every permutation
        applied, so optimizer state can follow (`permute_optimizer_state`).
        """
        raise NotImplementedError

    # family hooks
    def _plan(self, arch: ArchConfig) -> None:
        raise NotImplementedError

    def _copy_into(self, subnet: StaticSubnet) -> None:
        raise NotImplementedError


def resize_to(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Elastic resolution at the input: bilinear resize of a batch to `resolution` pixels."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return nn.functional.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


@torch.no_grad()
def permute_optimizer_state(optimizer: torch.optim.Optimizer, permutations: list[Permutation]) -> None:
    """Apply channel permutations to per-parameter optimizer buffers (momentum, Adam moments)."""
    by_id = {id(p): p for group in optimizer.param_groups for p in group["params"]}
    for tensor, dim, index in permutations:
        param = by_id.get(id(tensor))
        if param is None:
            continue
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.copy_(value.index_select(dim, index))
