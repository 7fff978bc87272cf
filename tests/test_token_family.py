"""The one-file family (`nasforge/testing/token_family.py`) goes through the whole pipeline with no edit to the
core: sample, train, latency table (profiled, calibrated), accuracy predictor, search, ONNX export.

The conformance suites run on it too (its `example_space`); this file checks what they do not: that every
stage's command takes a space of a family nasforge's core has never heard of.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import yaml
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import LatencyTable
from nasforge.space import load_space
from nasforge.testing.token_family import EXAMPLE_SPACE
from nasforge.testing.train import tiny_train_config
from nasforge.train import train_supernet

runner = CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenmix")
    space_file = root / "tokenmix.yaml"
    space_file.write_text(yaml.safe_dump(EXAMPLE_SPACE))
    run = root / "run"
    result = train_supernet(tiny_train_config(space=str(space_file), epochs=2, schedule__name="sandwich"), run)
    return root, space_file, run, result


def test_space_samples_new_gene_groups_and_token_shapes(pipeline):
    _, space_file, _, _ = pipeline
    space = load_space(space_file)
    arch = space.sample(np.random.default_rng(0))
    assert set(arch.fields) == {"depths", "heads", "mlp_ratios"}
    assert space.decode(space.encode(arch)) == arch
    shapes = {spec.kind: spec.input_shape for spec in space.layers(space.largest())}
    assert shapes["attention"] == (9, 16) and shapes["token_head"] == (9, 16)  # (tokens, dim): 24 px / 8 px patches


def test_training_runs_and_moves_the_weights(pipeline):
    _, space_file, run, result = pipeline
    assert result.finished and len(result.metrics) == 2
    assert all(np.isfinite(m["train_loss"]) for m in result.metrics)
    fresh = load_space(space_file).family.supernet(load_space(space_file).with_options(num_classes=10))
    moved = result.supernet.state_dict()["blocks.0.block.qkv.weight"]
    assert not torch.equal(moved.cpu(), fresh.state_dict()["blocks.0.block.qkv.weight"])


def test_latency_table_profiles_every_block_and_predicts(pipeline):
    root, space_file, _, _ = pipeline
    lut = root / "lut.json"
    _ok(runner.invoke(app, ["profile", "--target", "cpu", "--space", str(space_file), "--out", str(lut),
                            "--validate", "10", "--repeats", "6", "--warmup", "1", "--threads", "1"]))
    table = LatencyTable.load(lut)
    space = load_space(space_file)
    assert set(table.entries) == {s.key for s in distinct_layers(space)}
    assert any(key.startswith("attention_") for key in table.entries)
    res = _ok(runner.invoke(app, ["latency", "--target", "cpu", "--space", str(space_file), "--lut", str(lut),
                                  "--arch", space.largest().to_json(), "--json"]))
    assert json.loads(res.output)["latency_ms"] > 0


def test_predictor_search_and_onnx_export(pipeline):
    root, space_file, run, _ = pipeline
    lut = root / "lut.json"
    if not lut.exists():
        pytest.skip("needs the table of test_latency_table_profiles_every_block_and_predicts")
    _ok(runner.invoke(app, ["build-predictor", "--run", str(run), "--samples", "40", "--model", "ridge",
                            "--calib-images", "32"]))
    space = load_space(space_file)
    bound = (space.macs(space.smallest()) + space.macs(space.largest())) // 2
    out = root / "search"
    _ok(runner.invoke(app, ["search", "--run", str(run), "--target", "cpu", "--lut", str(lut), "--budget", "300",
                            "--objectives", "accuracy,latency", "--constraint", f"macs<={bound}", "--out", str(out)]))
    front = json.loads((out / "pareto.json").read_text())
    assert front and all(space.macs(space.parse_arch(e["arch"])) <= bound for e in front)
    model = root / "model.onnx"
    _ok(runner.invoke(app, ["export", "--run", str(run), "--arch", f"{out / 'pareto.json'}#0", "--out", str(model),
                            "--target", "", "--calib-images", "32"]))
    onnx.checker.check_model(onnx.load(str(model)))
    side = json.loads((root / "model.onnx.json").read_text())
    assert side["onnx"]["max_abs_diff_vs_torch"] <= 1e-4 and side["arch"] == front[0]["arch"]
