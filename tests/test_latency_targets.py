"""Targets from YAML, roofline values on a known layer, and the CLI's one-line errors."""

from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.errors import LatencyError
from nasforge.latency.model import RooflineLatencyModel, load_latency_model, roofline_ms
from nasforge.latency.targets import list_targets, load_target
from nasforge.layers import LayerSpec
from nasforge.space import load_space
from nasforge.testing import TINY_SPACES_DIR

runner = CliRunner()
TINY = str(TINY_SPACES_DIR / "tiny-mbv3.yaml")


@pytest.mark.parametrize("name", ["cpu", "gpu", "jetson", "rpi5"])
def test_shipped_targets_load_with_sources(name):
    t = load_target(name)
    assert t.peak_flops > 0 and t.bandwidth > 0 and 0 < t.efficiency <= 1
    assert t.sources and t.calibration.get("reference")
    assert name in list_targets()


def test_roofline_on_a_known_layer(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("name: toy\npeak_flops: 1.0e+9\nbandwidth: 1.0e+8\nefficiency: 0.5\nper_layer_overhead_ms: 0.1\n")
    t = load_target(path)
    # 3x3 conv 3->8 at 16x16, stride 1: MACs = 16*16*8*3*9 = 55296 -> 110592 FLOPs -> 0.221184 ms at 0.5 GFLOP/s
    # bytes = 4 * (3*256 + 8*256 + params(3*8*9 + 16 = 232)) = 4 * 3048 = 12192 -> 0.24384 ms at 50 MB/s (memory-bound)
    spec = LayerSpec("conv", 3, 8, 16, 3, 1)
    assert roofline_ms(spec, t) == pytest.approx(0.24384 + 0.1)
    path.write_text("name: toy\npeak_flops: 1.0e+9\nbandwidth: 1.0e+10\nefficiency: 0.5\n")
    assert roofline_ms(spec, load_target(path)) == pytest.approx(0.221184)  # compute-bound, no overhead


def test_estimate_is_marked_and_warns_with_the_measuring_command():
    space = load_space("mobilenetv3-ofa-cifar")
    with pytest.warns(UserWarning, match="nasforge profile --target jetson --space mobilenetv3-ofa-cifar"):
        model = load_latency_model("jetson", space)
    assert isinstance(model, RooflineLatencyModel) and model.source == "estimated"
    small, large = model.predict([space.smallest(), space.largest()])
    assert 0 < small < large


def test_shipped_cpu_table_is_found_and_labelled_with_its_machine():
    from nasforge.latency.lut import machine_differences

    space = load_space("mobilenetv3-ofa-cifar")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_latency_model("cpu", space)
    meta = model.table.metadata
    here = not machine_differences(model.table.machine)
    assert model.source == ("measured" if here else f"measured on {meta['device']}")
    assert meta["space_fingerprint"] == space.fingerprint and "validation" in meta and "calibration" in meta
    assert model.predict([space.smallest()])[0] < model.predict([space.largest()])[0]


def test_latency_command_marks_estimates():
    arch = json.dumps(load_space(TINY).smallest().to_dict())
    result = runner.invoke(app, ["latency", "--target", "rpi5", "--space", TINY, "--arch", arch])
    assert result.exit_code == 0, result.output
    assert "estimated" in result.output and "nasforge profile --target rpi5" in result.output
    result = runner.invoke(app, ["latency", "--target", "rpi5", "--space", TINY, "--arch", arch, "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["source"] == "estimated" and got["table"] is None and not got["calibrated"]


def test_targets_command_lists_targets_and_validation():
    result = runner.invoke(app, ["targets"])
    assert result.exit_code == 0, result.output
    for name in ("cpu", "gpu", "jetson", "rpi5"):
        assert name in result.output


def _one_line_exit_2(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_bad_target_name_exits_2_with_one_line():
    line = _one_line_exit_2(
        ["latency", "--target", "nope", "--space", TINY, "--arch", json.dumps(load_space(TINY).smallest().to_dict())]
    )
    assert "unknown target 'nope'" in line and "jetson" in line


@pytest.mark.parametrize(
    "text, needle",
    [
        ("name: bad\npeak_flops: [\n", "not valid YAML"),
        ("name: bad\npeak_flops: -1\nbandwidth: 1\nefficiency: 0.5\n", "peak_flops"),
        ("name: bad\npeak_flops: 1\nbandwidth: 1\nefficiency: 3\n", "efficiency"),
        ("name: bad\nprovider: FooEP\npeak_flops: 1\nbandwidth: 1\nefficiency: 0.5\n", "provider"),
        ("- just a list\n", "mapping"),
    ],
)
def test_malformed_target_yaml_exits_2_with_one_line(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LatencyError):
        load_target(path)
    line = _one_line_exit_2(["profile", "--target", str(path), "--space", TINY, "--out", str(tmp_path / "x.json")])
    assert needle in line


def test_missing_lut_file_and_wrong_space_exit_2(tmp_path):
    line = _one_line_exit_2(
        [
            "latency",
            "--target",
            "cpu",
            "--space",
            TINY,
            "--arch",
            json.dumps(load_space(TINY).smallest().to_dict()),
            "--lut",
            str(tmp_path / "none.json"),
        ]
    )
    assert "cannot read latency table" in line
    line = _one_line_exit_2(
        [
            "latency",
            "--target",
            "cpu",
            "--space",
            TINY,
            "--arch",
            json.dumps(load_space(TINY).smallest().to_dict()),
            "--lut",
            "predictors/latency/cpu__mobilenetv3-ofa-cifar.json",
        ]
    )
    assert "built for space" in line


def test_gpu_target_without_cuda_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    line = _one_line_exit_2(["profile", "--target", "gpu", "--space", TINY, "--out", str(tmp_path / "g.json")])
    assert "CUDAExecutionProvider" in line
