"""The sidecar's latency: a prediction is labelled a prediction; the exported model is timed where that is cheap."""

from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.export.latency import LatencyEntry, latency_entry, time_exported
from nasforge.latency.backends import export_subnet
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import LatencyTable, this_machine
from nasforge.latency.model import roofline_ms
from nasforge.latency.ort_timing import device_string
from nasforge.latency.targets import load_target
from nasforge.testing import tiny_space

OTHER = {"cpu": "Other CPU 9000", "cpu_id": "GenuineOther 1/2/3", "isa": ["avx2", "fma"]}
OLD_KEYS = {"target", "ms", "source", "table", "device", "calibrated"}  # what sidecars held before: still there


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NASFORGE_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "latency").mkdir(parents=True)
    return tmp_path / "home" / "latency"


def table_for(space, machine, path, target="cpu", speed_reference=None):
    spec = load_target(target)
    entries = {s.key: {"median_ms": roofline_ms(s, spec), "p90_ms": 2 * roofline_ms(s, spec)}
               for s in distinct_layers(space)}
    meta = {"target": target, "device": machine.get("cpu"), "machine": machine, "space": space.name,
            "space_fingerprint": space.fingerprint, "batch": 1, "threads": 1, "provider": "CPUExecutionProvider",
            "backend": "ort", "date": "2026-01-01"}
    if speed_reference:
        meta["speed_reference"] = speed_reference
    LatencyTable(meta, entries).save(path)
    return path


def entry_for(space, arch, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return latency_entry(space, arch, target)


def test_a_table_of_this_machine_predicts_and_the_model_is_timed_here(home, tmp_path):
    space = tiny_space("tiny-mbv3")
    arch = space.smallest()
    table_for(space, this_machine(), home / "cpu__tiny.json", speed_reference={"subnet_ms": 0.5})
    entry = entry_for(space, arch, "cpu")
    assert isinstance(entry, LatencyEntry) and entry.measured_ms is None
    assert entry.source == f"predicted from a table measured on {this_machine()['cpu']}"
    model = tmp_path / "m.onnx"
    model.write_bytes(export_subnet(space, arch))
    timed = time_exported(entry, model, space)
    side = timed.to_dict()
    assert OLD_KEYS <= set(side) and side["ms"] == side["predicted_ms"] == entry.predicted_ms
    assert not side["source"].startswith("measured")
    assert side["measured_ms"] > 0 and side["cpu"] == device_string() and "not_measured" not in side
    assert side["measured_at_table_speed_ms"] > 0  # read at the table's subnet speed: it has one
    assert side["measurement"]["threads"] == 1 and side["measurement"]["runs"] > 0
    json.dumps(side)  # the sidecar form is plain JSON


@pytest.mark.parametrize("machine, target, why", [
    (OTHER, "cpu", "another machine (Other CPU 9000)"),
    ({"cpu": "Intel(R) Xeon(R) Processor"}, "cpu", "another machine"),  # a generic name alone is not here
    (OTHER, "rpi5", "another device"),
])
def test_a_table_of_another_machine_is_a_prediction_only(home, tmp_path, machine, target, why):
    space = tiny_space("tiny-mbv3")
    arch = space.smallest()
    table_for(space, machine, home / f"{target}__tiny.json", target=target)
    entry = entry_for(space, arch, target)
    assert entry.source == f"predicted from a table measured on {machine['cpu']}"
    timed = time_exported(entry, tmp_path / "never-read.onnx", space)
    assert timed.measured_ms is None and why in timed.not_measured
    assert OLD_KEYS <= set(timed.to_dict()) and "measured_ms" not in timed.to_dict()


def test_a_roofline_estimate_says_so(home, tmp_path):
    space = tiny_space("tiny-mbv3")
    entry = entry_for(space, space.smallest(), "jetson")
    assert entry.source == "estimated (roofline)" and entry.table is None
    assert "no measured table" in time_exported(entry, tmp_path / "x.onnx", space).not_measured
    assert entry_for(space, space.smallest(), "") is None


def test_export_cli_shows_predicted_and_measured(home, tiny_run, tmp_path):
    from nasforge.train.runs import load_run

    space = load_run(tiny_run, device="cpu").space
    table_for(space, this_machine(), home / "cpu__tiny.json")
    out = tmp_path / "model.onnx"
    arch = json.dumps(space.smallest().to_dict())
    result = CliRunner().invoke(app, ["export", "--run", str(tiny_run), "--arch", arch, "--out", str(out),
                                      "--bn-images", "64"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    side = json.loads((tmp_path / "model.onnx.json").read_text())["latency"]
    assert side["source"] == f"predicted from a table measured on {this_machine()['cpu']}"
    assert side["measured_ms"] > 0 and side["cpu"] == device_string()
    assert "predicted from a table measured on" in result.output
    assert f"ms measured on {device_string()}" in result.output
    torch_out = tmp_path / "model.pt"
    result = CliRunner().invoke(app, ["export", "--run", str(tiny_run), "--arch", arch, "--out", str(torch_out),
                                      "--format", "torch", "--bn-images", "64"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "measured_ms" not in json.loads((tmp_path / "model.pt.json").read_text())["latency"]
    assert "not timed: no ONNX model" in result.output


def test_latency_and_search_commands_call_a_table_number_a_prediction(home, tmp_path, monkeypatch):
    import nasforge.pipelines.search as pipeline
    from nasforge.testing import TINY_SPACES_DIR
    from nasforge.testing.search import SyntheticAccuracy

    tiny = str(TINY_SPACES_DIR / "tiny-mbv3.yaml")
    space = tiny_space("tiny-mbv3")
    path = table_for(space, this_machine(), home / "cpu__tiny.json")
    label = f"predicted from a table measured on {this_machine()['cpu']}"
    arch = json.dumps(space.smallest().to_dict())
    result = CliRunner().invoke(app, ["latency", "--target", "cpu", "--space", tiny, "--arch", arch])
    assert result.exit_code == 0, result.output
    assert f"({label}, this machine: {path}" in result.output and "measured table" not in result.output
    result = CliRunner().invoke(app, ["latency", "--target", "cpu", "--space", tiny, "--arch", arch, "--json"])
    got = json.loads(result.stdout)
    assert got["label"] == label and got["source"] == "measured"  # `source` keeps its old value for readers
    monkeypatch.setattr(pipeline, "load_accuracy", lambda p, run, sp: SyntheticAccuracy(sp))
    result = CliRunner().invoke(app, ["search", "--space", tiny, "--predictor", "p", "--target", "cpu", "--lut",
                                      str(path), "--budget", "100", "--out", str(tmp_path / "s")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "latency ms (predicted)" in result.output and f"latency {label}" in result.output
    assert "(measured)" not in result.output
