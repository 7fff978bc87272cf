from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nasforge.testing.token_family  # noqa: F401  (registers the one-file test family: every suite runs on it)

# Keep the suite predictable on small CI machines.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True, scope="session")
def _nasforge_home(tmp_path_factory):
    """Tables the tests measure go to a throwaway user folder, never into ~/.cache/nasforge or the checkout."""
    old = os.environ.get("NASFORGE_HOME")
    os.environ["NASFORGE_HOME"] = str(tmp_path_factory.mktemp("nasforge-home"))
    yield
    if old is None:
        os.environ.pop("NASFORGE_HOME", None)
    else:
        os.environ["NASFORGE_HOME"] = old


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A briefly trained tiny-mbv3 supernet on a slice of digits (a real run folder, seconds on CPU)."""
    from nasforge.testing.train import tiny_train_config
    from nasforge.train import train_supernet

    cfg = tiny_train_config(schedule__name="sandwich", epochs=2)
    run_dir = tmp_path_factory.mktemp("tiny-run") / "run"
    train_supernet(cfg, run_dir)
    return run_dir
