"""`sandwich` (BigNAS, Yu et al., ECCV 2020): largest on labels; smallest + N random on the largest's detached
soft predictions (in-place distillation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nasforge.space import SearchSpace
from nasforge.train.schedules.base import SCHEDULES, Phase, StepPlan, SubnetTask, cosine_lr, kd_tasks

if TYPE_CHECKING:
    from nasforge.train.config import TrainConfig


@SCHEDULES.register("sandwich", summary="BigNAS: largest + smallest + random subnets, in-place distillation")
class SandwichStrategy:
    """BigNAS: largest (labels) + smallest + N random (in-place KD), one cosine LR over the run."""

    def __init__(self, cfg: TrainConfig, space: SearchSpace, steps_per_epoch: int) -> None:
        self.space = space
        self.total = cfg.epochs * steps_per_epoch
        self.base_lr = cfg.optim.lr
        self.warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
        self.n_random = cfg.schedule.random_subnets
        self.phases = (Phase("sandwich", 0, self.total),)

    def plan(self, iteration: int, rng: np.random.Generator) -> StepPlan:
        lr = cosine_lr(iteration, self.base_lr, 0, self.total, self.warmup)
        archs = [self.space.smallest(), *self.space.sample_many(rng, self.n_random)]
        tasks = (SubnetTask(self.space.largest()), *kd_tasks(archs, 1.0))
        return StepPlan(self.phases[0], lr, tasks)
