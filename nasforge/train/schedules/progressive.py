"""`progressive` (Once-for-All, Cai et al., ICLR 2020): full network, then elastic kernel, depth, expand;
each phase a constrained sampler over the space's genes, its own cosine LR, KD from a frozen copy of the
full network taken when the first elastic phase starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nasforge.space import SearchSpace
from nasforge.train.schedules.base import SCHEDULES, GeneBounds, Phase, StepPlan, SubnetTask, cosine_lr, split_epochs

if TYPE_CHECKING:
    from nasforge.train.config import TrainConfig


@SCHEDULES.register(
    "progressive", summary="Once-for-All's progressive shrinking: full, then kernel, depth, expand phases"
)
class ProgressiveStrategy:
    """Once-for-All progressive shrinking: phases of a constrained sampler, per-phase cosine LR.

    The budget's epochs are split over the phases in proportion to their `epochs` weights
    (each phase at least one epoch), so phase boundaries fall on epoch ends; each phase starts
    from the previous phase's output weights with a fresh optimizer, and writes its own output
    checkpoint (checkpoints/phase-NAME.pt) when it ends.
    """

    def __init__(self, cfg: TrainConfig, space: SearchSpace, steps_per_epoch: int) -> None:
        s = cfg.schedule
        self.space = space
        self.cfgs = s.phases
        self.kd_ratio = s.kd_ratio
        epochs = split_epochs([p.epochs for p in s.phases], cfg.epochs)
        self.phase_epochs = epochs
        self.base_lr = cfg.optim.lr
        self.warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
        phases, start = [], 0
        seen_kd = False
        for pc, n in zip(s.phases, epochs):
            end = start + n * steps_per_epoch
            freeze = pc.kd and not seen_kd and start > 0
            seen_kd = seen_kd or freeze
            phases.append(
                Phase(
                    pc.name, start, end, reset_optimizer=start > 0, freeze_teacher=freeze, save_output=len(s.phases) > 1
                )
            )
            start = end
        self.phases = tuple(phases)
        self.bounds = [GeneBounds(space, dict(pc.elastic)) for pc in s.phases]
        self.has_teacher = seen_kd

    def plan(self, iteration: int, rng: np.random.Generator) -> StepPlan:
        i = next((j for j, p in enumerate(self.phases) if p.start <= iteration < p.end), len(self.phases) - 1)
        phase, pc, bounds = self.phases[i], self.cfgs[i], self.bounds[i]
        lr = cosine_lr(iteration, self.base_lr * pc.lr_scale, phase.start, phase.end, self.warmup if i == 0 else 0)
        kd_w = self.kd_ratio if (pc.kd and self.has_teacher and i > 0) else 0.0
        archs = bounds.sample(rng, pc.subnets)
        tasks = tuple(SubnetTask(a, 1.0, label_w=1.0, kd_w=kd_w, kd_source="teacher") for a in archs)
        return StepPlan(phase, lr, tasks)
