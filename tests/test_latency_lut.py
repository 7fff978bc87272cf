"""LUT build on a tiny space (real ORT timings), resume, lookups, missing-key error, fast prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nasforge.errors import LatencyError
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import LatencyTable
from nasforge.latency.model import BlockSum, TableFeatures, TableLatencyModel, load_latency_model, roofline_ms
from nasforge.latency.profiler import Timer, build_table, validate_table
from nasforge.latency.targets import load_target
from nasforge.space import load_space
from nasforge.testing import tiny_space


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    space = tiny_space("tiny-mbv3")
    timer = Timer(load_target("cpu"), threads=1, warmup=1, repeats=5, pin=False)
    out = tmp_path_factory.mktemp("lut") / "tiny.json"
    table = build_table(space, timer, out)
    return space, timer, out, table


def test_build_measures_every_block_with_metadata(built):
    space, _, out, table = built
    data = json.loads(out.read_text())
    assert set(data["entries"]) == {s.key for s in distinct_layers(space)}
    for entry in data["entries"].values():
        assert 0 < entry["median_ms"] <= entry["p90_ms"]
    meta = data["metadata"]
    for field in ("target", "device", "ort_version", "provider", "threads", "batch", "date", "protocol",
                  "space_fingerprint", "build_seconds"):
        assert field in meta, field
    assert meta["provider"] == "CPUExecutionProvider" and meta["threads"] == 1
    assert meta["protocol"]["graph_optimization"] == "ORT_ENABLE_ALL"


def test_rerun_resumes_and_skips_measured_entries(built, monkeypatch):
    space, timer, out, _ = built
    data = json.loads(out.read_text())
    dropped = sorted(data["entries"])[:3]
    for key in dropped:
        del data["entries"][key]
    out.write_text(json.dumps(data))
    calls = []
    real = timer.blocks
    monkeypatch.setattr(timer, "blocks", lambda specs, ref=None: calls.extend(s.key for s in specs) or real(specs, ref))
    build_table(space, timer, out)
    assert sorted(calls) == dropped
    calls.clear()
    build_table(space, timer, out)
    assert calls == []


def test_resume_refuses_another_space(built, tmp_path):
    _, timer, out, _ = built
    with pytest.raises(LatencyError, match="space_fingerprint"):
        build_table(tiny_space("tiny-resnet"), timer, out)


def test_lookup_sum_and_missing_key_error(built):
    space, _, out, _ = built
    table = LatencyTable.load(out)
    model = TableLatencyModel(table, space)
    arch = space.sample(np.random.default_rng(3))
    expected = sum(table.ms(s.key) for s in space.layers(arch))
    first = table.entries[space.layers(arch)[0].key]  # each block read at the table's reference speed
    assert first["reference_ms"] > 0 and table.block_speed_ms > 0
    assert table.ms(space.layers(arch)[0].key) == pytest.approx(first["reference_ratio"] * table.block_speed_ms)
    assert model.predict([arch])[0] == pytest.approx(expected)
    missing = space.layers(arch)[2].key
    del table.entries[missing]
    with pytest.raises(LatencyError, match=missing):
        TableLatencyModel(table, space).predict([arch])


def test_validation_stores_metrics_and_calibration(built):
    space, timer, out, _ = built
    table = LatencyTable.load(out)
    # deterministic "measurement": 0.7 x the blocks' own time (less the per-run overhead) + 0.05 ms
    features = TableFeatures(table, space)
    result = validate_table(space, table, timer, 12,
                            measure=lambda a: {"median_ms": 0.7 * features([a])["net_ms"][0] + 0.05})
    assert result["trusted"] and result["calibrated_in_sample"]["mape"] < 1e-4
    saved = LatencyTable.load(out).metadata
    assert saved["calibration"]["coef"]["net_ms"] == pytest.approx(0.7, rel=1e-4)
    assert saved["validation"]["n"] == result["n"]
    arch = space.sample(np.random.default_rng(5))
    model = load_latency_model("cpu", space, out)
    assert model.source == "measured"
    assert model.predict([arch])[0] == pytest.approx(0.7 * features([arch])["net_ms"][0] + 0.05, rel=1e-4)


def test_real_validation_runs_end_to_end(built, tmp_path):
    space, timer, out, _ = built
    table = LatencyTable.load(out)
    table.path = ""
    result = validate_table(space, table, timer, 6)
    assert result["n"] == 6 and 0 <= result["raw"]["within_10pct"] <= 1
    assert "noise" in result and isinstance(result["trusted"], bool)


@pytest.mark.parametrize("name", ["mobilenetv3-ofa-cifar", "tiny-mbv3", "tiny-resnet"])
def test_fast_path_equals_layer_sum(name):
    space = tiny_space(name) if name.startswith("tiny") else load_space(name)
    target = load_target("rpi5")
    summer = BlockSum(space, lambda s: roofline_ms(s, target))
    archs = space.sample_many(np.random.default_rng(0), 200)
    sums, blocks = summer(archs)
    for a, s, b in zip(archs, sums, blocks):
        specs = space.layers(a)
        assert s == pytest.approx(sum(roofline_ms(x, target) for x in specs))
        assert b == len(specs)
    genes = space.encode_batch(archs)
    assert summer(genes)[0] == pytest.approx(sums)


def test_predicting_10k_archs_in_one_batch():
    """Batched prediction of 10,000 archs (its speed is a benchmark: BENCHMARKS.md, not a timed test)."""
    space = load_space("mobilenetv3-ofa-cifar")
    with pytest.warns(UserWarning, match="ESTIMATED"):
        model = load_latency_model("rpi5", space)
    archs = space.sample_many(np.random.default_rng(0), 10_000)
    out = model.predict(archs)
    assert out.shape == (10_000,) and np.all(out > 0)
    np.testing.assert_allclose(out[:5], [model.predict([a])[0] for a in archs[:5]])
