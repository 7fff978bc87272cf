"""Bad input to every command: exit code 2, one line naming the problem, no traceback, nothing half-written.

Each case runs in a fresh working folder holding only the inputs it names; afterwards that folder holds no
new file and the shared trained run (`tiny_run`) is byte-for-byte as before. Flags that Typer itself checks
(`--seed -1`, `--threads 0`) get Typer's usage box, which is allowed: still exit 2, still no traceback.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.testing import TINY_SPACES_DIR, tiny_space
from nasforge.testing.train import tiny_train_config

TINY = str(TINY_SPACES_DIR / "tiny-mbv3.yaml")
RUN = "@RUN"  # replaced by the shared tiny trained run's folder


def _arch(**change) -> str:  # type: ignore[no-untyped-def]
    return json.dumps({**tiny_space().largest().to_dict(), **change})


GOOD_ARCH = _arch()
SPACE_YAML = Path(TINY).read_text()
# What a run folder holds when training was killed before its first checkpoint (config written, no weights).
KILLED_CONFIG = yaml.safe_dump(tiny_train_config(epochs=1).to_dict(), sort_keys=False)

# Inputs a case can ask for by name (written into its working folder before the command runs).
FILES: dict[str, bytes | str] = {
    "bad.yaml": "epochs: [1\n",
    "list.yaml": "- a\n- b\n",
    "unknown.yaml": "schedule: {name: sandwich, bogus_key: 1}\n",
    "lr_nan.yaml": "optim: {lr: .nan}\n",
    "lr_inf.yaml": "optim: {lr: .inf}\n",
    "momentum_nan.yaml": "optim: {momentum: .nan}\n",
    "lr_word.yaml": "optim: {lr: fast}\n",
    "epochs_neg.yaml": "epochs: -1\n",
    "seed_neg.yaml": "seed: -1\n",
    "loader_bad.yaml": "data: {loader: magic}\n",
    "space_family.yaml": "name: x\nfamily: vgg\nresolutions: [32]\n",
    "space_res.yaml": "name: x\nfamily: mobilenetv3\nresolutions: [0]\n",
    "space_even.yaml": SPACE_YAML.replace("kernel_sizes: [3, 5]", "kernel_sizes: [3, 4]"),
    "space_extra.yaml": SPACE_YAML + "colour: blue\n",
    "binary.bin": bytes(range(256)) * 4,
    "garbage.pt": b"not a checkpoint at all" * 10,
    "one_char.pth": "a",  # torch.load(weights_only=True): IndexError
    "words.pth": "hello world",  # KeyError
    "empty.pth": "",  # EOFError
    "zip_head.pth": b"PK\x03\x04" + b"x" * 60,  # RuntimeError from the zip reader
    "pareto.json": json.dumps([{"arch": json.loads(GOOD_ARCH)}]),
    "qs_fraction.yaml": "latency_fraction: half\n",
    "qs_budget.yaml": "budget: big\n",
    "qs_unknown.yaml": "epochz: 3\n",
    "search_unknown.yaml": "budgte: 10\n",
    "target_nan.yaml": "name: toy\npeak_flops: .nan\nbandwidth: 1.0e+8\nefficiency: 0.5\n",
    "a_file": "x",
    "killed/config.yaml": KILLED_CONFIG,
    "killed/space.yaml": SPACE_YAML,
    "refused/config.yaml": KILLED_CONFIG,
    "refused/space.yaml": SPACE_YAML,
    "refused/checkpoints/last.pt": b"\x00garbage" * 50,
    "lut_nan.json": json.dumps({"format": "nasforge-lut/1", "metadata": {"target": "cpu"},
                                "entries": {"conv_i3_o8": {"median_ms": float("nan")}}}),
}
DIRS = ("a_dir", "empty_dir")

CASES: list[tuple[str, list[str], str]] = [
    # ---------------------------------------------------------------- spaces
    ("space-unknown", ["space", "sample", "--space", "nope"], "unknown search space 'nope'"),
    ("space-n-zero", ["space", "sample", "--space", TINY, "-n", "0"], "-n must be positive"),
    ("space-bad-yaml", ["space", "sample", "--space", "bad.yaml"], "not valid YAML"),
    ("space-not-mapping", ["space", "sample", "--space", "list.yaml"], "must be a YAML mapping"),
    ("space-family", ["space", "sample", "--space", "space_family.yaml"], "field 'family'"),
    ("space-resolution", ["space", "sample", "--space", "space_res.yaml"], "field 'resolutions'"),
    ("space-even-kernel", ["space", "sample", "--space", "space_even.yaml"], "odd kernel sizes"),
    ("space-unknown-key", ["space", "sample", "--space", "space_extra.yaml"], "unknown key(s) ['colour']"),
    ("arch-json", ["space", "show", "--space", TINY, "--arch", "{bad json"], "not valid JSON"),
    ("arch-missing-file", ["space", "show", "--space", TINY, "--arch", "missing.json"], "neither a JSON object"),
    ("arch-index", ["space", "show", "--space", TINY, "--arch", "pareto.json#99"], "valid indices"),
    ("arch-binary", ["space", "show", "--space", TINY, "--arch", "binary.bin"], "binary.bin"),
    ("arch-overflow", ["space", "show", "--space", TINY, "--arch", _arch(resolution=1e400)], "resolution"),
    ("arch-depths", ["space", "show", "--space", TINY, "--arch", _arch(depths=[2, 2])], "'depths' has 2 entries"),
    ("arch-value", ["space", "show", "--space", TINY, "--arch", _arch(resolution=17)], "resolution 17"),
    ("arch-field", ["space", "show", "--space", TINY, "--arch", _arch(colour=[1])], "unknown arch field"),
    ("arch-field-value", ["space", "show", "--space", TINY, "--arch", _arch(colour=1)], "must be a list"),
    ("arch-ofa-type", ["space", "show", "--space", TINY, "--arch", '{"ks": "x", "e": 3, "d": 2}'], "'ks'"),
    # ---------------------------------------------------------------- training
    ("train-schedule", ["train-supernet", "--quiet", "--schedule", "cosmic"], "unknown schedule 'cosmic'"),
    ("train-epochs", ["train-supernet", "--quiet", "--epochs", "-3"], "field 'epochs'"),
    ("train-dataset", ["train-supernet", "--quiet", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    ("train-no-data-dir", ["train-supernet", "--quiet", "--dataset", "cifar10"], "needs --data-dir"),
    ("train-cifar-missing", ["train-supernet", "--quiet", "--dataset", "cifar10", "--data-dir", "/no/such"],
     "cifar-10-batches-py"),
    ("train-folder-missing", ["train-supernet", "--quiet", "--dataset", "imagefolder", "--data-dir", "/no/such"],
     "no train/ folder"),
    ("train-empty-folder", ["train-supernet", "--quiet", "--dataset", "imagefolder", "--data-dir", "empty_dir"],
     "no train/ folder"),
    ("train-device", ["train-supernet", "--quiet", "--device", "tpu"], "field 'device'"),
    ("train-space", ["train-supernet", "--quiet", "--space", "no-such-space"], "unknown search space"),
    ("train-resume-no-out", ["train-supernet", "--quiet", "--resume"], "--resume needs --out"),
    ("train-config-missing", ["train-supernet", "--quiet", "--config", "missing.yaml"], "cannot read config"),
    ("train-config-yaml", ["train-supernet", "--quiet", "--config", "bad.yaml"], "not valid YAML"),
    ("train-config-key", ["train-supernet", "--quiet", "--config", "unknown.yaml"], "unknown key(s) ['bogus_key']"),
    ("train-lr-nan", ["train-supernet", "--quiet", "--config", "lr_nan.yaml"], "field 'optim.lr'"),
    ("train-lr-inf", ["train-supernet", "--quiet", "--config", "lr_inf.yaml"], "field 'optim.lr'"),
    ("train-momentum-nan", ["train-supernet", "--quiet", "--config", "momentum_nan.yaml"], "field 'optim.momentum'"),
    ("train-lr-word", ["train-supernet", "--quiet", "--config", "lr_word.yaml"], "field 'optim.lr'"),
    ("train-epochs-yaml", ["train-supernet", "--quiet", "--config", "epochs_neg.yaml"], "field 'epochs'"),
    ("train-seed-yaml", ["train-supernet", "--quiet", "--config", "seed_neg.yaml"], "field 'seed'"),
    ("train-loader", ["train-supernet", "--quiet", "--config", "loader_bad.yaml"], "unknown loader 'magic'"),
    ("train-out-file", ["train-supernet", "--quiet", "--space", TINY, "--epochs", "1", "--out", "a_file"],
     "is a file"),
    ("train-out-run", ["train-supernet", "--quiet", "--space", TINY, "--epochs", "1", "--out", RUN],
     "already holds a run"),
    ("train-resume-empty", ["train-supernet", "--quiet", "--resume", "--out", "empty_dir"], "config.yaml"),
    ("train-resume-nothing-saved", ["train-supernet", "--quiet", "--resume", "--out", "killed"],
     "no checkpoint was saved yet (stopped before its first one); run the same command without --resume"),
    ("subnet-arch", ["train-subnet", "--quiet", "--space", TINY, "--arch", _arch(resolution=17)], "resolution 17"),
    # ---------------------------------------------------------------- evaluate and predictors
    ("evaluate-run-missing", ["evaluate", "--run", "missing", "--arch", GOOD_ARCH], "no such run folder"),
    ("evaluate-no-run", ["evaluate", "--arch", GOOD_ARCH], "--arch needs --run"),
    ("evaluate-both", ["evaluate", "--run", RUN, "--arch", GOOD_ARCH, "--checkpoint", "garbage.pt"], "exactly one"),
    ("evaluate-split", ["evaluate", "--run", RUN, "--arch", GOOD_ARCH, "--split", "train2"], "--split"),
    ("evaluate-calib", ["evaluate", "--run", RUN, "--arch", GOOD_ARCH, "--calib-images", "0"], "--calib-images"),
    ("evaluate-arch", ["evaluate", "--run", RUN, "--arch", _arch(resolution=17)], "resolution 17"),
    ("evaluate-checkpoint", ["evaluate", "--checkpoint", "garbage.pt"], "garbage.pt"),
    ("evaluate-refused-checkpoint", ["evaluate", "--run", "refused", "--arch", GOOD_ARCH],
     "refused: no usable supernet: supernet.pt is missing and its checkpoints were refused"),
    ("evaluate-nothing-saved", ["evaluate", "--run", "killed", "--arch", GOOD_ARCH],
     "killed: no usable supernet: supernet.pt is missing and no checkpoint was saved; train or resume the run first"),
    ("predictor-model", ["build-predictor", "--run", RUN, "--model", "xgb"], "--model must be one of"),
    ("predictor-samples", ["build-predictor", "--run", RUN, "--samples", "2"], "--samples"),
    ("predictor-holdout", ["build-predictor", "--run", RUN, "--holdout", "0"], "--holdout"),
    ("predictor-out-file", ["build-predictor", "--run", RUN, "--out", "a_file"], "is a file"),
    ("predictor-store-dir", ["build-predictor", "--run", RUN, "--store", "a_dir"], "is a folder"),
    ("predictor-run-missing", ["build-predictor", "--run", "missing"], "missing"),
    # ---------------------------------------------------------------- search
    ("search-op", ["search", "--space", TINY, "--predictor", "x", "--constraint", "latency<15"], "constraint"),
    ("search-metric", ["search", "--space", TINY, "--predictor", "x", "--constraint", "foo<=3"], "unknown metric"),
    ("search-unit", ["search", "--space", TINY, "--predictor", "x", "--constraint", "macs<=12Q"], "unit"),
    ("search-engine", ["search", "--space", TINY, "--objectives", "macs,params", "--engine", "annealing"],
     "unknown engine 'annealing'"),
    ("search-nothing", ["search", "--target", "cpu"], "--run"),
    ("search-config-key", ["search", "--space", TINY, "--config", "search_unknown.yaml"], "unknown key 'budgte'"),
    ("search-objective", ["search", "--space", TINY, "--objectives", "speed"], "unknown objective"),
    ("search-out-file", ["search", "--space", TINY, "--objectives", "macs,params", "--out", "a_file"], "is a file"),
    ("search-storage", ["search", "--space", TINY, "--objectives", "macs,params", "--engine", "tpe", "--storage",
                        "notaurl://x", "--budget", "8"], "storage"),
    ("search-infeasible", ["search", "--space", TINY, "--objectives", "macs,params", "--constraint", "macs<=1k"],
     "infeasible"),
    ("search-target", ["search", "--space", TINY, "--objectives", "macs,latency", "--target", "toaster"],
     "unknown target 'toaster'"),
    ("search-run-missing", ["search", "--run", "missing", "--target", "cpu"], "no such directory"),
    ("search-budget", ["search", "--space", TINY, "--objectives", "macs,params", "--budget", "0"], "field 'budget'"),
    # ---------------------------------------------------------------- latency
    ("profile-target", ["profile", "--target", "toaster", "--space", TINY], "unknown target 'toaster'"),
    ("profile-space", ["profile", "--target", "cpu", "--space", "nope"], "unknown search space"),
    ("profile-repeats", ["profile", "--target", "cpu", "--space", TINY, "--repeats", "0"], "--repeats"),
    ("profile-out-dir", ["profile", "--target", "cpu", "--space", TINY, "--out", "a_dir"], "is a folder"),
    ("profile-bundle-dir", ["profile", "--target", "cpu", "--space", TINY, "--bundle", "a_dir"], "is a directory"),
    ("profile-verify", ["profile", "--target", "cpu", "--space", TINY, "--verify", "pareto.json"], "--verify needs"),
    ("profile-target-nan", ["profile", "--target", "target_nan.yaml", "--space", TINY], "field 'peak_flops'"),
    ("latency-arch", ["latency", "--target", "cpu", "--space", TINY, "--arch", "{bad"], "not valid JSON"),
    ("latency-lut", ["latency", "--target", "cpu", "--space", TINY, "--arch", GOOD_ARCH, "--lut", "garbage.pt"],
     "garbage.pt"),
    ("lut-import-missing", ["lut", "import", "missing.json", "--space", TINY], "missing.json"),
    ("lut-import-nan", ["lut", "import", "lut_nan.json", "--space", TINY], "conv_i3_o8"),
    # ---------------------------------------------------------------- export and finetune
    ("export-nothing", ["export", "--out", "m.onnx"], "exactly one"),
    ("export-no-run", ["export", "--out", "m.onnx", "--arch", GOOD_ARCH], "--arch needs --run"),
    ("export-format", ["export", "--out", "m.onnx", "--run", RUN, "--arch", GOOD_ARCH, "--format", "onnx2"],
     "--format"),
    ("export-quantize", ["export", "--out", "m.onnx", "--run", RUN, "--arch", GOOD_ARCH, "--quantize", "int4"],
     "--quantize"),
    ("export-out-dir", ["export", "--out", "a_dir", "--run", RUN, "--arch", GOOD_ARCH], "is a folder"),
    ("export-checkpoint", ["export", "--out", "m.onnx", "--checkpoint", "garbage.pt"], "garbage.pt"),
    ("export-ofa", ["export", "--out", "m.pt", "--run", RUN, "--format", "ofa"], "Once-for-All"),
    ("export-ofa-out-dir", ["export", "--out", "a_dir", "--run", RUN, "--format", "ofa"], "--out a_dir is a folder"),
    ("export-ofa-out-under-file", ["export", "--out", "a_file/m.pt", "--run", RUN, "--format", "ofa"],
     "a_file is a file"),
    # unsupported opsets are refused before the run is read (it does not even exist here)
    ("export-opset-low", ["export", "--out", "m.onnx", "--run", "missing", "--arch", GOOD_ARCH, "--opset", "5"],
     "--opset 5 is not supported; give an opset from 7 to"),
    ("export-opset-high", ["export", "--out", "m.onnx", "--run", "missing", "--arch", GOOD_ARCH, "--opset", "99"],
     "--opset 99 is not supported"),
    ("export-opset-int8", ["export", "--out", "m.onnx", "--run", "missing", "--arch", GOOD_ARCH, "--opset", "12",
                           "--quantize", "int8"], "not supported with --quantize int8; give an opset from 13 to"),
    ("finetune-epochs", ["finetune", "--run", RUN, "--arch", GOOD_ARCH, "--epochs", "0", "--out", "f.pt"],
     "--epochs"),
    ("finetune-lr-nan", ["finetune", "--run", RUN, "--arch", GOOD_ARCH, "--epochs", "1", "--lr", "nan", "--out",
                         "f.pt"], "--lr"),
    ("finetune-lr-neg", ["finetune", "--run", RUN, "--arch", GOOD_ARCH, "--epochs", "1", "--lr", "-1", "--out",
                         "f.pt"], "--lr"),
    ("finetune-batch", ["finetune", "--run", RUN, "--arch", GOOD_ARCH, "--epochs", "1", "--batch-size", "0",
                        "--out", "f.pt"], "batch"),
    ("finetune-out-dir", ["finetune", "--run", RUN, "--arch", GOOD_ARCH, "--epochs", "1", "--out", "a_dir"],
     "is a folder"),
    # ---------------------------------------------------------------- quickstart and import
    ("quickstart-fraction", ["quickstart", "--config", "qs_fraction.yaml"], "field 'latency_fraction'"),
    ("quickstart-budget", ["quickstart", "--config", "qs_budget.yaml"], "field 'budget'"),
    ("quickstart-key", ["quickstart", "--config", "qs_unknown.yaml"], "unknown key(s) ['epochz']"),
    ("quickstart-out-file", ["quickstart", "--fast", "--out", "a_file"], "is a file"),
    ("import-missing", ["import-ofa", "missing.pth", "--out", "imported"], "missing.pth"),
    ("import-garbage", ["import-ofa", "garbage.pt", "--out", "imported"], "garbage.pt"),
    ("import-one-char", ["import-ofa", "one_char.pth", "--out", "imported"], "one_char.pth: not a PyTorch checkpoint"),
    ("import-words", ["import-ofa", "words.pth", "--out", "imported"], "words.pth: not a PyTorch checkpoint"),
    ("import-empty", ["import-ofa", "empty.pth", "--out", "imported"], "empty.pth: not a PyTorch checkpoint"),
    ("import-zip-head", ["import-ofa", "zip_head.pth", "--out", "imported"], "zip_head.pth: not a PyTorch checkpoint"),
    ("import-folder", ["import-ofa", "a_dir", "--out", "imported"], "a_dir: is a folder"),
]

USAGE_CASES: list[tuple[str, list[str]]] = [  # Typer checks these flags itself: its usage box, exit 2
    ("space-seed", ["space", "sample", "--space", TINY, "--seed", "-1"]),
    ("train-seed", ["train-supernet", "--quiet", "--seed", "-1"]),
    ("profile-threads", ["profile", "--target", "cpu", "--space", TINY, "--threads", "0"]),
    ("search-seed", ["search", "--space", TINY, "--objectives", "macs,params", "--seed", "-1"]),
    ("unknown-flag", ["spaces", "--colour"]),
]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    for name, content in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    for name in DIRS:
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A private copy of the tiny run (the cases must leave it unchanged, so they get their own)."""
    dest = tmp_path_factory.mktemp("bad-inputs") / "run"
    shutil.copytree(tiny_run, dest)
    return dest


def test_there_are_at_least_sixty_distinct_cases():
    names = [c[0] for c in CASES] + [c[0] for c in USAGE_CASES]
    assert len(names) == len(set(names)) and len(names) >= 60
    commands = {c[1][0] for c in CASES}
    assert {"space", "train-supernet", "train-subnet", "evaluate", "build-predictor", "search", "profile",
            "latency", "lut", "export", "finetune", "quickstart", "import-ofa"} <= commands


@pytest.mark.parametrize("name, args, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(name, args, needle, workdir, run_copy):
    args = [str(run_copy) if a == RUN else a for a in args]
    before, run_before = _digest(workdir), _digest(run_copy)
    result = CliRunner().invoke(app, args)
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert needle in lines[0], output
    assert _digest(workdir) == before, f"{name} left files behind"
    assert _digest(run_copy) == run_before, f"{name} changed the run folder"


@pytest.mark.parametrize("name, args", USAGE_CASES, ids=[c[0] for c in USAGE_CASES])
def test_flags_typer_checks_get_its_usage_box(name, args, workdir):
    before = _digest(workdir)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert _digest(workdir) == before


def test_random_byte_archs_never_traceback(workdir):
    """A fuzz of the arch parser through the CLI: random bytes and mutated JSON are one-line errors or archs."""
    rng = np.random.default_rng(0)
    base = GOOD_ARCH
    for i in range(40):
        if i % 2:
            text = bytes(rng.integers(32, 127, rng.integers(1, 60))).decode()
        else:
            chars = list(base)
            for _ in range(3):
                chars[int(rng.integers(0, len(chars)))] = chr(int(rng.integers(32, 127)))
            text = "".join(chars)
        result = CliRunner().invoke(app, ["space", "show", "--space", TINY, "--arch", text])
        assert result.exit_code in (0, 2) and "Traceback" not in result.output, (text, result.output)
