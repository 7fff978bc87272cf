"""Top-1 accuracy of subnets of a supernet, each after BN recalibration, read through a `DataSource`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.data import DataSource, as_source
from nasforge.heap import release_free_heap
from nasforge.supernet import ElasticSupernet, resize_to
from nasforge.train.bn import preserved_bn, recalibrate_bn
from nasforge.train.device import autocast_for

__all__ = ["HOST_EVAL_BYTES", "accuracy", "autocast_for", "eval_batch_size", "evaluate_archs"]

# CPU evaluation: float input bytes per batch (54 images at 160 px, 27 at 224 px, 256 at 64 px).
HOST_EVAL_BYTES = 16 * 2**20


def _prep(x: torch.Tensor, resolution: int, channels_last: bool) -> torch.Tensor:
    x = resize_to(x, resolution)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def eval_batch_size(device: torch.device, resolution: int, batch_size: int) -> int:
    """Images per evaluation batch: `batch_size` on an accelerator; on the CPU at most `HOST_EVAL_BYTES` of input.

    On the CPU a batch, its prefetched successors and its forward's activations all live in host memory
    and grow with its images (256 images at 160 px: ~0.4 GB with glibc's fragments of them), while CPU
    throughput stops growing after a few dozen; capping the batch keeps a run's peak memory independent
    of `eval.batch_size` and of its val split's size (issue 22). Eval-mode predictions do not depend on
    how the images are batched.
    """
    if device.type != "cpu":
        return batch_size
    return max(1, min(batch_size, HOST_EVAL_BYTES // (3 * resolution * resolution * 4)))


@torch.no_grad()
def accuracy(model: nn.Module, data: DataSource, split: str, resolution: int, *, batch_size: int = 256,
             limit: int | None = None, amp: bool = True, channels_last: bool = False) -> float:
    """Top-1 % of `model` (a supernet with an active arch, or a static subnet) on a split.

    Correct counts stay on the device and are read once at the end (one host sync per evaluation).
    """
    source = as_source(data)
    device = next(model.parameters()).device
    batch_size = eval_batch_size(device, resolution, batch_size)
    was = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    try:
        for x, y in source.eval_batches(split, batch_size=batch_size, resolution=resolution, limit=limit):
            x = _prep(x.to(device, non_blocking=True), resolution, channels_last)  # the source's batch freed here
            with autocast_for(device, amp):
                logits = model(x)
            del x  # not alive while the next batch is normalised
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
    """Top-1 % per arch, each measured right after recalibrating BN for it; BN buffers restored after.

    The host heap's free pages go back to the OS before, between and after the subnets (`release_free_heap`):
    each subnet's batches leave differently sized holes, and without it a training run's peak memory
    was its end-of-epoch evaluation (issue 22).
    """
    source = as_source(data)
    device = next(net.parameters()).device
    release_free_heap()
    calib = [x.to(device) for x in source.calibration_batches(calib_images, batch_size=calib_batch_size)]
    out = np.zeros(len(archs), dtype=np.float64)
    with preserved_bn(net):
        for i, arch in enumerate(archs):
            release_free_heap()
            with net.active(arch):
                with autocast_for(device, amp):
                    recalibrate_bn(net, calib, forward=lambda x, r=arch.resolution: net(_prep(x, r, channels_last)))
                out[i] = accuracy(net, source, split, arch.resolution, batch_size=batch_size, limit=limit, amp=amp,
                                  channels_last=channels_last)
    release_free_heap()
    return out
