"""BatchNorm recalibration: a subnet's running statistics recomputed from training images.

Running statistics accumulated while many subnets share the BN layers fit none of them, so every
evaluation first resets them and re-estimates them for the subnet at hand (OFA used 2,000 images).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from nasforge.data.inputs import batch_size


def _bns(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Any], forward=None) -> int:  # type: ignore[no-untyped-def]
    """Reset BN running stats and recompute them as a cumulative average over `batches`.

    Runs in train mode under no_grad with momentum=None (an exact average over batches), then
    restores each layer's momentum and the model's mode. `forward(x)` defaults to `model(x)`
    (pass one that adapts the inputs to the subnet, `data.inputs.adapt`). Returns the number of samples used.
    """
    bns = _bns(model)
    momenta = [m.momentum for m in bns]
    was_training = model.training
    seen = 0
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for x in batches:
            (forward or model)(x)
            seen += batch_size(x)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    return seen


@contextmanager
def preserved_bn(model: nn.Module) -> Iterator[None]:
    """Evaluate (and recalibrate) inside; BN buffers come back unchanged afterwards.

    Training keeps going after a per-epoch evaluation, and a resumed run must hold the same
    buffers as an uninterrupted one, so evaluation must leave no trace.
    """
    saved = [(m, m.running_mean.clone() if m.running_mean is not None else None,
              m.running_var.clone() if m.running_var is not None else None,
              m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in _bns(model)]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, mean, var, count in saved:
                if mean is not None:
                    m.running_mean.copy_(mean)
                if var is not None:
                    m.running_var.copy_(var)
                if count is not None:
                    m.num_batches_tracked.copy_(count)
