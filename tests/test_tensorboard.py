"""TensorBoard logging (`TensorBoardLog`): event files read back with tensorboard's own reader; resume without
duplicate steps; the missing package is one line and exit code 2."""

import json
import os
import re
import sys

import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.errors import MissingDependencyError
from nasforge.testing.train import tiny_train_config
from nasforge.train import train_supernet
from nasforge.train.callbacks import read_metrics

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

runner = CliRunner()
STEP_TAGS = {"train/loss", "train/acc", "train/lr", "train/epsilon"}


def _events(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


def _age_event_files(log_dir, seconds=100):
    """Rename the event files as if written `seconds` earlier: a real resume starts seconds or hours later, and
    TensorBoard orders a folder's files by the time in their names (a test's resume may fall in the same second)."""
    for name in os.listdir(log_dir):
        m = re.fullmatch(r"(events\.out\.tfevents\.)(\d+)(\..*)", name)
        assert m, name
        os.rename(log_dir / name, log_dir / f"{m[1]}{int(m[2]) - seconds:010d}{m[3]}")


def test_event_files_hold_every_step_and_epoch(tmp_path):
    tb = tmp_path / "tb"
    cfg = tiny_train_config(schedule__name="delayed", epochs=2, logging__tensorboard=str(tb))
    result = train_supernet(cfg, tmp_path / "run")
    spe = result.metrics[0]["iteration"]
    total = 2 * spe
    acc = _events(tb)
    tags = set(acc.Tags()["scalars"])
    assert STEP_TAGS <= tags
    for tag in STEP_TAGS:
        assert _steps(acc, tag) == list(range(1, total + 1)), tag
    # the per-step losses average to the epoch's logged loss; LR and epsilon follow the schedule
    losses = [e.value for e in acc.Scalars("train/loss")]
    for record, chunk in zip(result.metrics, (losses[:spe], losses[spe:])):
        assert sum(chunk) / len(chunk) == pytest.approx(record["train_loss"], rel=1e-5)
    assert acc.Scalars("train/lr")[-1].value == pytest.approx(result.metrics[-1]["lr"], rel=1e-6)
    from nasforge.space import load_space
    from nasforge.train.schedules import make_strategy

    strategy = make_strategy(cfg, load_space(cfg.space), spe)
    assert [e.value for e in acc.Scalars("train/epsilon")] == pytest.approx(
        [strategy.epsilon(i) for i in range(total)], abs=1e-6)
    # per epoch: every evaluated subnet, images/s; logged at the epoch's last iteration
    evals = {f"eval/{k}" for k in result.metrics[0]["eval"]}
    assert evals == {"eval/largest", "eval/smallest", "eval/random0"} and evals <= tags
    for tag in (*evals, "epoch/images_per_s", "epoch/train_loss"):
        assert _steps(acc, tag) == [spe, total], tag
    assert acc.Scalars("eval/largest")[-1].value == pytest.approx(result.metrics[-1]["eval"]["largest"], rel=1e-6)
    # phase changes: delayed runs "full", then "eps-warmup" (and maybe "shrink"), one entry each
    phases = [p.name for p in strategy.phases]
    assert [e.value for e in acc.Scalars("train/phase_index")] == list(range(len(phases)))
    assert _steps(acc, "train/phase_index") == [p.start + 1 for p in strategy.phases]
    assert len(acc.Tensors("phase/text_summary")) == len(phases)


def test_resumed_run_appends_without_duplicate_steps(tmp_path):
    tb = tmp_path / "tb"
    cfg = tiny_train_config(schedule__name="delayed", epochs=3, logging__tensorboard=str(tb))
    run = tmp_path / "run"
    train_supernet(cfg, run, until_epoch=1)
    _age_event_files(tb, 100)
    ckpt = run / "checkpoints" / "last.pt"
    after_epoch1 = ckpt.read_bytes()
    # the run went on past its checkpoint and was killed: epoch 2 is logged, its checkpoint lost
    train_supernet(cfg, run, resume=True, until_epoch=2)
    ckpt.write_bytes(after_epoch1)
    _age_event_files(tb, 100)
    spe = read_metrics(run / "metrics.jsonl")[0]["iteration"]
    assert _steps(_events(tb), "train/loss") == list(range(1, 2 * spe + 1))
    result = train_supernet(cfg, run, resume=True)
    assert result.finished
    acc = _events(tb)
    for tag in STEP_TAGS:
        assert _steps(acc, tag) == list(range(1, 3 * spe + 1)), tag
    for tag in ("eval/largest", "epoch/images_per_s"):
        assert _steps(acc, tag) == [spe, 2 * spe, 3 * spe], tag
    # the replayed epoch 2 was logged once, with the resumed run's values (the metrics log's)
    metrics = read_metrics(run / "metrics.jsonl")
    assert [e.value for e in acc.Scalars("eval/largest")] == pytest.approx([m["eval"]["largest"] for m in metrics])


def test_missing_tensorboard_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    with pytest.raises(MissingDependencyError, match="pip install 'nasforge\\[tensorboard\\]'"):
        train_supernet(tiny_train_config(logging__tensorboard=str(tmp_path / "tb")), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before any work
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(json.dumps(tiny_train_config().to_dict()))
    result = runner.invoke(app, ["train-supernet", "--config", str(cfg_file), "--out", str(tmp_path / "cli"),
                                 "--tensorboard", str(tmp_path / "tb"), "--quiet"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: logging to TensorBoard"), result.output


def test_yaml_logging_tensorboard_and_flag_agree(tmp_path):
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(json.dumps({**tiny_train_config(epochs=1).to_dict(), "logging": {"tensorboard": str(
        tmp_path / "from-yaml")}}))
    result = runner.invoke(app, ["train-supernet", "--config", str(cfg_file), "--out", str(tmp_path / "a"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "train/loss" in _events(tmp_path / "from-yaml").Tags()["scalars"]
    result = runner.invoke(app, ["train-supernet", "--config", str(cfg_file), "--out", str(tmp_path / "b"), "--quiet",
                                 "--tensorboard", str(tmp_path / "from-flag")])
    assert result.exit_code == 0, result.output
    assert "train/loss" in _events(tmp_path / "from-flag").Tags()["scalars"]
    assert len(_steps(_events(tmp_path / "from-flag"), "train/loss")) == len(
        _steps(_events(tmp_path / "from-yaml"), "train/loss"))
