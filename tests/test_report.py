"""`nasforge report RUN`: one self-contained page whose every number equals the artifact it came from."""

import base64
import json
import re
import shutil
import subprocess
from html import unescape

import numpy as np
import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.report.html import read_embedded
from nasforge.train.callbacks import read_metrics

runner = CliRunner()
SECTIONS = ("training", "latency", "predictor", "searches", "exports")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The quickstart's reduced run (train, latency, predictor, search, export) and what it printed."""
    out = tmp_path_factory.mktemp("qs-report") / "qs"
    result = runner.invoke(app, ["quickstart", "--fast", "--out", str(out)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return out, result.output


def _check_training(data, run_dir):
    metrics = read_metrics(run_dir / "metrics.jsonl")
    t = data["training"]
    assert t["epochs"] == [m["epoch"] for m in metrics] and t["phases"] == [m["phase"] for m in metrics]
    assert t["lr"] == [m["lr"] for m in metrics] and t["train_loss"] == [m["train_loss"] for m in metrics]
    assert t["images_per_s"] == [m["images_per_s"] for m in metrics]
    assert t["evals"] == {k: [m["eval"][k] for m in metrics] for k in metrics[0]["eval"]}
    assert {"largest", "smallest", "random0"} <= set(t["evals"])


def test_quickstart_writes_a_report_whose_numbers_are_its_artifacts(quickstart):
    out, output = quickstart
    page = out / "report.html"
    assert re.search(r"report\s+│ " + re.escape(str(page)), output), output  # the summary prints where it is
    html = page.read_text()
    data = read_embedded(html)
    _check_training(data, out / "supernet")
    assert data["training"]["schedule"] == "delayed" and len(data["training"]["epsilon"]) == 2
    assert not {k: v for k, v in data["missing"].items() if k in SECTIONS}, data["missing"]
    last = data["training"]["evals"]["largest"][-1]
    assert f"{last:.2f}" in html
    _check_latency(data["latency"], out, html)
    _check_predictor(data["predictor"], out / "supernet", html)
    _check_search(data["searches"], out)
    _check_export(data["exports"], out, html)
    # figures: inline, and the same bytes as PNG files beside the page; nothing is fetched from anywhere
    inline = [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]
    beside = sorted(out.glob("report-*.png"))
    assert [p.name for p in beside] == ["report-latency.png", "report-predictor.png", "report-search-0.png",
                                        "report-training.png"]
    assert sorted(inline) == sorted(p.read_bytes() for p in beside)
    assert all(b.startswith(b"\x89PNG") for b in inline)
    # self-contained: nothing fetched. (Inline images are base64, whose letters may spell "http" by chance: look
    # for a URL only outside the data: URIs.)
    text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "data:", html)
    assert not re.search(r"(src|href)=\"(?!data:)", html) and "<link" not in html
    assert not re.search(r"(https?:)?//[\w-]+\.[\w.-]+", text) and "url(" not in text


def _check_latency(lat, out, html):
    from nasforge.latency.lut import LatencyTable
    from nasforge.latency.model import TableLatencyModel
    from nasforge.latency.ort_timing import device_string
    from nasforge.report.gather_fit import arch_from_key
    from nasforge.space import load_space

    side = json.loads((out / "model.onnx.json").read_text())
    assert lat["table"] == side["latency"]["table"]  # the table the exported model was timed with
    table = LatencyTable.load(lat["table"])
    # a trusted validation calibrates the table; one refused as too noisy is kept aside with its samples
    v = table.validation or table.validation_rejected
    samples = table.metadata["validation_samples"] if table.validation else v.extra["samples"]
    assert (lat["note"] is None) == (table.validation is not None)
    head = v.headline
    assert (lat["mape"], lat["within_10pct"], lat["kendall_tau"], lat["n_scored"]) == (
        head.mape, head.within_10pct, head.kendall_tau, head.n)
    assert lat["trusted"] == v.is_trusted and lat["date"] == v.date
    assert lat["cpu"] == table.machine["cpu"] == device_string()  # the quickstart profiled this machine
    if not v.is_trusted:
        assert f"not trusted ({v.noise.reason})" in html
    assert [(p["arch"], p["measured_ms"], p["design"]) for p in lat["points"]] == [
        (s["arch"], s["measured_ms"], s["design"]) for s in samples]
    space = load_space("mobilenetv3-tiny")
    predicted = TableLatencyModel(table, space).predict([arch_from_key(s["arch"]) for s in samples])
    assert [p["predicted_ms"] for p in lat["points"]] == pytest.approx(predicted.tolist(), rel=1e-12)
    assert f"{head.mape:.2f}" in html and f"{head.kendall_tau:.3f}" in html and device_string() in html


def _check_predictor(pred, run_dir, html):
    from nasforge.predictors.build import regression_metrics

    meta = json.loads((run_dir / "predictor" / "predictor.json").read_text())["metadata"]
    assert pred["metrics"] == meta["metrics"] and pred["model"] == meta["model"]
    assert len(pred["measured"]) == meta["metrics"]["num_holdout"] == len(pred["predicted"])
    # the points shown are the held-out subnets the stored metrics were computed on: recomputing gives them back
    again = regression_metrics(np.array(pred["predicted"]), np.array(pred["measured"]))
    assert again["rmse"] == pytest.approx(meta["metrics"]["rmse"], rel=1e-6)
    assert again["kendall_tau"] == pytest.approx(meta["metrics"]["kendall_tau"], rel=1e-6)
    assert f"{meta['metrics']['rmse']:.3f}" in html


def _check_search(searches, out):
    from nasforge.arch import ArchConfig

    assert len(searches) == 1
    s = searches[0]
    meta = json.loads((out / "search" / "search.json").read_text())
    rows = json.loads((out / "search" / "pareto.json").read_text())
    assert (s["engine"], s["objectives"], s["constraints"]) == (meta["engine"], meta["objectives"],
                                                                meta["constraints"])
    assert s["evaluations"] == meta["evaluations"] and s["hypervolume"] == meta["hypervolume"]
    assert s["accuracy_kind"] == "predicted"
    assert [(p["arch"], p["accuracy"], p["latency_ms"], p["macs"]) for p in s["front"]] == [
        (ArchConfig.from_dict(r["arch"]).key, r["accuracy"], r["latency_ms"], r["macs"]) for r in rows]
    # measured points: the quickstart measured its best candidates on val; those on the front are shown
    store = [json.loads(line) for line in (out / "supernet" / "measurements" / "val.jsonl").read_text().splitlines()]
    measured = {r["key"]: r["accuracy"] for r in store[1:]}
    shown = [p for p in s["front"] if p["measured_val"] is not None]
    assert shown and all(p["measured_val"] == measured[p["arch"]] for p in shown)
    assert all(p["arch"] not in measured for p in s["front"] if p["measured_val"] is None)


def _check_export(exports, out, html):
    from nasforge.arch import ArchConfig

    side = json.loads((out / "model.onnx.json").read_text())
    assert len(exports) == 1
    e = exports[0]
    assert e["model"] == str(out / "model.onnx") and e["arch"] == ArchConfig.from_dict(side["arch"]).key
    assert e["latency"] == side["latency"] and e["accuracy"] == side["accuracy"]
    assert f"{side['latency']['ms']:.3f}" in html and f"{side['accuracy']['test_top1']:.2f}" in html


def test_report_of_a_run_with_only_a_supernet(tiny_run, tmp_path):
    page = tmp_path / "only-supernet.html"
    result = runner.invoke(app, ["report", str(tiny_run), "--out", str(page)])
    assert result.exit_code == 0, result.output
    assert "no data for: latency, predictor, searches, exports" in result.output
    html = page.read_text()
    data = read_embedded(html)
    _check_training(data, tiny_run)
    assert data["latency"] is None and data["predictor"] is None and data["searches"] == data["exports"] == []
    for name in ("latency", "predictor", "searches", "exports"):
        body = re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)[1]
        assert "No data:" in body and data["missing"][name] in unescape(body)
    assert [p.name for p in tmp_path.glob("*.png")] == ["only-supernet-training.png"]
    assert (tiny_run / "report.html").exists() is False  # --out was honoured, the run folder left as it was


def test_report_never_fails_on_a_skipped_or_broken_stage(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "search").mkdir()
    (run / "search" / "search.json").write_text("{}")
    (run / "search" / "pareto.json").write_text("[{not json")
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    data = read_embedded((run / "report.html").read_text())
    assert data["missing"]["searches"].startswith("unreadable:") and "pareto.json" in data["missing"]["searches"]
    assert data["training"] is not None


def test_report_of_no_folder_is_one_line(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such run folder"]


def test_arch_keys_read_back_exactly():
    from nasforge.report.gather_fit import arch_from_key
    from nasforge.space import load_space

    for name in ("mobilenetv3-tiny", "mobilenetv3-ofa", "proxylessnas-ofa", "resnet-ofa"):
        space = load_space(name)
        for arch in [space.smallest(), space.largest(), *space.sample_many(np.random.default_rng(0), 20)]:
            assert arch_from_key(arch.key) == arch


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (Debian: apt install chromium)")
def test_report_renders_in_a_real_browser(tiny_run, tmp_path):
    page = tmp_path / "report.html"
    assert runner.invoke(app, ["report", str(tiny_run), "--out", str(page)]).exit_code == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for name in SECTIONS:
        assert f'id="{name}"' in dom
    assert "data:image/png;base64," in dom and "nasforge run report" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert float(pixels[..., :3].std()) > 0.02  # not blank: text and figures drawn on the white page
