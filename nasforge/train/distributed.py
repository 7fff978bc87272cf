"""Multi-process training under `torchrun`: gloo on CPU, nccl on CUDA.

Every rank samples the same subnets (the per-step rng derives from (seed, iteration) alone),
takes a disjoint shard of each batch, and after a step's gradients are accumulated over all
its subnets they are averaged across ranks in flat buckets (`GradientReducer`). We do this by
hand instead of wrapping in DistributedDataParallel: each step runs a different set of
subnets, several forward/backward passes and some parameters unused, which DDP only handles
with find_unused_parameters=True and no_sync() bookkeeping; a manual all-reduce after
accumulation is the same arithmetic with none of that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's disjoint slice of a batch."""
        return x[self.rank :: self.world_size] if self.enabled else x


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE); else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world)
    if device_type == "cuda":
        torch.cuda.set_device(local)
    return DistContext(rank, world, local)


@torch.no_grad()
def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Start every rank from rank 0's weights and buffers."""
    if not ctx.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


class GradientReducer:
    """Mean of every gradient over ranks, in flat buckets: one all-reduce per ~`bucket_mb` MiB, not per parameter.

    Buckets follow the parameters in reverse registration order (roughly the order backward finishes
    them) and hold the gradients present after the step's backward passes; every rank trained the same
    subnets, so every rank holds the same gradients and builds the same buckets. All buckets are
    launched asynchronously before the first is waited on, so the collectives overlap each other's
    flattening and copying back. The sum is divided by the world size, as a per-parameter all-reduce did.
    """

    def __init__(self, module: nn.Module, ctx: DistContext, bucket_mb: float = 25.0) -> None:
        self.ctx = ctx
        self.params = [p for p in reversed(list(module.parameters())) if p.requires_grad]
        self.bucket_bytes = int(bucket_mb * 2**20)

    def buckets(self) -> list[list[torch.Tensor]]:
        """The present gradients, grouped by dtype and device into consecutive buckets of ~bucket_bytes."""
        out: list[list[torch.Tensor]] = []
        size = 0
        for p in self.params:
            g = p.grad
            if g is None:
                continue
            nbytes = g.numel() * g.element_size()
            if not out or size + nbytes > self.bucket_bytes or (out[-1][0].dtype, out[-1][0].device) != (
                    g.dtype, g.device):
                out.append([])
                size = 0
            out[-1].append(g)
            size += nbytes
        return out

    @torch.no_grad()
    def finish(self) -> None:
        """All-reduce (mean) every present gradient; a no-op in a single process."""
        if not self.ctx.enabled:
            return
        pending = []
        for grads in self.buckets():
            flat = _flatten_dense_tensors(grads)
            pending.append((dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True), flat, grads))
        for work, flat, grads in pending:
            work.wait()
            flat.div_(self.ctx.world_size)
            for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
                g.copy_(reduced)


@torch.no_grad()
def average_gradients(module: nn.Module, ctx: DistContext) -> None:
    """Mean of each gradient over ranks; every rank has the same None pattern (same subnets)."""
    GradientReducer(module, ctx).finish()


@torch.no_grad()
def average_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Mean of floating-point buffers (BN running stats) over ranks, so every rank saves the same state.

    Each rank's BN layers see only its shard, so their running statistics drift apart; they are
    re-estimated before any evaluation anyway, but checkpoints must not depend on the rank.
    """
    if not ctx.enabled:
        return
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b, op=dist.ReduceOp.SUM)
            b.div_(ctx.world_size)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
