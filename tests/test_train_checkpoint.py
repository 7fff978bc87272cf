"""Resume is exact; a bad or half-written checkpoint is never loaded (the previous good one is)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from nasforge.errors import CheckpointError
from nasforge.testing.train import tiny_train_config
from nasforge.train import checkpoint as ckpt
from nasforge.train import train_supernet

torch.set_num_threads(1)


def _max_diff(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].numel())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cfg = tiny_train_config(schedule__name="delayed", epochs=3, schedule__shrink_fraction=0.4,
                            schedule__eps_window_epochs=0.5, checkpoint_every_steps=3)
    run = tmp_path_factory.mktemp("ref") / "run"
    return cfg, train_supernet(cfg, run)


def test_interrupted_and_resumed_equals_uninterrupted(reference, tmp_path):
    cfg, full = reference
    run = tmp_path / "run"
    first = train_supernet(cfg, run, until_epoch=1)
    assert not first.finished and len(first.metrics) == 1
    resumed = train_supernet(cfg, run, resume=True)
    assert resumed.finished
    assert _max_diff(full.supernet, resumed.supernet) <= 1e-6
    logged = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    assert len(logged) == 3


def test_corrupt_last_falls_back_to_prev_mid_epoch(reference, tmp_path):
    """last.pt garbage -> prev.pt (a mid-epoch checkpoint) is used, and the result is still exact."""
    cfg, full = reference
    run = tmp_path / "run"
    train_supernet(cfg, run, until_epoch=1)  # 8 steps/epoch: ckpts at 3, 6, then 8 (last)
    prev = torch.load(run / "checkpoints" / "prev.pt", weights_only=True)
    assert prev["iteration"] == 6
    (run / "checkpoints" / "last.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.warns(UserWarning, match="skipping"):
        state, path = ckpt.load_latest(run / "checkpoints")
    assert path.name == "prev.pt" and state["iteration"] == 6
    with pytest.warns(UserWarning):
        resumed = train_supernet(cfg, run, resume=True)
    assert _max_diff(full.supernet, resumed.supernet) <= 1e-6


def test_truncated_checkpoint_is_rejected(reference, tmp_path):
    cfg, _ = reference
    src = tmp_path / "ck"
    train_supernet(cfg, tmp_path / "run", until_epoch=1)
    shutil.copytree(tmp_path / "run" / "checkpoints", src)
    data = (src / "last.pt").read_bytes()
    (src / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        ckpt.read_checkpoint(src / "last.pt")
    with pytest.warns(UserWarning):
        state, path = ckpt.load_latest(src)
    assert path.name == "prev.pt"
    (src / "prev.pt").unlink()
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no usable checkpoint"):
        ckpt.load_latest(src)


def test_write_killed_midway_never_replaces_the_good_checkpoint(tmp_path, monkeypatch):
    good = {"model": {"w": torch.ones(3)}, "optimizer": {}, "scheduler": {}, "phase": "p", "epoch": 1, "step": 0,
            "iteration": 10, "rng": ckpt.rng_state(), "space_fingerprint": "abc"}
    ckpt.save_checkpoint(tmp_path, good)

    real_fsync = os.fsync

    def crash(fd):  # the process dies after half the bytes reached the temp file
        real_fsync(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr("nasforge.io.os.fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, {**good, "iteration": 20})
    monkeypatch.undo()
    state, path = ckpt.load_latest(tmp_path)
    assert state["iteration"] == 10 and path.name == "prev.pt"
    # a stray temp file from a SIGKILLed writer is ignored as well
    (tmp_path / ".last.pt.abc.tmp").write_bytes(b"half")
    state, _ = ckpt.load_latest(tmp_path)
    assert state["iteration"] == 10


def test_resume_rejects_other_space(reference, tmp_path):
    cfg, _ = reference
    train_supernet(cfg, tmp_path / "run", until_epoch=1)
    with pytest.raises(CheckpointError, match="is for space"):
        ckpt.load_latest(tmp_path / "run" / "checkpoints", fingerprint="0000")


def test_fresh_run_refuses_existing_run_dir(reference, tmp_path):
    from nasforge.errors import ConfigError

    cfg, _ = reference
    train_supernet(cfg, tmp_path / "run", until_epoch=1)
    with pytest.raises(ConfigError, match="--resume"):
        train_supernet(cfg, tmp_path / "run")


def test_progressive_resume_across_teacher_freeze_is_exact(tmp_path):
    from nasforge.train.config import PhaseConfig

    phases = (
        PhaseConfig("full", 1, 1.0, 1, False, {"resolution": "all"}),
        PhaseConfig("kernel", 1, 0.5, 1, True, {"resolution": "all", "kernel": "all"}),
        PhaseConfig("depth", 1, 0.5, 2, True, {"resolution": "all", "kernel": "all", "depth": "all"}),
    )
    cfg = tiny_train_config(schedule__name="progressive", epochs=3, schedule__phases=phases,
                            data__train_limit=64)
    full = train_supernet(cfg, tmp_path / "a")
    train_supernet(cfg, tmp_path / "b", until_epoch=2)
    state = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert state["phase"] == "kernel" and state["teacher"] is not None
    resumed = train_supernet(cfg, tmp_path / "b", resume=True)
    assert _max_diff(full.supernet, resumed.supernet) <= 1e-6
