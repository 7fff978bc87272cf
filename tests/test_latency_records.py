"""Golden latency tables: tables written by nasforge 9e1fac1 (before the typed records) load and predict the same
numbers today, and the validation that `import_table` stores from a device's table is the same record.

Fixtures and how they were written: tests/data/latency_v6 (make_fixtures.py).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from nasforge.arch import ArchConfig
from nasforge.latency.bundle import import_table
from nasforge.latency.lut import LatencyTable
from nasforge.latency.model import load_latency_model
from nasforge.testing import tiny_space

DATA = Path(__file__).parent / "data" / "latency_v6"
EXPECTED = json.loads((DATA / "expected.json").read_text())
TABLES = ["profiled.json", "rejected.json", "device.json"]


def _archs(space):
    return [ArchConfig.from_dict(a) for a in EXPECTED["archs"]]


def _check(table_path: Path, want: dict, space) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_latency_model("cpu", space, table_path)
    np.testing.assert_allclose(model.predict(_archs(space)), want["ms"], rtol=1e-12, atol=0)
    assert model.calibrated is want["calibrated"]
    table = LatencyTable.load(table_path)
    assert table.block_speed_ms == pytest.approx(want["block_speed_ms"], rel=1e-12)
    assert {k: table.ms(k) for k in want["first_block_ms"]} == pytest.approx(want["first_block_ms"], rel=1e-12)


@pytest.mark.parametrize("name", TABLES)
def test_old_tables_predict_the_same(name):
    space = tiny_space(EXPECTED["space"])
    _check(DATA / name, EXPECTED["predictions"][name], space)


def test_import_of_a_device_table_stores_the_same_validation(tmp_path):
    space = tiny_space(EXPECTED["space"])
    dest = tmp_path / "imported.json"
    table, report = import_table(DATA / "device.json", space, dest)
    want = EXPECTED["imported-from-device.json"]
    stored = json.loads(dest.read_text())["metadata"]
    got = {k: v for k, v in stored["validation"].items() if k != "date"}
    assert got == want["validation"]
    assert stored["calibration"] == want["calibration"]
    assert stored["validation_samples"] == want["validation_samples"]
    assert stored["speed_reference"] == want["speed_reference"]
    _check(dest, EXPECTED["predictions"]["imported-from-device.json"], space)


STORED = [*sorted((Path(__file__).parents[1] / "predictors" / "latency").glob("*.json")),
          Path(__file__).parent / "data" / "legacy_v3_cpu__mobilenetv3-ofa-cifar.json",
          DATA / "profiled.json", DATA / "rejected.json"]


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.name)
def test_stored_validations_read_into_records_and_write_back_byte_for_byte(path):
    meta = json.loads(path.read_text())["metadata"]
    table = LatencyTable.load(path)
    found = 0
    for key, record in (("validation", table.validation), ("validation_rejected", table.validation_rejected)):
        assert (record is None) == (key not in meta)
        if record is not None:
            found += 1
            assert json.dumps(record.to_dict()) == json.dumps(meta[key])  # same keys, same order, same values
            assert record.headline.mape == (meta[key].get("calibrated_cv5") or meta[key]["raw"])["mape"]
    assert found == 1


def test_records_are_typed_views_of_the_stored_figures():
    table = LatencyTable.load(DATA / "rejected.json")
    v = table.validation_rejected
    assert table.validation is None and v is not None and not v.is_trusted and v.trusted is False
    assert v.noise.repeat_median_diff == 0.3 and v.noise.reason.startswith("the same subnets measured twice")
    assert v.calibrated_cv5.within_10pct == 1.0 and v.linear_sum_blocks_cv5.kendall_tau == 0.8333
    assert set(v.extra) == {"would_be_calibration", "samples"}  # kept, not lost
    legacy = LatencyTable.load(Path(__file__).parent / "data" / "legacy_v3_cpu__mobilenetv3-ofa-cifar.json")
    old = legacy.validation
    assert old.noise is None and old.trusted is None and old.is_trusted and old.linear_sum_blocks_cv5 is None


@pytest.mark.parametrize("bad", [{"n": 3, "seed": 0, "raw": {"mape": 1.0}}, {"n": 3, "seed": 0, "raw": 7},
                                 {"n": 3, "seed": 0, "raw": {"mape": 1, "within_10pct": 1, "kendall_tau": 1, "n": 3},
                                  "noise": {"repeat_n": 1}}, ["n"]])
def test_a_malformed_validation_is_a_latency_error(bad):
    from nasforge.errors import LatencyError
    from nasforge.latency.records import Validation

    with pytest.raises(LatencyError, match="where"):
        Validation.from_dict(bad, "where")


def test_models_say_whether_calibrated_and_from_which_table():
    space = tiny_space(EXPECTED["space"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        roofline = load_latency_model("rpi5", space)
        measured = load_latency_model("cpu", space, DATA / "profiled.json")
    assert roofline.table is None and roofline.calibrated is False
    assert measured.table.path == str(DATA / "profiled.json") and measured.calibrated is True


@pytest.mark.parametrize("name", TABLES)
def test_cli_reports_what_the_records_say(name, tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from nasforge.cli import app

    space = tiny_space(EXPECTED["space"])
    arch = json.dumps(EXPECTED["archs"][1])
    res = CliRunner().invoke(app, ["latency", "--target", "cpu", "--space", space.source, "--lut", str(DATA / name),
                                   "--arch", arch, "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["calibrated"] is EXPECTED["predictions"][name]["calibrated"] and got["table"] == str(DATA / name)
    assert got["latency_ms"] == pytest.approx(EXPECTED["predictions"][name]["ms"][1], rel=1e-12)
    monkeypatch.setenv("NASFORGE_HOME", str(tmp_path))
    (tmp_path / "latency").mkdir()
    shutil.copy(DATA / name, tmp_path / "latency" / name)
    res = CliRunner().invoke(app, ["targets", "--json"])
    assert res.exit_code == 0, res.output
    listed = [t for target in json.loads(res.stdout) for t in target["tables"] if t["file"].endswith(name)]
    assert len(listed) == 1 and listed[0]["validation"] == json.loads((DATA / name).read_text())["metadata"].get(
        "validation")


def test_no_latency_function_is_over_80_lines():
    import ast

    root = Path(__file__).parents[1] / "nasforge"
    long = []
    for path in [*sorted((root / "latency").glob("*.py")), root / "cli" / "latency.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long


def test_timing_stats_write_the_stored_timing_and_read_it_back():
    from nasforge.latency import ort_timing

    stats = ort_timing.summarise(np.array([1.0, 1.1, 0.9, 1.2, 1.0, 1.05]), round_of=np.array([0, 0, 1, 1, 2, 2]))
    assert list(stats.to_dict()) == ["median_ms", "p90_ms", "median_all_ms", "spread", "rounds_spread",
                                     "uncertainty", "runs", "clean", "preempted"]  # the keys tables have stored
    stored = json.loads((DATA / "device.json").read_text())
    for row in [*stored["entries"].values(), *stored["verify"]]:
        stats = ort_timing.TimingStats.from_dict(row)
        kept = {k: v for k, v in row.items() if k not in ("key", "role", "arch", "design", "predicted_ms",
                                                          "predicted_source", "file")}
        assert stats.to_dict() == kept
    samples = json.loads((DATA / "profiled.json").read_text())["metadata"]["validation_samples"]
    assert "median_all_ms" not in samples[0] and samples[0]["attempts"] == 1 and samples[0]["stable"] is True
