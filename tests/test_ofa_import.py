"""From Once-for-All's published files to nasforge runs and back: import-ofa, search, export, evaluate, --init.

OFA's files are stood in for by OFA's own classes with random weights (nasforge.testing.ofa), saved as OFA saves
them; the dataset is a 7-class ImageFolder of 40 px PNGs written here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import ofa.imagenet_classification.elastic_nn.networks  # noqa: F401 - the test extra: missing is an error, not a skip
import pytest
import torch
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.foreign.ofa import PUBLISHED, arch_to_ofa
from nasforge.testing.ofa import ofa_accuracy_predictor, ofa_supernet, randomize_
from nasforge.train.runs import load_run

runner = CliRunner()
W10, W12 = "ofa_mbv3_d234_e346_k357_w1.0", "ofa_mbv3_d234_e346_k357_w1.2"
CLASSES = 7


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def _ofa_net(name: str, seed: int = 0) -> torch.nn.Module:
    return randomize_(ofa_supernet(name), torch.Generator().manual_seed(seed)).eval()


@pytest.fixture(scope="module")
def ofa_file(tmp_path_factory) -> Path:
    """OFA's MobileNetV3 w1.0 supernet with random weights, as OFA's trainer saves it (a dict with state_dict)."""
    path = tmp_path_factory.mktemp("ofa") / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save({"epoch": 0, "state_dict": _ofa_net(W10).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def imported(ofa_file, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("imported") / "run"
    _ok(runner.invoke(app, ["import-ofa", str(ofa_file), "--out", str(run)]))
    return run


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """7 classes x (6 train + 2 val) 40 px PNGs; each class its own colour, so the classes are learnable."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder7")
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        colour = np.array([(c * 37) % 256, (c * 91) % 256, (c * 53 + 90) % 256])
        for split, n in (("train", 6), ("val", 2)):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(colour + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / f"class{c}" / f"{i}.png")
    return root


# ---------------------------------------------------------------------------------------- import


def test_import_writes_a_run_every_stage_loads(imported, ofa_file):
    from nasforge.foreign.ofa import nasforge_to_ofa
    from nasforge.train.checkpoint import sha256_file

    record = json.loads((imported / "import.json").read_text())
    assert record["imported"] is True and record["net"] == W10 and record["sha256"] == sha256_file(ofa_file)
    data = json.loads((imported / "data.json").read_text())
    assert data["normalization"] == {"kind": "imagenet", "mean": [0.485, 0.456, 0.406],
                                     "std": [0.229, 0.224, 0.225], "images": None}
    run = load_run(imported, device="cpu")
    assert (run.space.name, run.space.width_mult, run.space.num_classes) == ("mobilenetv3-ofa", 1.0, 1000)
    assert (run.config.space, run.config.width_mult, run.config.data.normalization) == (
        "mobilenetv3-ofa", 1.0, "imagenet")
    theirs = torch.load(ofa_file, weights_only=True)["state_dict"]
    ours = nasforge_to_ofa(run.supernet.state_dict(), run.space)
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    with pytest.raises(Exception, match="has no dataset; pass --data-dir DIR"):
        run.data()


def test_import_recognises_each_form_and_refuses_an_occupied_out(ofa_file, tmp_path):
    state = torch.load(ofa_file, weights_only=True)["state_dict"]
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{k}".replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else
                f"module.{k}": v for k, v in state.items()}, bare)  # DataParallel's prefix, the old block name
    _ok(runner.invoke(app, ["import-ofa", str(bare), "--out", str(tmp_path / "run"), "--net", W10]))
    line = _one_line_error(runner.invoke(app, ["import-ofa", str(bare), "--out", str(tmp_path / "run")]))
    assert "already holds a run; pass --force" in line
    _ok(runner.invoke(app, ["import-ofa", str(bare), "--out", str(tmp_path / "run"), "--force"]))


def test_a_checkpoint_of_another_net_or_width_is_one_line(ofa_file, tmp_path):
    line = _one_line_error(runner.invoke(app, ["import-ofa", str(ofa_file), "--out", str(tmp_path / "a"),
                                               "--net", W12]))
    assert line == (
        "error: OFA checkpoint does not fit space 'mobilenetv3-ofa' (width 1.2): first_conv.conv.weight expected "
        "[24, 3, 3, 3], got [16, 3, 3, 3]; the checkpoint looks like ofa_mbv3_d234_e346_k357_w1.0"
    )
    state = dict(torch.load(ofa_file, weights_only=True)["state_dict"])
    state["blocks.7.conv.point_linear.bn.bn.weight"] = torch.ones(3)
    torch.save(state, tmp_path / "bad.pth")
    line = _one_line_error(runner.invoke(app, ["import-ofa", str(tmp_path / "bad.pth"), "--out", str(tmp_path / "b")]))
    assert "blocks.7.conv.point_linear.bn.bn.weight expected [40], got [3]" in line
    assert not (tmp_path / "b" / "supernet.pt").exists()
    assert "not a published OFA net" in _one_line_error(
        runner.invoke(app, ["import-ofa", str(ofa_file), "--out", str(tmp_path / "c"), "--net", "nope"]))
    assert "no such checkpoint" in _one_line_error(
        runner.invoke(app, ["import-ofa", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "d")]))


# ---------------------------------------------------------------------------------------- predictor, search, export


@pytest.mark.slow
def test_import_predictor_search_export_evaluate(imported, folder, tmp_path):
    """The README's four commands, then evaluate and a recalibrated export on a dataset given with --data-dir."""
    from nasforge.predictors import load_run_predictor

    theirs = ofa_accuracy_predictor(W10, [128, 160, 192, 224])
    torch.save(theirs.state_dict(), tmp_path / "acc_predictor.pth")
    _ok(runner.invoke(app, ["import-ofa", "--predictor", str(tmp_path / "acc_predictor.pth"), "--run", str(imported)]))
    run = load_run(imported, device="cpu")
    predictor = load_run_predictor(run)  # bound to this run's space and supernet
    archs = [a for a in run.space.sample_many(np.random.default_rng(0), 200) if a.resolution in (128, 160)][:20]
    with torch.no_grad():
        expected = theirs.predict_acc([arch_to_ofa(a, run.space) for a in archs]).numpy()
    np.testing.assert_allclose(predictor.predict(run.space.features(archs)) / 100, expected, rtol=0, atol=1e-5)

    out = tmp_path / "search"
    _ok(runner.invoke(app, ["search", "--run", str(imported), "--target", "cpu", "--budget", "40",
                            "--constraint", "macs<=150M", "--out", str(out), "--seed", "1"]))
    front = json.loads((out / "pareto.json").read_text())
    assert front and all(run.space.macs(run.space.parse_arch(row["arch"])) <= 150e6 for row in front)

    model = tmp_path / "m.onnx"
    _ok(runner.invoke(app, ["export", "--run", str(imported), "--arch", f"{out / 'pareto.json'}#0", "--bn", "stored",
                            "--out", str(model), "--target", ""]))
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    assert side["accuracy"]["test_top1"] is None and side["accuracy"]["source"] == "not measured"
    assert "no dataset" in side["accuracy"]["reason"] and side["provenance"]["bn"] == "stored"
    assert side["input"]["normalization"] == "imagenet" and side["input"]["mean"] == [0.485, 0.456, 0.406]
    assert side["onnx"]["check_inputs"] == "random" and side["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    assert "round(r / 0.875)" in side["input"]["preprocess"] and side["ofa_arch"]["d"]

    small = json.dumps(arch_to_ofa(run.space.smallest(128), run.space))  # OFA's own dict form
    line = _one_line_error(runner.invoke(app, ["evaluate", "--run", str(imported), "--arch", small]))
    assert "has no dataset; pass --data-dir DIR" in line
    result = _ok(runner.invoke(app, ["evaluate", "--run", str(imported), "--arch", small, "--data-dir", str(folder),
                                     "--loader", "stream", "--split", "test", "--calib-images", "14",
                                     "--batch-size", "7", "--json", "--device", "cpu"]))
    assert 0.0 <= json.loads(result.output.strip().splitlines()[-1])["test_top1"] <= 100.0
    _ok(runner.invoke(app, ["export", "--run", str(imported), "--arch", small, "--data-dir", str(folder),
                            "--bn-images", "14", "--out", str(tmp_path / "r.onnx"), "--target", ""]))
    side = json.loads((tmp_path / "r.onnx.json").read_text())
    assert side["accuracy"]["source"] == "measured" and side["accuracy"]["test_images"] == 2 * CLASSES
    assert side["provenance"]["bn"] == "recalibrate" and side["provenance"]["bn_calibration_images"] == 14


def test_export_ofa_format_loads_strictly_in_ofas_class(imported, ofa_file, tmp_path):
    out = tmp_path / "back.pth"
    _ok(runner.invoke(app, ["export", "--run", str(imported), "--format", "ofa", "--out", str(out)]))
    obj = torch.load(out, weights_only=True)
    assert set(obj) == {"state_dict"}
    side = json.loads((tmp_path / "back.pth.json").read_text())
    assert side["ofa_class"].endswith("OFAMobileNetV3") and side["ofa_kwargs"]["n_classes"] == 1000
    fresh = ofa_supernet(W10)
    torch.nn.Module.load_state_dict(fresh, obj["state_dict"], strict=True)
    original = torch.load(ofa_file, weights_only=True)["state_dict"]
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in original.items())
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_array_equal(fresh.eval()(x).numpy(), _ofa_net(W10).eval()(x).numpy())


def test_export_ofa_format_refuses_a_space_ofa_has_no_class_for(tiny_run, tmp_path):
    line = _one_line_error(runner.invoke(app, ["export", "--run", str(tiny_run), "--format", "ofa",
                                               "--out", str(tmp_path / "x.pth")]))
    assert "has no Once-for-All class; OFA builds mobilenetv3-ofa (width 1)" in line
    assert not (tmp_path / "x.pth").exists()


def test_predictor_import_needs_an_imported_run(tiny_run, tmp_path):
    torch.save(ofa_accuracy_predictor(W10, [128, 160, 192, 224]).state_dict(), tmp_path / "p.pth")
    line = _one_line_error(runner.invoke(app, ["import-ofa", "--predictor", str(tmp_path / "p.pth"),
                                               "--run", str(tiny_run)]))
    assert "was not imported from Once-for-All" in line


# ---------------------------------------------------------------------------------------- transfer (--init)


def test_init_from_an_ofa_checkpoint_keeps_all_but_the_classifier(ofa_file):
    from nasforge.space import load_space
    from nasforge.supernet import build_supernet
    from nasforge.train.transfer import init_supernet_, read_init

    source = read_init(ofa_file)
    assert (source.kind, source.space_ref, source.space.width_mult) == ("ofa", "mobilenetv3-ofa", 1.0)
    net = build_supernet(load_space("mobilenetv3-ofa").with_options(num_classes=CLASSES))
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    head = init_supernet_(net, source)
    assert head == ["head.classifier.bias", "head.classifier.weight"]
    state = net.state_dict()
    assert state["head.classifier.weight"].shape == (CLASSES, 1280)
    assert all(torch.equal(state[k], fresh[k]) for k in head)
    assert all(torch.equal(state[k], source.state[k]) for k in state if k not in head)
    other = build_supernet(load_space("mobilenetv3-ofa", width_mult=1.2).with_options(num_classes=CLASSES))
    with pytest.raises(Exception, match=r"holds a supernet of space 'mobilenetv3-ofa' \(width 1\), not of"):
        init_supernet_(other, source)


@pytest.mark.slow
def test_train_supernet_init_transfers_to_a_new_dataset(tiny_run, folder, tmp_path):
    """From a run of 10 classes (digits) to the 7-class folder: every weight kept but the classifier, loss falls."""
    from nasforge.train.config import read_run_config

    out = tmp_path / "transfer"
    _ok(runner.invoke(app, ["train-supernet", "--init", str(tiny_run), "--dataset", "imagefolder", "--data-dir",
                            str(folder), "--epochs", "6", "--batch-size", "8", "--device", "cpu", "--out", str(out),
                            "--quiet"]))
    cfg = read_run_config(out / "config.yaml")
    assert cfg.init == str(tiny_run) and cfg.schedule.name == "sandwich"
    run = load_run(out, device="cpu")
    assert run.space.num_classes == CLASSES and run.space.name == load_run(tiny_run, device="cpu").space.name
    losses = [json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0], losses


def test_init_of_another_space_is_one_line(tiny_run, folder, tmp_path):
    line = _one_line_error(runner.invoke(app, ["train-supernet", "--init", str(tiny_run), "--space", "mobilenetv3-tiny",
                                               "--dataset", "imagefolder", "--data-dir", str(folder), "--epochs", "1",
                                               "--device", "cpu", "--out", str(tmp_path / "x"), "--quiet"]))
    assert "holds a supernet of space 'tiny-mbv3'" in line and "not of this run's 'mobilenetv3-tiny'" in line


def test_published_nets_name_their_spaces():
    for net in PUBLISHED.values():
        assert net.load_space().name == net.space
