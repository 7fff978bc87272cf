"""export / finetune on a real (tiny) trained run."""

import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.export import load_standalone, run_onnx
from nasforge.train.runs import load_run

runner = CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_export_onnx_with_sidecar_and_int8(tiny_run, tmp_path):
    run = load_run(tiny_run, device="cpu")
    arch = run.space.smallest()
    pareto = tmp_path / "pareto.json"
    pareto.write_text(json.dumps([{"arch": run.space.largest().to_dict()}, {"arch": arch.to_dict(), "accuracy": 1.0}]))
    out = tmp_path / "model.onnx"
    _ok(
        runner.invoke(
            app,
            [
                "export",
                "--run",
                str(tiny_run),
                "--arch",
                f"{pareto}#1",
                "--out",
                str(out),
                "--quantize",
                "int8",
                "--calib-images",
                "32",
                "--target",
                "",
            ],
        )
    )
    onnx.checker.check_model(onnx.load(str(out)))
    side = json.loads((tmp_path / "model.onnx.json").read_text())
    assert side["arch"] == arch.to_dict() and side["input"]["shape"] == [1, 3, arch.resolution, arch.resolution]
    assert side["macs"] == run.space.macs(arch) and side["params"] == run.space.params(arch)
    assert side["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    assert side["accuracy"]["source"] == "measured" and 0 <= side["accuracy"]["test_top1"] <= 100
    assert len(side["class_names"]) == 10 and len(side["input"]["mean"]) == 3
    q = side["int8"]
    assert 0 <= q["int8_test_top1"] <= 100 and abs(q["fp32_test_top1"] - side["accuracy"]["test_top1"]) < 1e-6
    # the exported model reproduces the PyTorch subnet (BN recalibrated) on real test images
    from nasforge.export.pipeline import normalized_images, prepare_from_run

    prepared = prepare_from_run(run, arch)
    x = normalized_images(prepared.data, "test", arch.resolution, limit=1)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(out, x), prepared.subnet(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_finetune_then_export_torch_rebuilds(tiny_run, tmp_path):
    run = load_run(tiny_run, device="cpu")
    arch = run.space.smallest()
    ckpt = tmp_path / "ft.pt"
    _ok(
        runner.invoke(
            app,
            [
                "finetune",
                "--run",
                str(tiny_run),
                "--arch",
                arch.to_json(),
                "--epochs",
                "1",
                "--kd",
                "--out",
                str(ckpt),
                "--device",
                "cpu",
            ],
        )
    )
    subnet, space, extra = load_standalone(ckpt)
    assert subnet.arch == arch and extra["kd"] is True and set(extra["after"]) == {"val", "test"}
    evaluated = runner.invoke(app, ["evaluate", "--checkpoint", str(ckpt), "--json", "--device", "cpu"])
    _ok(evaluated)
    scores = json.loads(evaluated.output.strip().splitlines()[-1])
    assert scores["test_top1"] == pytest.approx(extra["after"]["test"]) and scores["val_top1"] == pytest.approx(
        extra["after"]["val"]
    )
    out = tmp_path / "ft-export.onnx"
    _ok(runner.invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(out), "--target", ""]))
    side = json.loads((tmp_path / "ft-export.onnx.json").read_text())
    assert side["provenance"]["checkpoint"] == str(ckpt)
    out_pt = tmp_path / "sub.pt"
    _ok(
        runner.invoke(
            app,
            [
                "export",
                "--run",
                str(tiny_run),
                "--arch",
                arch.to_json(),
                "--out",
                str(out_pt),
                "--format",
                "torch",
                "--target",
                "",
            ],
        )
    )
    rebuilt, _, extra2 = load_standalone(out_pt)
    from nasforge.export.pipeline import prepare_from_run

    ref = prepare_from_run(run, arch).subnet
    xb = torch.randn(2, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(xb), ref(xb), atol=0, rtol=0)
    assert extra2["sidecar"]["arch"] == arch.to_dict()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", '{"resolution": 999, "depths": [1, 1, 1]}'], "resolution 999"),
        (["--arch", "PARETO#99"], "has 2 entries"),
        ([], "exactly one of --arch"),
    ],
)
def test_export_user_errors_exit_2(tiny_run, tmp_path, args, message):
    run = load_run(tiny_run, device="cpu")
    pareto = tmp_path / "pareto.json"
    pareto.write_text(json.dumps([{"arch": run.space.largest().to_dict()}, {"arch": run.space.smallest().to_dict()}]))
    args = [a.replace("PARETO", str(pareto)) for a in args]
    result = runner.invoke(app, ["export", "--run", str(tiny_run), "--out", str(tmp_path / "m.onnx"), *args])
    assert message in _one_line_error(result)


def test_export_arch_from_another_space_exits_2(tiny_run, tmp_path):
    from nasforge.space import load_space

    other = load_space("mobilenetv3-ofa").largest().to_json()
    result = runner.invoke(app, ["export", "--run", str(tiny_run), "--arch", other, "--out", str(tmp_path / "m.onnx")])
    assert "resolution 224" in _one_line_error(result)
