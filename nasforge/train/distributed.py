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

import atexit
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
        _import_group_defaults()
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world)
        atexit.register(_destroy_at_exit)
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

    Buckets are consecutive runs of the parameters in reverse registration order (roughly the order
    backward finishes them). A bucket holds the gradients present when it is launched; every rank trains
    the same subnets, so every rank holds the same gradients and launches the same buckets, in bucket
    order (collectives must match across ranks).

    Overlap: before the step's last backward, `arm(loss, late)` walks that backward's graph. A parameter it
    does not reach already holds its final gradient; one it reaches is final when autograd has accumulated
    it (a post-accumulate-grad hook); `late` parameters get gradients after this backward (the shared
    derived weights' sources). A bucket is launched, asynchronously, as soon as all its parameters are
    final, while backward goes on; `finish()` launches the rest, waits, divides by the world size and
    copies the means back. In a single process all of this is a no-op.
    """

    def __init__(self, module: nn.Module, ctx: DistContext, bucket_mb: float = 25.0) -> None:
        self.ctx = ctx
        params = [p for p in reversed(list(module.parameters())) if p.requires_grad]
        limit = int(bucket_mb * 2**20)
        self.buckets: list[list[nn.Parameter]] = []
        size = 0
        for p in params:
            nbytes = p.numel() * p.element_size()
            if not self.buckets or size + nbytes > limit or (self.buckets[-1][0].dtype, self.buckets[-1][0].device) != (
                    p.dtype, p.device):
                self.buckets.append([])
                size = 0
            self.buckets[-1].append(p)
            size += nbytes
        self._bucket_of = {id(p): i for i, bucket in enumerate(self.buckets) for p in bucket}
        self._pending: list[int] = []  # per bucket: reached parameters not yet accumulated (-1: late)
        self._waiting: set[int] = set()  # ids of reached parameters not yet accumulated
        self._launched: list[tuple[Any, torch.Tensor, list[torch.Tensor]]] = []
        self._hooks: list[Any] = []
        if ctx.enabled:
            self._hooks = [p.register_post_accumulate_grad_hook(self._accumulated) for p in params]

    def close(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def arm(self, loss: torch.Tensor, late: Iterable[torch.Tensor] = ()) -> None:
        """Before the step's last backward of `loss`: launch buckets while it runs (see the class docstring)."""
        if not self.ctx.enabled:
            return
        reached = _leaves_reached(loss)
        self._waiting = {i for i in reached if i in self._bucket_of}
        self._pending = [0] * len(self.buckets)
        for i in self._waiting:
            self._pending[self._bucket_of[i]] += 1
        for t in late:
            if id(t) in self._bucket_of:
                self._pending[self._bucket_of[id(t)]] = -1
        self._launch_ready()

    def _accumulated(self, param: torch.Tensor) -> None:
        if id(param) not in self._waiting:
            return
        self._waiting.discard(id(param))
        b = self._bucket_of[id(param)]
        if self._pending[b] > 0:
            self._pending[b] -= 1
            self._launch_ready()

    def _launch_ready(self) -> None:
        while len(self._launched) < len(self.buckets) and self._pending[len(self._launched)] == 0:
            self._launch(len(self._launched))

    @torch.no_grad()
    def _launch(self, b: int) -> None:
        grads = [p.grad for p in self.buckets[b] if p.grad is not None]
        if not grads:
            self._launched.append((None, torch.empty(0), []))
            return
        flat = _flatten_dense_tensors(grads)
        self._launched.append((dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True), flat, grads))

    @torch.no_grad()
    def finish(self) -> None:
        """After every backward of the step: launch what is left, wait, and write each gradient's mean back."""
        if not self.ctx.enabled:
            return
        while len(self._launched) < len(self.buckets):
            self._launch(len(self._launched))
        for work, flat, grads in self._launched:
            if work is None:
                continue
            work.wait()
            flat.div_(self.ctx.world_size)
            for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
                if reduced.data_ptr() != g.data_ptr():  # a one-tensor bucket may be the gradient itself
                    g.copy_(reduced)
        self._launched, self._pending, self._waiting = [], [], set()


def _leaves_reached(output: torch.Tensor) -> set[int]:
    """ids of the leaf tensors a backward from `output` accumulates into (its graph's AccumulateGrad nodes)."""
    seen: set[int] = set()
    out: set[int] = set()
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:
            out.add(id(variable))
        stack.extend(fn for fn, _ in node.next_functions)
    return out


@torch.no_grad()
def average_gradients(module: nn.Module, ctx: DistContext) -> None:
    """Mean of each gradient over ranks; every rank has the same None pattern (same subnets)."""
    reducer = GradientReducer(module, ctx)
    reducer.finish()
    reducer.close()


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj`, in rank order (a collective: all ranks call it at the same point)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


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


def shutdown() -> None:
    """At the end of a successful multi-process job: wait for every rank, then tear the process group down.

    A process that exits with its group alive can abort at exit ("terminate called without an active
    exception": the backend's threads outlive the interpreter), failing a job whose work was done.
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _destroy_at_exit() -> None:
    """The same teardown for library users who never call `shutdown` (no barrier: a failed rank never reaches one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _import_group_defaults() -> None:
    """Import what binds `group.WORLD` as a default argument before the group exists.

    `torch.distributed.nn.functional` evaluates `group=group.WORLD` at import time; imported after
    `init_process_group` (creating any optimizer imports it lazily, through torch._dynamo), its defaults hold
    the group past `destroy_process_group`, the gloo threads keep running, and the process aborts at exit
    about one time in three (tests/test_train_ddp.py::test_process_group_is_released_at_exit).
    """
    import torch.distributed.nn.functional  # noqa: F401
