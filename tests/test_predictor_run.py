"""Against a real tiny trained run of the trainer (`nasforge.train`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.predictors import load_run_predictor


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import torch

    from nasforge.testing.train import tiny_train_config
    from nasforge.train import train_supernet

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("run") / "tiny"
    train_supernet(tiny_train_config(epochs=1), run)
    return run


def test_evaluate_and_build_predictor_on_a_tiny_run(tiny_run):
    from nasforge.train.runs import load_run

    runner = CliRunner()
    r = load_run(tiny_run, device="cpu")
    arch = r.space.largest()
    res = runner.invoke(app, ["evaluate", "--run", str(tiny_run), "--arch", arch.to_json(), "--json",
                              "--calib-images", "64", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for split in ("val", "test"):
        assert 0.0 <= out[f"{split}_top1"] <= 100.0
    args = ["build-predictor", "--run", str(tiny_run), "--samples", "24", "--model", "ridge",
            "--calib-images", "64", "--device", "cpu", "--measure-batch", "8"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    pred = load_run_predictor(r)
    assert pred.metadata["checkpoint_sha256"] == r.checkpoint_sha256 and pred.metadata["dataset"] == "digits"
    y = pred.predict(r.space.features(r.space.sample_many(np.random.default_rng(0), 100)))
    assert y.shape == (100,) and np.all(np.isfinite(y))
    lines = (tiny_run / "measurements" / "val.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 24
    accs = [json.loads(line)["accuracy"] for line in lines[1:]]
    assert all(0.0 <= a <= 100.0 for a in accs)
    # Re-running measures nothing new: the store already holds all 24.
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and len((tiny_run / "measurements" / "val.jsonl").read_text().splitlines()) == 25
