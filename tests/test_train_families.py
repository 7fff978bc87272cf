"""Every schedule runs on every block family (a couple of steps each): elastic width, reordering, KD paths."""

from __future__ import annotations

import math

import pytest
import torch

from nasforge.testing import TINY_SPACES_DIR
from nasforge.testing.train import tiny_train_config
from nasforge.train import train_supernet
from nasforge.train.config import PhaseConfig

torch.set_num_threads(1)

PHASES = (
    PhaseConfig("full", 1, 1.0, 1, False, {"resolution": "all"}),
    PhaseConfig("all", 1, 0.5, 2, True, {"resolution": "all", "kernel": "all", "depth": "all", "expand": "all",
                                         "width": "all"}),
)


@pytest.mark.parametrize("family", ["tiny-mbv3", "tiny-resnet"])
@pytest.mark.parametrize("schedule", ["progressive", "sandwich", "delayed"])
def test_schedule_runs_on_family(family, schedule, tmp_path):
    cfg = tiny_train_config(space=str(TINY_SPACES_DIR / f"{family}.yaml"), schedule__name=schedule, epochs=2,
                            data__train_limit=32, schedule__phases=PHASES, schedule__eps_window_epochs=0.5,
                            eval__max_images=32, eval__calib_images=32)
    result = train_supernet(cfg, tmp_path / "run")
    assert result.finished and (tmp_path / "run" / "supernet.pt").exists()
    for record in result.metrics:
        assert math.isfinite(record["train_loss"])
        assert set(record["eval"]) == {"largest", "smallest", "random0"}
