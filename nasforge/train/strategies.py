"""Shrink strategies: which subnets a training step runs, with what loss weights, at what LR.

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

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import ConfigError
from nasforge.registry import Registry
from nasforge.space import SearchSpace
from nasforge.train.config import PhaseConfig, TrainConfig


@dataclass(frozen=True)
class SubnetTask:
    """One forward/backward of a step: loss = weight * (label_w * CE(labels) + kd_w * KD(source))."""

    arch: ArchConfig
    weight: float = 1.0
    label_w: float = 1.0
    kd_w: float = 0.0
    kd_source: str = "largest"  # "largest": this step's first task's detached logits; "teacher": frozen full net


@dataclass(frozen=True)
class Phase:
    """A contiguous range of iterations [start, end) with one set of actions taken when it begins."""

    name: str
    start: int
    end: int
    reset_optimizer: bool = False  # progressive: each phase starts a fresh optimizer (as OFA)
    reorder_channels: bool = False  # delayed: sort channels by importance once, when shrinking starts
    freeze_teacher: bool = False  # progressive: snapshot the full network as the KD teacher
    save_output: bool = False  # progressive: write checkpoints/phase-NAME.pt when the phase ends


@dataclass(frozen=True)
class StepPlan:
    phase: Phase
    lr: float
    tasks: tuple[SubnetTask, ...]


class ShrinkStrategy(Protocol):
    """Built as `Schedule(cfg, space, steps_per_epoch)`; says which subnets each iteration trains."""

    phases: tuple[Phase, ...]

    def plan(self, iteration: int, rng: np.random.Generator) -> StepPlan: ...


SCHEDULES: Registry[type[ShrinkStrategy]] = Registry("schedule")


def cosine_lr(it: int, base: float, start: int, end: int, warmup: int = 0) -> float:
    """Linear warmup over `warmup` iterations, then cosine from `base` to 0 at `end`."""
    t = it - start
    if warmup > 0 and t < warmup:
        return base * (t + 1) / warmup
    span = max(1, end - start - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, (t - warmup) / span)))


def phase_at(phases: Sequence[Phase], it: int) -> Phase:
    for p in phases:
        if p.start <= it < p.end:
            return p
    return phases[-1]


class GeneBounds:
    """A constrained sampler: per gene, only its `open` largest choices may be drawn."""

    def __init__(self, space: SearchSpace, elastic: dict[str, int | str]) -> None:
        self.space = space
        sizes = space.gene_sizes
        groups = space.gene_groups
        self.low = sizes - 1  # closed genes sit at their largest choice
        for group, width in elastic.items():
            idx = groups[group]
            open_n = sizes[idx] if width == "all" else np.minimum(sizes[idx], int(width))
            self.low[idx] = sizes[idx] - open_n
        self.high = sizes  # exclusive

    def sample(self, rng: np.random.Generator, n: int) -> list[ArchConfig]:
        u = rng.random((n, self.space.num_genes))
        genes = self.low[None, :] + (u * (self.high - self.low)[None, :]).astype(np.int64)
        return self.space.decode_batch(genes)

    def largest(self) -> ArchConfig:
        return self.space.decode(self.high - 1)

    def smallest(self) -> ArchConfig:
        return self.space.decode(self.low)


def _kd_tasks(archs: Sequence[ArchConfig], weight: float) -> list[SubnetTask]:
    return [SubnetTask(a, weight, label_w=0.0, kd_w=1.0, kd_source="largest") for a in archs]


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
        tasks = (SubnetTask(self.space.largest()), *_kd_tasks(archs, 1.0))
        return StepPlan(self.phases[0], lr, tasks)


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
        self.phases = tuple(phases)

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
        return StepPlan(phase, self.lr(iteration), (largest, *_kd_tasks(archs, self.epsilon(iteration))))


@SCHEDULES.register("progressive", summary="Once-for-All's progressive shrinking: full, then kernel, depth, expand phases")
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
            phases.append(Phase(pc.name, start, end, reset_optimizer=start > 0, freeze_teacher=freeze,
                                save_output=len(s.phases) > 1))
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


def split_epochs(weights: Sequence[float], total: int) -> list[int]:
    """Largest-remainder split of `total` epochs in proportion to `weights`, each at least 1."""
    n = len(weights)
    if total < n:
        raise ConfigError(f"{n} phases need at least {n} epochs, got {total}")
    w = np.asarray(weights, dtype=np.float64)
    share = w / w.sum() * (total - n)
    base = np.floor(share).astype(int)
    left = (total - n) - int(base.sum())
    order = np.argsort(-(share - base), kind="stable")
    base[order[:left]] += 1
    return [int(b) + 1 for b in base]


def make_strategy(cfg: TrainConfig, space: SearchSpace, steps_per_epoch: int) -> ShrinkStrategy:
    """The schedule `cfg.schedule.name` names, for a run of `cfg.epochs` epochs of `steps_per_epoch` steps."""
    return SCHEDULES.get(cfg.schedule.name)(cfg, space, steps_per_epoch)  # type: ignore[call-arg,no-any-return]
