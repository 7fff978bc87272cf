"""`nasforge train-supernet` / `train-subnet`: bad configs exit 2 with one line; a tiny run end to end."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.testing import TINY_SPACES_DIR
from nasforge.testing.train import top1_by_hand
from nasforge.train import train_supernet
from nasforge.train.config import EvalConfig, load_config
from nasforge.train.runs import evaluate_subnets, load_run

torch.set_num_threads(1)
TINY = str(TINY_SPACES_DIR / "tiny-mbv3.yaml")


def _fails_with_one_line(args, needle):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--schedule", "cosmic"], "unknown schedule 'cosmic'"),
        (["--epochs", "-3"], "field 'epochs': expected a positive integer"),
        (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["--dataset", "cifar10", "--data-dir", "/no/such/dir"], "cifar-10-batches-py"),
        (["--dataset", "cifar10"], "needs --data-dir"),
        (["--dataset", "imagefolder", "--data-dir", "/no/such/dir"], "no train/ folder"),
        (["--device", "tpu"], "field 'device': expected one of"),
        (["--space", "no-such-space"], "unknown search space"),
        (["--resume"], "--resume needs --out"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args, needle):
    _fails_with_one_line(["train-supernet", "--quiet", *args], needle)


def test_bad_config_files_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule: {name: sandwich, bogus_key: 1}\n")
    _fails_with_one_line(["train-supernet", "--config", str(bad)], "unknown key(s) ['bogus_key']")
    bad.write_text("epochs: -1\n")
    _fails_with_one_line(["train-supernet", "--config", str(bad)], "field 'epochs': expected a positive integer")
    bad.write_text("epochs: [1\n")
    _fails_with_one_line(["train-supernet", "--config", str(bad)], "not valid YAML")
    bad.write_text("optim: {lr: fast}\n")
    _fails_with_one_line(["train-supernet", "--config", str(bad)], "field 'optim.lr': expected a number")
    _fails_with_one_line(["train-supernet", "--config", str(tmp_path / "missing.yaml")], "cannot read config")


def test_shipped_configs_load():
    for name in ("default", "sandwich", "delayed", "progressive"):
        cfg = load_config(f"configs/train/{name}.yaml")
        assert cfg.data.dataset == "digits"
    assert load_config("configs/train/progressive.yaml").schedule.phases[2].elastic["depth"] == 2
    assert load_config("configs/train/delayed.yaml").schedule.shrink_fraction == 0.5


def _tiny_config(tmp_path, **extra):
    raw = {"space": TINY, "epochs": 2, "device": "cpu",
           "data": {"train_limit": 96, "batch_size": 16},
           "optim": {"lr": 0.2, "label_smoothing": 0.0},
           "eval": {"calib_images": 64, "max_images": 64, "random_subnets": 1}, **extra}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_train_supernet_cli_end_to_end_and_resume(tmp_path):
    config = _tiny_config(tmp_path)
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["train-supernet", "--config", str(config), "--schedule", "sandwich",
                                 "--out", str(out), "--until-epoch", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["schedule"]["name"] == "sandwich" and saved["space"] == TINY and saved["epochs"] == 2
    # a second fresh run into the same folder is refused; --resume continues it
    _fails_with_one_line(["train-supernet", "--config", str(config), "--out", str(out), "--quiet"], "--resume")
    result = runner.invoke(app, ["train-supernet", "--out", str(out), "--resume", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    run = load_run(out, device="cpu")
    # stopped after epoch 1 and resumed by the CLI, the run ends with the weights of one that never stopped
    straight = train_supernet(load_config(out / "config.yaml"), tmp_path / "straight").supernet.state_dict()
    assert [k for k, v in run.supernet.state_dict().items() if not torch.equal(v, straight[k])] == []
    # the Run API measures the split it is asked for: the test split's top-1, recomputed by hand
    archs = [run.space.largest(), run.space.smallest()]
    accs = evaluate_subnets(run, archs, "test", calib_images=64)
    by_hand = [top1_by_hand(run, a, EvalConfig(calib_images=64), split="test") for a in archs]
    assert accs.tolist() == pytest.approx(by_hand, abs=1e-9)
    assert len(run.checkpoint_sha256) == 64


def test_train_subnet_cli_trains_one_arch(tmp_path):
    from nasforge.testing import tiny_space

    config = _tiny_config(tmp_path)
    arch = tiny_space().smallest()
    out = tmp_path / "sub"
    result = CliRunner().invoke(app, ["train-subnet", "--arch", arch.to_json(), "--config", str(config),
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert set(lines[-1]["eval"]) == {"subnet"} and lines[-1]["phase"] == "standalone"
    bad = {"resolution": 99, "depths": [1, 1, 1]}
    _fails_with_one_line(["train-subnet", "--arch", json.dumps(bad), "--config", str(config), "--out",
                          str(tmp_path / "x")], "resolution 99")
