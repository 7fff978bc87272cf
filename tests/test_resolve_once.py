"""Issue 23: each command resolves its target, run, predictor and latency model once and passes them along.

Counting wrappers replace the loaders everywhere they are looked up (every `nasforge.*` module that bound the
function, plus the `LatencyTable.load` classmethod and the latency models' constructors); each command must
call each exactly once. (On the code before issue 23 the quickstart resolved its target 9 times, its run and
predictor twice, built its latency model 3 times and loaded its table 6 times.)
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.latency import model as model_mod
from nasforge.latency import targets as targets_mod
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import LatencyTable, this_machine, user_tables_dir
from nasforge.latency.model import roofline_ms
from nasforge.predictors import base as predictors_base
from nasforge.testing import TINY_SPACES_DIR, tiny_space
from nasforge.train import runs as runs_mod

TINY = str(TINY_SPACES_DIR / "tiny-mbv3.yaml")
runner = CliRunner()


def _count_everywhere(monkeypatch, counts: Counter, key: str, module, name: str) -> None:
    """Replace `module.name` and every other `nasforge.*` module's binding of the same function by a counter."""
    real = getattr(module, name)

    def counted(*args, **kwargs):
        counts[key] += 1
        return real(*args, **kwargs)

    for mod in [m for n, m in list(sys.modules.items()) if n.startswith("nasforge") and m is not None]:
        if getattr(mod, name, None) is real:
            monkeypatch.setattr(mod, name, counted)


def _count_method(monkeypatch, counts: Counter, key: str, cls, name: str) -> None:
    real = cls.__dict__[name]
    func = real.__func__ if isinstance(real, classmethod) else real

    def counted(*args, **kwargs):
        counts[key] += 1
        return func(*args, **kwargs)

    monkeypatch.setattr(cls, name, classmethod(counted) if isinstance(real, classmethod) else counted)


@pytest.fixture
def counts(monkeypatch) -> Counter:
    import nasforge.export.latency  # noqa: F401  (load the modules that bind the loaders before patching)
    import nasforge.export.pipeline  # noqa: F401
    import nasforge.latency.bundle  # noqa: F401
    import nasforge.pipelines.quickstart  # noqa: F401
    import nasforge.pipelines.search  # noqa: F401

    c: Counter = Counter()
    _count_everywhere(monkeypatch, c, "target", targets_mod, "load_target")
    _count_everywhere(monkeypatch, c, "run", runs_mod, "load_run")
    _count_everywhere(monkeypatch, c, "predictor", predictors_base, "load_predictor")
    _count_method(monkeypatch, c, "table", LatencyTable, "load")
    # every way to a latency model (load_latency_model, latency_model_for, direct construction) builds one of these
    _count_method(monkeypatch, c, "latency model", model_mod.TableLatencyModel, "__init__")
    _count_method(monkeypatch, c, "latency model", model_mod.RooflineLatencyModel, "__init__")
    return c


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A user folder holding one table of tiny-mbv3 measured (for this test) on this machine: nothing is profiled."""
    monkeypatch.setenv("NASFORGE_HOME", str(tmp_path / "home"))
    space = tiny_space("tiny-mbv3")
    spec = targets_mod.load_target("cpu")
    entries = {s.key: {"median_ms": roofline_ms(s, spec), "p90_ms": roofline_ms(s, spec) * 1.1}
               for s in distinct_layers(space)}
    meta = {"target": "cpu", "device": this_machine().get("cpu"), "machine": this_machine(), "space": space.name,
            "space_fingerprint": space.fingerprint, "batch": 1, "date": "2026-01-01"}
    user_tables_dir().mkdir(parents=True)
    LatencyTable(meta, entries).save(user_tables_dir() / "cpu__tiny-mbv3.json")
    return tmp_path / "home"


ONCE = {"target": 1, "run": 1, "predictor": 1, "latency model": 1, "table": 1}


def _invoke(args: list[str]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = runner.invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return result


def test_quickstart_then_search_resolve_everything_once(tiny_run, tmp_path, home, counts):
    """quickstart: the target (checked before training), the run, the predictor (loaded back once after it is
    built, then searched with), the latency model and its table (found once, then used for the search and the
    export's sidecar and timing) are each resolved once. Then `nasforge search` on the same run: once each too."""
    out = tmp_path / "qs"
    shutil.copytree(tiny_run, out / "supernet")  # trained already: the quickstart skips training
    result = _invoke(["quickstart", "--fast", "--out", str(out)])
    assert "already trained: skipping" in result.output and (out / "model.onnx.json").is_file()
    assert json.loads((out / "model.onnx.json").read_text())["latency"]["table"].startswith(str(home))
    assert dict(counts) == ONCE

    counts.clear()
    _invoke(["search", "--run", str(out / "supernet"), "--target", "cpu", "--budget", "40",
             "--out", str(tmp_path / "s"), "--json"])
    assert dict(counts) == ONCE


def test_latency_and_export_resolve_everything_once(tiny_run, tmp_path, home, counts):
    arch = json.dumps(tiny_space("tiny-mbv3").smallest().to_dict())
    _invoke(["latency", "--target", "cpu", "--space", TINY, "--arch", arch])
    assert dict(counts) == {"target": 1, "latency model": 1, "table": 1}

    counts.clear()
    _invoke(["export", "--run", str(tiny_run), "--arch", arch, "--target", "cpu", "--bn-images", "64",
             "--out", str(tmp_path / "m.onnx")])
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    assert side["latency"]["measured_ms"] > 0  # the table is this machine's: the model was timed against it
    assert dict(counts) == {"target": 1, "run": 1, "latency model": 1, "table": 1}


def test_lut_import_reads_the_table_and_its_target_once(tmp_path, home, counts):
    """`lut import` reads the device's table and resolves its target once, for the file name and the import."""
    device = Path(__file__).parent / "data" / "latency_v6" / "device.json"
    result = _invoke(["lut", "import", str(device), "--space", TINY, "--out", str(tmp_path / "imported.json")])
    assert "imported" in result.output and (tmp_path / "imported.json").is_file()
    assert dict(counts) == {"target": 1, "table": 1}


def test_a_tables_own_target_labels_it_when_none_is_passed(tmp_path):
    """A model built without a resolved target resolves the table's own (once) and labels by it: a remote
    target's table is measured on its device by definition, whatever machine runs nasforge."""
    space = tiny_space("tiny-mbv3")
    spec = targets_mod.load_target("rpi5")
    entries = {s.key: {"median_ms": roofline_ms(s, spec)} for s in distinct_layers(space)}
    meta = {"target": "rpi5", "machine": {"cpu": "Other CPU 9000", "cpu_id": "X 1/2/3", "isa": ["neon"]},
            "space": space.name, "space_fingerprint": space.fingerprint, "batch": 1}
    table = LatencyTable(meta, entries)
    table.save(tmp_path / "rpi.json")
    model = model_mod.TableLatencyModel(table, space)
    assert model.spec is not None and model.spec.name == "rpi5" and model.source == "measured"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert model_mod.load_latency_model("cpu", space, tmp_path / "rpi.json").source == "measured"
