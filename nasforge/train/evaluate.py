"""Top-1 accuracy of subnets of a supernet, each after BN recalibration, read through a `DataSource`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.data import DataSource, as_source
from nasforge.supernet import ElasticSupernet, resize_to
from nasforge.train.bn import preserved_bn, recalibrate_bn
from nasforge.train.device import autocast_for

__all__ = ["accuracy", "autocast_for", "evaluate_archs"]


def _prep(x: torch.Tensor, resolution: int, channels_last: bool) -> torch.Tensor:
    x = resize_to(x, resolution)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def accuracy(model: nn.Module, data: DataSource, split: str, resolution: int, *, batch_size: int = 256,
             limit: int | None = None, amp: bool = True, channels_last: bool = False) -> float:
    """Top-1 % of `model` (a supernet with an active arch, or a static subnet) on a split.

    Correct counts stay on the device and are read once at the end (one host sync per evaluation).
    """
    source = as_source(data)
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    try:
        for x, y in source.eval_batches(split, batch_size=batch_size, resolution=resolution, limit=limit):
            with autocast_for(device, amp):
                logits = model(_prep(x.to(device, non_blocking=True), resolution, channels_last))
            correct += (logits.argmax(1) == y.to(device, non_blocking=True)).sum()
            total += int(y.shape[0])
    finally:
        model.train(was)
    return 100.0 * int(correct) / max(1, total)


def evaluate_archs(
    net: ElasticSupernet, data: DataSource, archs: Sequence[ArchConfig], split: str = "val", *,
    calib_images: int = 2000, calib_batch_size: int = 200, batch_size: int = 256, limit: int | None = None,
    amp: bool = True, channels_last: bool = False,
) -> np.ndarray:
    """Top-1 % per arch, each measured right after recalibrating BN for it; BN buffers restored after."""
    source = as_source(data)
    device = next(net.parameters()).device
    calib = [x.to(device) for x in source.calibration_batches(calib_images, batch_size=calib_batch_size)]
    out = np.zeros(len(archs), dtype=np.float64)
    with preserved_bn(net):
        for i, arch in enumerate(archs):
            with net.active(arch):
                with autocast_for(device, amp):
                    recalibrate_bn(net, calib, forward=lambda x, r=arch.resolution: net(_prep(x, r, channels_last)))
                out[i] = accuracy(net, source, split, arch.resolution, batch_size=batch_size, limit=limit, amp=amp,
                                  channels_last=channels_last)
    return out
