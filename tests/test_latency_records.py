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
    assert bool(model.calibration) is want["calibrated"]
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
