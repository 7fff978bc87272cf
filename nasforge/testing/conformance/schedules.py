"""Every registered shrink schedule: phases tile the run, plans are pure functions of (iteration, rng), valid archs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nasforge.testing import tiny_space
from nasforge.testing.train import tiny_train_config
from nasforge.train.schedules import SCHEDULES, make_strategy

STEPS_PER_EPOCH = 5


def _strategy(name: str):  # type: ignore[no-untyped-def]
    space = tiny_space("tiny-mbv3")
    extra = {"schedule__arch": space.largest().to_dict()} if name == "standalone" else {}
    if name == "progressive":
        extra["epochs"] = 6
    cfg = tiny_train_config(schedule__name=name, **extra)
    return space, cfg, make_strategy(cfg, space, STEPS_PER_EPOCH)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_phases_tile_the_run(name):
    _, cfg, strategy = _strategy(name)
    phases = strategy.phases
    assert phases and phases[0].start == 0 and phases[-1].end == cfg.epochs * STEPS_PER_EPOCH
    assert all(a.end == b.start for a, b in zip(phases, phases[1:]))
    assert len({p.name for p in phases}) == len(phases)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_plans_are_pure_and_valid(name):
    space, cfg, strategy = _strategy(name)
    for it in range(cfg.epochs * STEPS_PER_EPOCH):
        a = strategy.plan(it, np.random.default_rng([0, it]))
        b = strategy.plan(it, np.random.default_rng([0, it]))
        assert a == b  # a resumed run replays exactly
        assert math.isfinite(a.lr) and a.lr >= 0
        assert a.phase.start <= it < a.phase.end
        assert a.tasks
        for j, task in enumerate(a.tasks):
            assert space.validate(task.arch) == task.arch
            assert task.weight >= 0 and task.label_w >= 0 and task.kd_w >= 0
            if task.kd_w and task.kd_source == "largest":
                assert j > 0 and a.tasks[0].arch == space.largest()  # in-place KD needs the largest first
