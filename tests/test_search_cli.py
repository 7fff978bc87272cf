"""`nasforge search` through CliRunner, with the predictor and latency loaders replaced by fakes."""

from __future__ import annotations

import csv
import json
import time

import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.testing import TINY_SPACES_DIR, tiny_space
from nasforge.testing.search import SyntheticAccuracy, TableLatency

SPACE = str(TINY_SPACES_DIR / "tiny-mbv3.yaml")
runner = CliRunner()


@pytest.fixture
def fakes(monkeypatch):
    import nasforge.pipelines.search as pipeline

    monkeypatch.setattr(pipeline, "load_accuracy", lambda path, run_dir, space: SyntheticAccuracy(space))
    monkeypatch.setattr(pipeline, "load_latency", lambda target, space, lut: TableLatency(space, target=target))


@pytest.mark.parametrize("bad", ["latency<15", "foo<=3", "macs<=12Q", "latency<="])
def test_malformed_constraint_exits_2_with_one_line(bad):
    res = runner.invoke(app, ["search", "--space", SPACE, "--predictor", "x", "--constraint", bad])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: constraint")


def test_search_writes_outputs(tmp_path, fakes):
    out = tmp_path / "out"
    res = runner.invoke(app, ["search", "--space", SPACE, "--predictor", "p", "--target", "jetson",
                              "--constraint", "latency<=8ms", "--constraint", "macs<=1.4M",
                              "--budget", "400", "--seed", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Pareto front" in res.output
    for name in ("pareto.json", "history.csv", "hypervolume.csv", "pareto.png", "search.json", "config.yaml"):
        assert (out / name).exists(), name
    front = json.loads((out / "pareto.json").read_text())
    space = tiny_space("tiny-mbv3")
    assert front and set(front[0]) == {"arch", "accuracy", "latency_ms", "latency_source", "macs", "params"}
    for row in front:
        arch = space.parse_arch(row["arch"])
        assert row["latency_ms"] <= 8 and row["macs"] <= 1.4e6 and space.macs(arch) == row["macs"]
        assert row["latency_source"] == "estimated"
    with open(out / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 400 and {"step", "feasible", "accuracy", "latency_ms", "macs", "params", "arch"} <= set(rows[0])
    meta = json.loads((out / "search.json").read_text())
    assert meta["engine"] == "nsga2" and meta["latency_target"] == "jetson"
    assert meta["hypervolume_normalisation"]["reference_point"] == [1.1, 1.1]
    # the arch of entry 0 is accepted by --arch elsewhere (FILE#i)
    res = runner.invoke(app, ["space", "show", "--space", SPACE, "--arch", f"{out / 'pareto.json'}#0"])
    assert res.exit_code == 0, res.output


def test_yaml_config_with_flag_override(tmp_path, fakes):
    cfg = tmp_path / "search.yaml"
    cfg.write_text(f"space: {SPACE}\npredictor: p\nengine: random\nobjectives: [accuracy, macs]\n"
                   f"constraints: ['params<=200K']\nbudget: 150\nout: {tmp_path / 'o'}\n")
    res = runner.invoke(app, ["search", "--config", str(cfg), "--budget", "120"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "o" / "search.json").read_text())
    assert meta["engine"] == "random" and meta["evaluations"] == 120 and meta["objectives"] == ["accuracy", "macs"]
    assert meta["constraints"] == ["params<=200K"]


def test_config_unknown_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("space: tiny\nbudgte: 3\n")
    res = runner.invoke(app, ["search", "--config", str(cfg)])
    assert res.exit_code == 2 and "unknown key 'budgte'" in res.output


def test_infeasible_constraint_errors_fast_with_range(tmp_path, fakes):
    t0 = time.perf_counter()
    res = runner.invoke(app, ["search", "--space", SPACE, "--predictor", "p", "--target", "jetson",
                              "--constraint", "latency<=0.1ms", "--out", str(tmp_path)])
    assert time.perf_counter() - t0 < 10.0  # a hang guard: the check runs before any search (no history below)
    assert res.exit_code == 2 and not (tmp_path / "history.csv").exists()
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "infeasible" in lines[0] and "smallest subnet" in lines[0] and "ms" in lines[0]


def test_latency_needs_a_target(fakes):
    res = runner.invoke(app, ["search", "--space", SPACE, "--predictor", "p"])
    assert res.exit_code == 2 and "--target" in res.output


def test_linas_needs_a_run(fakes):
    res = runner.invoke(app, ["search", "--space", SPACE, "--predictor", "p", "--target", "t", "--engine", "linas"])
    assert res.exit_code == 2 and "--run" in res.output


def test_run_dir_gives_the_space(tmp_path, fakes, tiny_run):
    run = tiny_run
    res = runner.invoke(app, ["search", "--run", str(run), "--objectives", "accuracy,params", "--budget", "100",
                              "--engine", "evolution", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o" / "search.json").read_text())["space"] == "tiny-mbv3"


def test_search_help_is_instant():
    import subprocess
    import sys

    code = "import sys; from nasforge.cli import app; assert 'pymoo' not in sys.modules and 'optuna' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_default_out_dir_is_in_the_run(tmp_path, fakes, tiny_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    res = runner.invoke(app, ["search", "--run", str(run), "--target", "jetson", "--budget", "100"])
    assert res.exit_code == 0, res.output
    assert (run / "search-jetson" / "pareto.json").exists()
