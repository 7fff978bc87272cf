"""Shrink schedules: which subnets a training step runs, with what loss weights, at what LR.

The training loop never branches on a schedule's name: it asks `strategy.plan(iteration, rng)`
for a `StepPlan` and runs its tasks. A strategy is a pure function of the iteration (plus the
per-step rng the loop derives from (seed, iteration)), so a resumed run replays exactly.

- `progressive` (Once-for-All, Cai et al., ICLR 2020): full network, then elastic kernel, depth,
  expand; each phase a constrained sampler over the space's genes, its own cosine LR, KD from a
  frozen copy of the full network taken when the first elastic phase starts.
- `sandwich` (BigNAS, Yu et al., ECCV 2020): largest on labels; smallest + N random on the
  largest's detached soft predictions (in-place distillation).
- `delayed` (DεpS: "Delayed ε-Shrinking for Faster Once-For-All Training", Aditya Annavajjala,
  Alind Khare et al., ECCV 2024): the full model alone on one cosine schedule until a fraction of
  the budget; channels re-ordered by importance once when the elastic dimensions open; sandwich
  steps from then on with subnet losses scaled by ε (the exact rule: `DelayedStrategy`).
- `standalone`: one fixed arch trained alone (the "as good as trained alone" baseline).
"""

from nasforge.train.schedules.base import (
    SCHEDULES,
    GeneBounds,
    Phase,
    ShrinkStrategy,
    StepPlan,
    SubnetTask,
    cosine_lr,
    make_strategy,
    phase_at,
    split_epochs,
)
from nasforge.train.schedules.delayed import DelayedStrategy
from nasforge.train.schedules.progressive import ProgressiveStrategy
from nasforge.train.schedules.sandwich import SandwichStrategy
from nasforge.train.schedules.standalone import StandaloneStrategy

__all__ = [
    "SCHEDULES",
    "DelayedStrategy",
    "GeneBounds",
    "Phase",
    "ProgressiveStrategy",
    "SandwichStrategy",
    "ShrinkStrategy",
    "StandaloneStrategy",
    "StepPlan",
    "SubnetTask",
    "cosine_lr",
    "make_strategy",
    "phase_at",
    "split_epochs",
]
