"""The task's metric (top-1 for images) of subnets of a supernet, each after BN recalibration, via a `DataSource`.

Inputs of any registered kind (`nasforge.data.inputs`) are moved and adapted to each subnet by their kind, and
the number is the metric the source's task names (`source.metric`, computed by `nasforge.train.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.data import DataSource, as_source
from nasforge.data.inputs import adapt, to_device
from nasforge.heap import release_free_heap
from nasforge.supernet import ElasticSupernet
from nasforge.train.bn import preserved_bn, recalibrate_bn
from nasforge.train.device import autocast_for
from nasforge.train.metrics import metric as make_metric

__all__ = ["HOST_EVAL_BYTES", "accuracy", "autocast_for", "eval_batch_size", "evaluate_archs", "metric_of"]

# CPU evaluation: float input bytes per batch (54 images at 160 px, 27 at 224 px, 256 at 64 px).
HOST_EVAL_BYTES = 16 * 2**20


def _prep(x: Any, resolution: int, channels_last: bool) -> Any:
    return adapt(x, resolution, channels_last=channels_last)


def metric_of(data: Any) -> str:
    """The metric the source's task names (`top1` for sources that name none: image classification)."""
    return str(getattr(as_source(data), "metric", "top1"))


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
             limit: int | None = None, amp: bool = True, channels_last: bool = False, metric: str | None = None
             ) -> float:
    """The task's metric (`metric`, default the source's: top-1 % for images) of `model` on a split.

    `model` is a supernet with an active arch or a static subnet. The metric accumulates on the device
    and is read once at the end (one host sync per evaluation).
    """
    source = as_source(data)
    device = next(model.parameters()).device
    batch_size = eval_batch_size(device, resolution, batch_size)
    was = model.training
    model.eval()
    score = make_metric(metric or metric_of(source))
    try:
        for x, y in source.eval_batches(split, batch_size=batch_size, resolution=resolution, limit=limit):
            # the source's batch freed here
            x = _prep(to_device(x, device, non_blocking=True), resolution, channels_last)
            with autocast_for(device, amp):
                logits = model(x)
            del x  # not alive while the next batch is normalised
            score.update(logits, y.to(device, non_blocking=True))
    finally:
        model.train(was)
    return score.compute()


def evaluate_archs(
    net: ElasticSupernet, data: DataSource, archs: Sequence[ArchConfig], split: str = "val", *,
    calib_images: int = 2000, calib_batch_size: int = 200, batch_size: int = 256, limit: int | None = None,
    amp: bool = True, channels_last: bool = False, metric: str | None = None,
) -> np.ndarray:
    """The task's metric (top-1 % for images) per arch, each right after recalibrating BN for it; BN restored after.

    The host heap's free pages go back to the OS before, between and after the subnets (`release_free_heap`):
    each subnet's batches leave differently sized holes, and without it a training run's peak memory
    was its end-of-epoch evaluation (issue 22).
    """
    source = as_source(data)
    device = next(net.parameters()).device
    release_free_heap()
    calib = [to_device(x, device) for x in source.calibration_batches(calib_images, batch_size=calib_batch_size)]
    out = np.zeros(len(archs), dtype=np.float64)
    with preserved_bn(net):
        for i, arch in enumerate(archs):
            release_free_heap()
            with net.active(arch):
                with autocast_for(device, amp):
                    recalibrate_bn(net, calib, forward=lambda x, r=arch.resolution: net(_prep(x, r, channels_last)))
                out[i] = accuracy(net, source, split, arch.resolution, batch_size=batch_size, limit=limit, amp=amp,
                                  channels_last=channels_last, metric=metric)
    release_free_heap()
    return out
