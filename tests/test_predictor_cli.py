"""`nasforge evaluate` and `nasforge build-predictor` wired to a fake run (the real trainer lives on another branch)."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.errors import CheckpointError, PredictorMismatchError
from nasforge.predictors import AccuracyPredictor, find_run_predictor, load_predictor, load_run_predictor
from nasforge.space import SearchSpace
from nasforge.testing import tiny_space
from nasforge.testing.synthetic import SyntheticAccuracy


@dataclass
class FakeConfig:
    dataset: str = "cifar10"
    eval: types.SimpleNamespace = field(default_factory=lambda: types.SimpleNamespace(calib_images=2000))


@dataclass
class FakeRun:
    path: Path
    config: FakeConfig
    space: SearchSpace
    checkpoint_sha256: str
    device: str = "cpu"


@pytest.fixture
def fake_runs(monkeypatch, tmp_path):
    """Stand-ins for `nasforge.train.runs.load_run` / `evaluate_subnets` that count measurements."""
    space = tiny_space("tiny-mbv3")
    fn = SyntheticAccuracy(space, seed=0)
    calls = {"archs": 0, "splits": []}
    (tmp_path / "run").mkdir()

    def load_run(run_dir, device="auto"):
        if not Path(run_dir).is_dir():
            raise CheckpointError(f"{run_dir}: no such run")
        return FakeRun(Path(run_dir), FakeConfig(), space, "d" * 64)

    def evaluate_subnets(run, archs, split="val", *, calib_images=2000, batch_size=256):
        calls["archs"] += len(archs)
        calls["splits"].append(split)
        acc = fn(list(archs))
        return acc if split == "val" else acc - 1.0

    runs = types.ModuleType("nasforge.train.runs")
    runs.load_run, runs.evaluate_subnets = load_run, evaluate_subnets
    train = types.ModuleType("nasforge.train")
    train.runs = runs
    monkeypatch.setitem(sys.modules, "nasforge.train", train)
    monkeypatch.setitem(sys.modules, "nasforge.train.runs", runs)
    return types.SimpleNamespace(space=space, fn=fn, calls=calls, run=tmp_path / "run")


runner = CliRunner()


def _one_line_error(result):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_evaluate_prints_val_and_test(fake_runs):
    arch = fake_runs.space.largest()
    res = runner.invoke(app, ["evaluate", "--run", str(fake_runs.run), "--arch", arch.to_json(), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    expected = float(fake_runs.fn([arch])[0])
    assert out["val_top1"] == pytest.approx(expected) and out["test_top1"] == pytest.approx(expected - 1)
    assert out["arch"] == arch.to_dict() and out["macs"] == fake_runs.space.macs(arch)
    assert fake_runs.calls["splits"] == ["val", "test"]
    res = runner.invoke(app, ["evaluate", "--run", str(fake_runs.run), "--arch", arch.to_json(), "--split", "test"])
    assert res.exit_code == 0 and "test" in res.output and "val" not in res.output.replace(arch.key, "")


def test_evaluate_file_index(fake_runs, tmp_path):
    archs = [fake_runs.space.smallest(), fake_runs.space.largest()]
    f = tmp_path / "archs.json"
    f.write_text(json.dumps([a.to_dict() for a in archs]))
    res = runner.invoke(app, ["evaluate", "--run", str(fake_runs.run), "--arch", f"{f}#1", "--json", "--split", "val"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["arch"] == archs[1].to_dict()
    line = _one_line_error(runner.invoke(app, ["evaluate", "--run", str(fake_runs.run), "--arch", f"{f}#99"]))
    assert "2 entries" in line


def test_evaluate_bad_arch_is_one_line_exit_2(fake_runs):
    _one_line_error(runner.invoke(app, ["evaluate", "--run", str(fake_runs.run), "--arch", '{"resolution": 16']))
    bad = {"resolution": 999, "depths": [1, 1, 1]}
    line = _one_line_error(runner.invoke(app, ["evaluate", "--run", str(fake_runs.run), "--arch", json.dumps(bad)]))
    assert "resolution 999" in line
    _one_line_error(runner.invoke(app, ["evaluate", "--run", str(fake_runs.run), "--arch", "{}", "--split", "x"]))
    assert fake_runs.calls["archs"] == 0


def test_build_predictor_cli_saves_and_resumes(fake_runs):
    args = [
        "build-predictor",
        "--run",
        str(fake_runs.run),
        "--samples",
        "120",
        "--model",
        "ridge",
        "--measure-batch",
        "16",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert fake_runs.calls["archs"] == 120
    assert set(fake_runs.calls["splits"]) == {"val"}
    pred = load_predictor(find_run_predictor(fake_runs.run), fake_runs.space, checkpoint_sha256="d" * 64)
    assert pred.metadata["dataset"] == "cifar10" and pred.metadata["num_measurements"] == 120
    assert pred.metadata["metrics"]["num_holdout"] == 24
    assert f"{pred.metadata['metrics']['kendall_tau']:.3f}" in res.output  # the printed table
    x = fake_runs.space.features(fake_runs.space.sample_many(np.random.default_rng(0), 10))
    assert pred.predict(x).shape == (10,)
    # The second run re-uses the cache: nothing is measured again, even for another model.
    res = runner.invoke(app, [*args[:-4], "--model", "gbm", "--out", str(fake_runs.run / "gbm")])
    assert res.exit_code == 0, res.output
    assert fake_runs.calls["archs"] == 120
    assert load_predictor(fake_runs.run / "gbm", fake_runs.space).metadata["model"] == "gbm"
    # Measurements taken with another BN-calibration budget are not mixed into the cache.
    line = _one_line_error(runner.invoke(app, [*args, "--calib-images", "500"]))
    assert "protocol" in line and "--store" in line and fake_runs.calls["archs"] == 120
    res = runner.invoke(
        app,
        [
            *args,
            "--calib-images",
            "500",
            "--store",
            str(fake_runs.run / "m500.jsonl"),
            "--out",
            str(fake_runs.run / "p500"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert fake_runs.calls["archs"] == 240
    # The run-aware loader checks the checkpoint too: a predictor from another supernet is refused.
    run = FakeRun(fake_runs.run, FakeConfig(), fake_runs.space, "d" * 64)
    assert isinstance(load_run_predictor(run), AccuracyPredictor)
    retrained = FakeRun(fake_runs.run, FakeConfig(), fake_runs.space, "e" * 64)
    with pytest.raises(PredictorMismatchError, match="supernet checkpoint"):
        load_run_predictor(retrained, fake_runs.run / "gbm")


def test_build_predictor_bad_flags(fake_runs):
    line = _one_line_error(runner.invoke(app, ["build-predictor", "--run", str(fake_runs.run), "--model", "xgb"]))
    assert "--model must be one of" in line
    _one_line_error(runner.invoke(app, ["build-predictor", "--run", str(fake_runs.run), "--samples", "2"]))
    _one_line_error(runner.invoke(app, ["build-predictor", "--run", str(fake_runs.run / "missing")]))
    assert fake_runs.calls["archs"] == 0
