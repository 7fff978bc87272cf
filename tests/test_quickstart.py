"""The whole pipeline (train -> latency -> predictor -> search -> export) in its reduced CI mode."""

import json
import re

import onnx
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.export import run_onnx
from nasforge.latency.ort_timing import device_string
from nasforge.predictors.build import sample_for_predictor
from nasforge.space import load_space

runner = CliRunner()


def test_quickstart_fast_leaves_a_valid_model(tmp_path):
    out = tmp_path / "qs"
    result = runner.invoke(app, ["quickstart", "--fast", "--out", str(out)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "nasforge quickstart: done" in result.output
    model = out / "model.onnx"
    onnx.checker.check_model(onnx.load(str(model)))
    side = json.loads((out / "model.onnx.json").read_text())
    assert side["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    front = json.loads((out / "search" / "pareto.json").read_text())
    bound = json.loads((out / "search" / "search.json").read_text())
    assert front and (out / "search" / "pareto.png").stat().st_size > 0
    # every returned arch honours the latency constraint, and the exported one is on the front
    limit = float(bound["constraints"][0].split("<=")[1].rstrip("ms"))
    assert all(row["latency_ms"] <= limit + 1e-9 for row in front)
    # the five best feasible subnets by prediction were measured on the validation split; the best measured one won
    picks = re.findall(r"#\d: predicted ([\d.]+)%, measured val ([\d.]+)%(  <- chosen)?", result.output)
    assert len(picks) == 5 and sum(bool(p[2]) for p in picks) == 1, result.output
    vals = [float(p[1]) for p in picks]
    assert float(next(p for p in picks if p[2])[1]) == max(vals)
    assert "held-out RMSE" in result.output and "measured val" in result.output
    assert side["latency"]["ms"] <= limit + 1e-9
    # latency: a prediction from this machine's table (the quickstart profiles it), and the model timed here
    lat = side["latency"]
    assert lat["source"] == f"predicted from a table measured on {device_string()}" and lat["ms"] == lat["predicted_ms"]
    assert lat["measured_ms"] > 0 and lat["cpu"] == device_string()
    assert f"ms measured on {device_string()}" in result.output
    import numpy as np

    r = side["input"]["resolution"]
    logits = run_onnx(model, np.zeros((1, 3, r, r), dtype=np.float32))
    assert logits.shape == (1, 10)
    # a second call resumes: nothing is retrained
    again = runner.invoke(app, ["quickstart", "--fast", "--out", str(out)], env={"COLUMNS": "160"})
    assert again.exit_code == 0, again.output
    assert "already trained: skipping" in again.output
    # the documented next step works with its defaults on the quickstart's run (same measurement protocol)
    # it measures just the 30-arch sample's subnets the store lacks (the quickstart's sample is its prefix; the five
    # searched picks it also measured may or may not be among the 30, depending on the search)
    stored = {json.loads(line).get("key") for line in (out / "supernet" / "measurements" / "val.jsonl").open()}
    space = load_space(out / "supernet" / "space.yaml")
    lacking = [a for a in sample_for_predictor(space, 30) if space.canonical(a).key not in stored]
    assert 0 < len(lacking) <= 6
    more = runner.invoke(app, ["build-predictor", "--run", str(out / "supernet"), "--samples", "30", "--json"])
    assert more.exit_code == 0, more.output
    assert json.loads(more.output[more.output.index("{"):])["newly_measured"] == len(lacking)
