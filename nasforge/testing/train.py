"""Tiny training configs for tests (the tiny-mbv3 space on a slice of digits, seconds per epoch on a CPU), and
an accuracy computed by hand to check the trainer's against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from nasforge.testing import TINY_SPACES_DIR
from nasforge.train.config import EvalConfig, TrainConfig, apply_overrides, validate

if TYPE_CHECKING:
    from nasforge.arch import ArchConfig
    from nasforge.train.runs import Run


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


@torch.no_grad()
def top1_by_hand(run: Run, arch: ArchConfig, e: EvalConfig, split: str | None = None) -> float:
    """Top-1 % of `arch` as the trainer's evaluation defines it, without its code: a static copy of the subnet,
    BN statistics averaged afresh over the seeded calibration images (`e`'s), then argmax on `split` (`e.split`)
    capped at `e.max_images`."""
    subnet = run.supernet.extract(arch)
    data = run.data()
    bns = [m for m in subnet.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a plain average over the calibration batches
    subnet.train()
    for x in data.calibration_batches(e.calib_images, batch_size=e.calib_batch_size, resolution=arch.resolution):
        subnet(x)
    subnet.eval()
    correct = total = 0
    for x, y in data.eval_batches(split or e.split, batch_size=e.batch_size, resolution=arch.resolution,
                                  limit=e.max_images):
        correct += int((subnet(x).argmax(1) == y).sum())
        total += int(y.shape[0])
    if not bns or total == 0:
        raise ValueError(f"nothing to measure: {len(bns)} BN layers, {total} images")
    return 100.0 * correct / total
