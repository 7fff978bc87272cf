"""`delayed` (DεpS: "Delayed ε-Shrinking for Faster Once-For-All Training", Annavajjala, Khare et al.,
ECCV 2024): the full model alone until a fraction of the budget; channels re-ordered by importance once
when the elastic dimensions open; sandwich steps from then on with subnet losses scaled by ε."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nasforge.space import SearchSpace
from nasforge.train.schedules.base import SCHEDULES, Phase, StepPlan, SubnetTask, cosine_lr, kd_tasks, phase_at

if TYPE_CHECKING:
    from nasforge.train.config import TrainConfig


@SCHEDULES.register("delayed", summary="DεpS: the full model alone to a fraction of the budget, then ε-ramped sandwich")
class DelayedStrategy:
    """DεpS (Annavajjala, Khare et al., ECCV 2024): delayed shrinking with ε-scaled subnet losses.

    With T iterations in the run and one cosine LR lr(t) over all of them (the full model's):

    - t < O = round(shrink_fraction * T) (phase "full"): only the full model trains, on labels.
    - t = O: channels are re-ordered by importance (L1), once; all elastic dimensions open.
    - t >= O: sandwich steps: the largest on labels; the smallest + N random subnets on the
      largest's detached soft predictions, their losses multiplied by ε(t). With the window
      W = min(round(eps_window_epochs * steps_per_epoch), T - O) and the shrink point S = O + W
      (the DεpS code ramps over the last 5 epochs before its shrink point):
        eps_rule "linear" (default):  ε(t) = (t - O + 1) / W                      for O <= t < S
        eps_rule "lr" (DεpS code):    ε(t) = ((t - O + 1) / W) * lr(S) / lr(t)    for O <= t < S
        both:                         ε(t) = 1                                    for t >= S
      "linear" ramps ε itself from ~0 to 1 per iteration; "lr" makes the subnets' effective learning
      rate ε(t)·lr(t) grow exactly linearly to lr(S). Either way the subnets' effective LR grows from
      ~0 to the full model's and follows it after S (phases "eps-warmup", then "shrink").
    """

    def __init__(self, cfg: TrainConfig, space: SearchSpace, steps_per_epoch: int) -> None:
        s = cfg.schedule
        self.space = space
        self.total = cfg.epochs * steps_per_epoch
        self.base_lr = cfg.optim.lr
        self.warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
        self.n_random = s.random_subnets
        self.rule = s.eps_rule
        self.opens = int(round(s.shrink_fraction * self.total))
        self.window = max(0, min(int(round(s.eps_window_epochs * steps_per_epoch)), self.total - self.opens))
        self.shrink = self.opens + self.window
        phases = []
        if self.opens > 0:
            phases.append(Phase("full", 0, self.opens))
        if self.window > 0:
            phases.append(Phase("eps-warmup", self.opens, self.shrink, reorder_channels=True))
        if self.shrink < self.total:
            phases.append(Phase("shrink", self.shrink, self.total, reorder_channels=self.window == 0))
        # each phase's output is kept (phase-NAME.pt): e.g. the full model at the point shrinking starts
        keep = len(phases) > 1
        self.phases = tuple(Phase(p.name, p.start, p.end, reorder_channels=p.reorder_channels, save_output=keep)
                            for p in phases)

    def lr(self, it: int) -> float:
        return cosine_lr(it, self.base_lr, 0, self.total, self.warmup)

    def epsilon(self, it: int) -> float:
        if it < self.opens:
            return 0.0
        if it >= self.shrink:
            return 1.0
        ramp = (it - self.opens + 1) / self.window
        if self.rule == "linear":
            return ramp
        lr_t = self.lr(it)
        return ramp * self.lr(self.shrink) / lr_t if lr_t > 0.0 else 0.0

    def plan(self, iteration: int, rng: np.random.Generator) -> StepPlan:
        phase = phase_at(self.phases, iteration)
        largest = SubnetTask(self.space.largest())
        if iteration < self.opens:
            return StepPlan(phase, self.lr(iteration), (largest,))
        archs = [self.space.smallest(), *self.space.sample_many(rng, self.n_random)]
        return StepPlan(phase, self.lr(iteration), (largest, *kd_tasks(archs, self.epsilon(iteration))))
