"""Top-1 accuracy of subnets of a supernet, each after BN recalibration."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.data import DataSplits, calibration_batches, eval_batches
from nasforge.supernet import ElasticSupernet, resize_to
from nasforge.train.bn import preserved_bn, recalibrate_bn


def autocast_for(device: torch.device, enabled: bool = True):  # type: ignore[no-untyped-def]
    """bf16 autocast on CUDA; a no-op elsewhere."""
    if device.type == "cuda" and enabled:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _prep(x: torch.Tensor, resolution: int, channels_last: bool) -> torch.Tensor:
    x = resize_to(x, resolution)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def accuracy(model: nn.Module, data: DataSplits, split: str, resolution: int, *, batch_size: int = 256,
             limit: int | None = None, amp: bool = True, channels_last: bool = False) -> float:
    """Top-1 % of `model` (a supernet with an active arch, or a static subnet) on a split."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in eval_batches(data, split, batch_size, limit):
            with autocast_for(device, amp):
                logits = model(_prep(x.to(device), resolution, channels_last))
            correct += int((logits.argmax(1) == y.to(device)).sum())
            total += int(y.shape[0])
    finally:
        model.train(was)
    return 100.0 * correct / max(1, total)


def evaluate_archs(
    net: ElasticSupernet, data: DataSplits, archs: Sequence[ArchConfig], split: str = "val", *,
    calib_images: int = 2000, calib_batch_size: int = 200, batch_size: int = 256, limit: int | None = None,
    amp: bool = True, channels_last: bool = False,
) -> np.ndarray:
    """Top-1 % per arch, each measured right after recalibrating BN for it; BN buffers restored after."""
    device = next(net.parameters()).device
    calib = calibration_batches(data, calib_images, calib_batch_size)
    out = np.zeros(len(archs), dtype=np.float64)
    with preserved_bn(net):
        for i, arch in enumerate(archs):
            with net.active(arch):
                with autocast_for(device, amp):
                    recalibrate_bn(net, [x.to(device) for x in calib],
                                   forward=lambda x, r=arch.resolution: net(_prep(x, r, channels_last)))
                out[i] = accuracy(net, data, split, arch.resolution, batch_size=batch_size, limit=limit, amp=amp,
                                  channels_last=channels_last)
    return out
