"""Library calls leave the process as they found it: affinity, niceness, log levels, the global RNG."""

from __future__ import annotations

import os

import pytest
import torch

from nasforge.latency import ort_timing


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_pinned_measurements_restore_affinity_and_niceness():
    affinity, nice = os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)
    with ort_timing.pinned(1) as (cores, _):
        assert len(os.sched_getaffinity(0)) == 1 and cores == sorted(os.sched_getaffinity(0))
    assert os.sched_getaffinity(0) == affinity
    assert os.getpriority(os.PRIO_PROCESS, 0) == nice


def test_training_leaves_the_global_rng_alone(tmp_path):
    from nasforge.testing.train import tiny_train_config
    from nasforge.train import train_supernet

    torch.manual_seed(123)
    before = torch.get_rng_state()
    train_supernet(tiny_train_config(epochs=1), tmp_path / "run")
    assert torch.equal(torch.get_rng_state(), before)


def test_optuna_search_restores_the_log_level():
    import optuna

    from nasforge.search import Evaluator, SearchProblem, make_engine, run_search
    from nasforge.testing import tiny_space
    from nasforge.testing.search import SyntheticAccuracy

    space = tiny_space()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        problem = SearchProblem(space, Evaluator(space, SyntheticAccuracy(space)), ("accuracy", "macs"))
        run_search(problem, make_engine("tpe", batch_size=4), budget=8, seed=0)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
