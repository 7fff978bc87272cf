"""Tiny training configs for tests: the tiny-mbv3 space on a slice of digits, seconds per epoch on a CPU."""

from __future__ import annotations

from typing import Any

from nasforge.testing import TINY_SPACES_DIR
from nasforge.train.config import TrainConfig, apply_overrides, validate


def tiny_train_config(**overrides: Any) -> TrainConfig:
    """A validated config on tiny-mbv3 + 128 digits images; keyword overrides use dotted keys with '__'.

    e.g. ``tiny_train_config(schedule__name="delayed", epochs=4)``.
    """
    base: dict[str, Any] = {
        "space": str(TINY_SPACES_DIR / "tiny-mbv3.yaml"),
        "epochs": 3,
        "device": "cpu",
        "data.train_limit": 128,
        "data.batch_size": 16,
        "optim.lr": 0.2,
        "optim.label_smoothing": 0.0,
        "eval.calib_images": 64,
        "eval.calib_batch_size": 64,
        "eval.max_images": 64,
        "eval.random_subnets": 1,
        "schedule.eps_window_epochs": 1.0,
    }
    base.update({k.replace("__", "."): v for k, v in overrides.items()})
    return validate(apply_overrides(TrainConfig(), base))
