"""`standalone`: one fixed arch trained alone on labels (the baseline OFA compares subnets against)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nasforge.errors import ConfigError
from nasforge.space import SearchSpace
from nasforge.train.schedules.base import SCHEDULES, Phase, StepPlan, SubnetTask, cosine_lr

if TYPE_CHECKING:
    from nasforge.train.config import TrainConfig


@SCHEDULES.register("standalone", summary="one fixed arch trained alone (the trained-alone baseline)")
class StandaloneStrategy:
    """One fixed arch trained alone on labels (the baseline that OFA compares subnets against)."""

    def __init__(self, cfg: TrainConfig, space: SearchSpace, steps_per_epoch: int) -> None:
        if cfg.schedule.arch is None:
            raise ConfigError("schedule 'standalone' needs schedule.arch")
        self.arch = space.parse_arch(cfg.schedule.arch)
        self.total = cfg.epochs * steps_per_epoch
        self.base_lr = cfg.optim.lr
        self.warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
        self.phases = (Phase("standalone", 0, self.total),)
        self.eval_archs = {"subnet": self.arch}

    def plan(self, iteration: int, rng: np.random.Generator) -> StepPlan:
        lr = cosine_lr(iteration, self.base_lr, 0, self.total, self.warmup)
        return StepPlan(self.phases[0], lr, (SubnetTask(self.arch),))
