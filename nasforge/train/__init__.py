"""Supernet training: shrink schedules, the one training loop (`Trainer`), callbacks, checkpoints, runs.

Names are imported on first use (`from nasforge.train import train_supernet`), so importing a light
submodule (the schedule registry, for the CLI's help) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "TrainCallback": "nasforge.train.callbacks",
    "Trainer": "nasforge.train.trainer",
    "TrainResult": "nasforge.train.trainer",
    "TrainState": "nasforge.train.trainer",
    "train_supernet": "nasforge.train.trainer",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nasforge.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
