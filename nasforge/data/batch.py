"""`Batch`: what every data source yields, inputs of any registered kind plus their targets.

A named tuple, so `x, y = batch` keeps working where a consumer wants both halves; its methods go
through the inputs' kind (`nasforge.data.inputs`), so they hold for images and token sequences alike.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from nasforge.data import inputs as kinds


class Batch(NamedTuple):
    inputs: Any  # an NCHW float tensor (images) or an input record of a registered kind (`TokenInputs`)
    targets: torch.Tensor  # int64 (N,) class labels

    @property
    def size(self) -> int:
        """Samples in the batch."""
        return kinds.batch_size(self.inputs)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Batch:
        return Batch(kinds.to_device(self.inputs, device, non_blocking=non_blocking),
                     self.targets.to(device, non_blocking=non_blocking))

    def shard(self, rank: int, world_size: int) -> Batch:
        """This rank's share `[rank::world_size]` (what `DistContext.shard` keeps of a global batch)."""
        if world_size == 1:
            return self
        return Batch(kinds.shard(self.inputs, rank, world_size), self.targets[rank::world_size])

    def pin(self) -> Batch:
        return Batch(kinds.pin(self.inputs), self.targets.pin_memory())


__all__ = ["Batch"]
