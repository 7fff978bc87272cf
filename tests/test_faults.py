"""Faults injected into real processes: SIGKILL during training, torn and missing metric lines.

The measurement-store and optuna-worker faults are in `test_hardening.py`; two optuna workers on one
study in `test_search_resume.py`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nasforge.testing.train import tiny_train_config
from nasforge.train import train_supernet
from nasforge.train.callbacks import METRICS_FILE

torch.set_num_threads(1)

CONFIG = dict(schedule__name="delayed", epochs=3, schedule__shrink_fraction=0.4, schedule__eps_window_epochs=0.5,
              checkpoint_every_steps=2)
WORKER = """
import sys, torch
torch.set_num_threads(1)
from nasforge.testing.train import tiny_train_config
from nasforge.train import train_supernet
cfg = tiny_train_config(**{cfg!r})
train_supernet(cfg, sys.argv[1], resume=len(sys.argv) > 2)
"""


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "supernet.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "reference"
    train_supernet(tiny_train_config(**CONFIG), run)
    return run


@pytest.mark.slow
def test_sigkill_at_random_points_resumes_bit_exact(uninterrupted, tmp_path):
    """Three runs, each SIGKILLed at a random moment (mid-step, mid-checkpoint-write, mid-evaluation) and
    resumed until it finishes: the final weights equal an uninterrupted run's exactly."""
    script = WORKER.format(cfg=CONFIG)
    rng = np.random.default_rng(0)
    reference = _state(uninterrupted)
    for trial in range(3):
        run = tmp_path / f"run{trial}"
        kills = 0
        for _attempt in range(20):
            args = [sys.executable, "-c", script, str(run)] + (["resume"] if (run / "checkpoints").exists() else [])
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if kills < 2:
                time.sleep(float(rng.uniform(3.0, 9.0)))  # start-up is ~2-3 s; a tiny epoch ~1-2 s
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
            _, err = proc.communicate(timeout=300)
            if (run / "supernet.pt").exists():
                break
            assert proc.returncode in (0, -signal.SIGKILL), err
        got = _state(run)
        assert got.keys() == reference.keys()
        assert all(torch.equal(got[k], reference[k]) for k in reference), f"trial {trial} after {kills} kills"
        records = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
        assert [r["epoch"] for r in records] == [1, 2, 3]  # no hole, no duplicate
        assert not list((run / "checkpoints").glob(".*.tmp")), "a killed write left its temp file"


def test_torn_metrics_line_is_dropped_on_resume(tmp_path):
    cfg = tiny_train_config(**CONFIG)
    run = tmp_path / "run"
    train_supernet(cfg, run, until_epoch=1)
    with open(run / METRICS_FILE, "a") as fh:
        fh.write('{"epoch": 2, "iteration": 16, "train_lo')  # a kill mid-append
    with pytest.warns(UserWarning, match="torn or corrupt"):
        result = train_supernet(cfg, run, resume=True)
    assert result.finished
    records = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]


def test_metrics_line_written_before_its_checkpoint(tmp_path, monkeypatch):
    """A kill between an epoch's metrics line and its checkpoint must not leave a hole in metrics.jsonl."""
    from nasforge.train import checkpoint as ckpt

    cfg = tiny_train_config(**{**CONFIG, "checkpoint_every_steps": 0})
    run = tmp_path / "run"
    real = ckpt.save_checkpoint
    calls = {"n": 0}

    def dies_at_the_second_epoch_checkpoint(directory, payload, name="last.pt"):  # type: ignore[no-untyped-def]
        calls["n"] += name == "last.pt"  # (phase-NAME.pt outputs are written too)
        if name == "last.pt" and calls["n"] == 2:
            raise KeyboardInterrupt  # the process dies right after epoch 2's metrics line
        return real(directory, payload, name)

    monkeypatch.setattr(ckpt, "save_checkpoint", dies_at_the_second_epoch_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_supernet(cfg, run)
    monkeypatch.setattr(ckpt, "save_checkpoint", real)
    assert len((run / METRICS_FILE).read_text().splitlines()) == 2  # written before the checkpoint
    train_supernet(cfg, run, resume=True)
    records = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
