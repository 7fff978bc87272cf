"""Output that is not a terminal is plain and never wraps or cuts a name (`nasforge ... | grep`, logs, CI).

Every command runs through `CliRunner` (not a terminal) with COLUMNS=40, narrower than any arch key or path
printed here; each name must come back whole on one line. Commands whose real work takes minutes on a CPU
(profiling, training, exporting, importing OFA's files) get their library call replaced by a result with
long names: what is under test is how the CLI prints it.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.cli._common import CliConsole, ResultTable
from nasforge.latency.records import ImportReport, TopKCheck, Validation
from nasforge.space import load_space

CLI_DIR = Path(__file__).resolve().parents[1] / "nasforge" / "cli"
NARROW = {"COLUMNS": "40"}
OFA = load_space("mobilenetv3-ofa")  # arch keys of ~100 characters
LONG_NAME = "a-folder-name-much-wider-than-forty-columns-" * 3
runner = CliRunner()


def _whole(output: str, *names: str) -> None:
    """Each name on one line of `output`, nothing cut with an ellipsis, no escape codes."""
    lines = output.splitlines()
    for name in names:
        assert any(name in line for line in lines), f"{name!r} is not whole on one line of:\n{output}"
    assert "…" not in output and "\x1b" not in output, output


def _ok(result):  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def long_dir(tmp_path: Path) -> Path:
    folder = tmp_path / LONG_NAME
    folder.mkdir()
    return folder


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _table(title: str, cell: str) -> ResultTable:
    table = ResultTable(title=title)
    table.add_column("#")
    table.add_column("arch")
    table.add_row("0", cell)
    return table


def test_a_pipe_gets_whole_lines_a_terminal_keeps_its_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("FORCE_COLOR", "1")
    key, title = OFA.largest().key, "exported /" + LONG_NAME + "/model.onnx"
    pipe = CliConsole(file=io.StringIO())
    pipe.print(_table(title, key))
    pipe.print(f"[bold red]saved[/] {title}")
    pipe.rule(f"[bold]1/5 {title}")
    pipe.rule("short")
    out = pipe.file.getvalue()
    _whole(out, key, title, f"saved {title}", f"1/5 {title}")
    assert [len(line) for line in out.splitlines()[-1:]] == [80]  # a rule is not PIPE_WIDTH long
    tty = CliConsole(file=_Tty(), color_system=None)
    tty.print(_table(title, key))
    lines = tty.file.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 40 and "…" not in tty.file.getvalue()  # folded to the terminal
    assert not any(key in line for line in lines)


def test_every_cli_table_and_console_is_the_plain_one():
    """No command builds its own rich Table or Console (they would not know about pipes) or calls print()."""
    for path in sorted(CLI_DIR.glob("*.py")):
        text = path.read_text()
        assert not re.search(r"\bTable(\.grid)?\(", text), f"{path.name}: use ResultTable"
        assert not re.search(r"(?<![\w.])print\(", text), f"{path.name}: use console.print / typer.echo"
        if path.name != "_common.py":
            assert not re.search(r"\bConsole\(", text), f"{path.name}: use _common.console / err_console"


def test_spaces_and_targets(monkeypatch, long_dir):
    out = _ok(runner.invoke(app, ["spaces"], env=NARROW))
    for name in ("mobilenetv3-ofa-cifar", "proxylessnas-ofa", "resnet-ofa"):
        _whole(out, name, load_space(name).fingerprint)
    monkeypatch.setenv("NASFORGE_HOME", str(long_dir))
    (long_dir / "latency").mkdir()
    table = long_dir / "latency" / "cpu__mobilenetv3-ofa__0123abcd.json"
    device = "A Very Long Processor Model Name @ 3.00GHz with 128 cores"
    table.write_text(json.dumps({"metadata": {"target": "cpu", "space": "mobilenetv3-ofa", "device": device}}))
    _whole(_ok(runner.invoke(app, ["targets"], env=NARROW)), f"[{device}; {table}]")


class _Run(SimpleNamespace):
    def with_data(self, data_dir, loader):  # type: ignore[no-untyped-def]
        return self


@pytest.fixture
def fake_ofa_run(monkeypatch, long_dir):
    """A run of the ImageNet space whose subnets `evaluate_subnets` scores by their MACs (no training)."""
    import nasforge.train.runs as runs

    run = _Run(space=OFA, device="cpu", checkpoint_sha256="d" * 64,
               config=SimpleNamespace(dataset="imagenet", eval=SimpleNamespace(calib_images=8)))
    monkeypatch.setattr(runs, "load_run", lambda run_dir, device="auto": run)
    monkeypatch.setattr(runs, "evaluate_subnets", lambda r, archs, split="val", **kw: np.array(
        [OFA.macs(a) / 1e7 for a in archs], dtype=np.float64))
    return long_dir


def test_evaluate_and_build_predictor(fake_ofa_run):
    key = OFA.largest().key
    args = ["evaluate", "--run", str(fake_ofa_run), "--arch", OFA.largest().to_json()]
    _whole(_ok(runner.invoke(app, args, env=NARROW)), key, "MACs ")
    out = _ok(runner.invoke(app, ["build-predictor", "--run", str(fake_ofa_run), "--samples", "12", "--model",
                                  "ridge", "--measure-batch", "12"], env=NARROW))
    _whole(out, f"saved {fake_ofa_run / 'predictor'}")


def test_search(long_dir):
    out = _ok(runner.invoke(app, ["search", "--space", "mobilenetv3-ofa", "--objectives", "macs,params",
                                  "--engine", "random", "--budget", "20", "--out", str(long_dir / "s")], env=NARROW))
    keys = [OFA.parse_arch(row["arch"]).key for row in json.loads((long_dir / "s" / "pareto.json").read_text())]
    assert keys
    _whole(out, *keys, str(long_dir / "s" / "pareto.json"))


def test_export_and_finetune(monkeypatch, long_dir):
    import nasforge.cli.export as cli_export
    import nasforge.export.pipeline as pipeline
    import nasforge.train.finetune as finetune

    arch = OFA.largest()
    loaded = SimpleNamespace(space=OFA, config=SimpleNamespace(data=SimpleNamespace(batch_size=8)),
                             data=lambda: SimpleNamespace(steps_per_epoch=lambda batch: 3))
    monkeypatch.setattr(cli_export, "_load", lambda *a, **k: loaded)
    model, sidecar_path = long_dir / "model.onnx", long_dir / "model.onnx.json"
    sidecar = {"arch": arch.to_dict(), "input": {"shape": [1, 3, 224, 224]}, "macs": 5e8, "params": 7e6,
               "accuracy": {"test_top1": 75.0, "source": "measured", "test_images": 50000},
               "provenance": {"bn": "recalibrate"}, "onnx": {"max_abs_diff_vs_torch": 1e-6},
               "latency": {"target": "cpu", "ms": 12.0, "source": "measured"}}
    monkeypatch.setattr(pipeline, "prepare_from_run", lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "export_prepared", lambda *a, **k: SimpleNamespace(
        model_path=model, sidecar_path=sidecar_path, sidecar=sidecar))
    out = _ok(runner.invoke(app, ["export", "--run", str(long_dir), "--arch", arch.to_json(), "--out", str(model)],
                            env=NARROW))
    _whole(out, f"exported {model}", json.dumps(arch.to_dict()), str(sidecar_path))

    checkpoint = long_dir / "finetuned" / f"{arch.key}.pt"
    monkeypatch.setattr(finetune, "finetune_subnet", lambda *a, **k: SimpleNamespace(
        path=checkpoint, before={"val": 70.0, "test": 69.0}, after={"val": 72.0, "test": 71.0}))
    out = _ok(runner.invoke(app, ["finetune", "--run", str(long_dir), "--arch", arch.to_json(), "--epochs", "1"],
                            env=NARROW))
    _whole(out, f"fine-tuned {checkpoint}")


def test_profile_and_lut_import(monkeypatch, long_dir):
    import nasforge.latency.bundle as bundle
    import nasforge.latency.lut as lut
    import nasforge.latency.profiler as profiler

    device = "A Very Long Processor Model Name @ 3.00GHz with 128 cores"
    table = SimpleNamespace(entries={"b": 1}, metadata={"build_seconds": 1.0, "device": device, "stability": {}})
    metrics = {"mape": 2.0, "within_10pct": 1.0, "kendall_tau": 0.9, "n": 5}
    validation = Validation.from_dict({"n": 5, "seed": 0, "calibrated_cv5": metrics, "raw": metrics, "trusted": True})
    monkeypatch.setattr(profiler, "Timer", lambda *a: SimpleNamespace(provider="CPUExecutionProvider", threads=1))
    monkeypatch.setattr(profiler, "build_table", lambda *a, **k: table)
    monkeypatch.setattr(profiler, "validation_size", lambda t, v: 5)
    monkeypatch.setattr(profiler, "validate_table", lambda *a, **k: validation)
    out_path = long_dir / "cpu__mobilenetv3-ofa.json"
    out = _ok(runner.invoke(app, ["profile", "--target", "cpu", "--space", "mobilenetv3-ofa", "--out", str(out_path)],
                            env=NARROW))
    _whole(out, f"{out_path}: 1 entries", device, "calibrated, 5-fold CV")

    archs = [OFA.largest(), OFA.smallest()]
    topk = [TopKCheck(arch=a.key, measured_ms=1.0, lut_predicted_ms=1.1, search_predicted_ms=None,
                      search_predicted_source=None) for a in archs]
    monkeypatch.setattr(lut.LatencyTable, "load", classmethod(lambda cls, p: SimpleNamespace(target="jetson")))
    monkeypatch.setattr(bundle, "import_table", lambda *a: (table, ImportReport(validation, topk)))
    dest = long_dir / "imported.json"
    out = _ok(runner.invoke(app, ["lut", "import", str(out_path), "--space", "mobilenetv3-ofa", "--out", str(dest)],
                            env=NARROW))
    _whole(out, f"measured on {device} -> {dest}", *(a.key for a in archs))


def test_import_ofa(monkeypatch, long_dir):
    import nasforge.foreign.ofa_runs as ofa_runs

    run, source = long_dir / "run", long_dir / "ofa_mbv3_d234_e346_k357_w1.2"
    net = SimpleNamespace(name="ofa_mbv3_d234_e346_k357_w1.2", ofa_class="OFAMobileNetV3")
    monkeypatch.setattr(ofa_runs, "import_ofa_checkpoint", lambda *a, **k: SimpleNamespace(
        net=net, tensors=800, space=SimpleNamespace(name=OFA.name, width_mult=1.2, fingerprint=OFA.fingerprint),
        run_dir=run, sha256="e" * 64))
    out = _ok(runner.invoke(app, ["import-ofa", str(source), "--out", str(run)], env=NARROW))
    _whole(out, f"imported {source}", str(run), "e" * 64, f"--run {run};")
    predictor = long_dir / "ofa_resnet50_acc_predictor.pth"
    monkeypatch.setattr(ofa_runs, "import_ofa_predictor", lambda *a, **k: SimpleNamespace(
        path=run / "predictor" / "predictor.json", form="ofa.nas", image_sizes=(128, 160, 192, 224), nearest=[]))
    out = _ok(runner.invoke(app, ["import-ofa", "--predictor", str(predictor), "--run", str(run)], env=NARROW))
    _whole(out, f"imported {predictor}", str(run / "predictor" / "predictor.json"))


def test_quickstart(monkeypatch, long_dir):
    import nasforge.pipelines.quickstart as quickstart

    stage = "train the supernet of a space whose name is far longer than forty columns"

    def run(cfg, out, hooks):  # type: ignore[no-untyped-def]
        hooks.stage(1, 5, stage)
        hooks.note(f"front: 30 archs -> {out}/search/pareto.json")
        return {"predictor_metrics": {"kendall_tau": 0.8, "rmse": 1.0}, "predicted_accuracy": 90.0,
                "val_accuracy": 89.0, "candidates": [{"predicted_accuracy": 90.0, "val_accuracy": 89.0}],
                "test_accuracy": 91.0, "latency_ms": 0.07, "constraint_ms": 0.075,
                "latency_source": "predicted from a table measured on a CPU whose name is longer than forty columns",
                "ort_max_abs_diff": 1e-6, "front_size": 30, "pareto": f"{out}/search/pareto.json",
                "pareto_png": f"{out}/search/pareto.png", "run": f"{out}/supernet", "model": f"{out}/model.onnx",
                "sidecar": f"{out}/model.onnx.json", "report": f"{out}/report.html"}

    monkeypatch.setattr(quickstart, "run_quickstart", run)
    out = _ok(runner.invoke(app, ["quickstart", "--out", str(long_dir)], env=NARROW))
    _whole(out, f"1/5 {stage}", f"front: 30 archs -> {long_dir}/search/pareto.json", "longer than forty columns",
           f"{long_dir}/model.onnx (+ {long_dir}/model.onnx.json)", f"{long_dir}/search/pareto.png",
           f"{long_dir}/report.html")
