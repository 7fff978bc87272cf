"""What every shrink schedule shares: the step plan it returns, its phases, the LR shape, the registry.

The training loop never branches on a schedule's name: it asks `strategy.plan(iteration, rng)`
for a `StepPlan` and runs its tasks. A strategy is a pure function of the iteration (plus the
per-step rng the loop derives from (seed, iteration)), so a resumed run replays exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import ConfigError
from nasforge.registry import Registry
from nasforge.space import SearchSpace


class TrainSettings(Protocol):
    """What a schedule reads of a run's `TrainConfig` (epochs, optim, schedule)."""

    epochs: int
    optim: Any
    schedule: Any

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


SCHEDULES: Registry[type[ShrinkStrategy]] = Registry(
    "schedule",
    modules=(
        "nasforge.train.schedules.sandwich",
        "nasforge.train.schedules.delayed",
        "nasforge.train.schedules.progressive",
        "nasforge.train.schedules.standalone",
    ),
)


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
            if group not in groups:
                _check_known_group(group, space)
                continue  # a dimension this space does not have (OFA's kernel phase on a ResNet): nothing to open
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


def _check_known_group(group: str, space: SearchSpace) -> None:
    """A phase may name another family's group (schedules are shared); a name no family declares is a typo."""
    from nasforge.families import FAMILIES

    known = {g.name for entry in FAMILIES.entries() for g in entry.obj.gene_groups}
    if group not in known:
        raise ConfigError(f"schedule phase opens gene group {group!r}, which no family declares; space "
                          f"'{space.name}' has {[g.name for g in space.groups]}")


def kd_tasks(archs: Sequence[ArchConfig], weight: float) -> list[SubnetTask]:
    return [SubnetTask(a, weight, label_w=0.0, kd_w=1.0, kd_source="largest") for a in archs]


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


def make_strategy(cfg: TrainSettings, space: SearchSpace, steps_per_epoch: int) -> ShrinkStrategy:
    """The schedule `cfg.schedule.name` names, for a run of `cfg.epochs` epochs of `steps_per_epoch` steps."""
    return SCHEDULES.get(cfg.schedule.name)(cfg, space, steps_per_epoch)  # type: ignore[call-arg,no-any-return]
