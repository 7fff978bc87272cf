"""LUT build on a tiny space (real ORT timings), resume, lookups, missing-key error, fast prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nasforge.errors import LatencyError
from nasforge.latency.calibration import kendall_tau
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import LatencyTable
from nasforge.latency.model import BlockSum, TableFeatures, TableLatencyModel, load_latency_model, roofline_ms
from nasforge.latency.profiler import Timer, build_table, choose_subnets, reference_subnet, validate_table
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


def test_real_validation_runs_end_to_end(built, monkeypatch):
    """Real ORT timings of whole subnets; every figure of the result is then recomputed here from the timings
    the timer returned (read at the run's reference speed) and the table's block sums, and must match."""
    space, timer, out, _ = built
    table = LatencyTable.load(out)
    table.path = ""
    groups: list[tuple[list, list[dict]]] = []
    real = timer.subnets

    def spy(space_, archs, reference=None):  # type: ignore[no-untyped-def]
        timings = real(space_, archs, reference)
        groups.append((list(archs), timings))
        return timings

    monkeypatch.setattr(timer, "subnets", spy)
    result = validate_table(space, table, timer, 6)

    archs, designed = choose_subnets(space, TableFeatures(table, space), 6, np.random.default_rng(0))
    assert designed.tolist() == [True, True, False, False, False, False]  # smallest and largest, 4 random
    measured_archs = [a for group, _ in groups for a in group]
    assert measured_archs == archs + archs[2:]  # each once, then the random ones again (the noise check)
    timings = [t for _, ts in groups for t in ts]
    assert all(t["reference_ms"] > 0 for t in timings)
    speed = float(np.median([t["reference_ms"] for t in timings]))

    def at_speed(t):  # type: ignore[no-untyped-def]
        return t["reference_ratio"] * speed if t.get("reference_ratio") else t["median_ms"] * speed / t["reference_ms"]

    measured = np.array([at_speed(t) for t in timings[:6]])
    sums = TableFeatures(table, space)(archs)["sum_ms"]  # the raw prediction: the table's block sums
    assert sums == pytest.approx([sum(table.ms(s.key) for s in space.layers(a)) for a in archs], rel=1e-12)
    err = np.abs(sums - measured)
    assert result["n"] == 6 and result["n_design"] == 2 and result["n_scored"] == 6  # < 5 random: all scored
    assert result["raw"] == {"mape": round(float(np.mean(err / measured) * 100), 3),
                             "within_10pct": round(float(np.mean(err <= 0.1 * measured + 1e-12)), 4),
                             "kendall_tau": round(kendall_tau(sums, measured), 4), "n": 6}
    assert result["measured_ms_range"] == [round(float(measured.min()), 4), round(float(measured.max()), 4)]
    assert result["smallest"]["arch"] == archs[int(np.argmin(sums))].key
    assert result["smallest"]["measured_ms"] == round(float(measured[np.argmin(sums)]), 5)
    assert result["speed_reference"]["subnet"] == reference_subnet(space).key
    assert result["speed_reference"]["subnet_ms"] == round(speed, 6)
    diff = np.abs(np.array([at_speed(t) for t in timings[6:]]) / measured[2:] - 1)
    noise = result["noise"]
    assert (noise["repeat_n"], noise["repeat_median_diff"], noise["repeat_max_diff"]) == (
        4, round(float(np.median(diff)), 4), round(float(diff.max()), 4))
    assert noise["unstable_share"] == round(float(np.mean([not t.get("stable", True) for t in timings])), 4)
    assert result["trusted"] is noise["trusted"] is (noise["reason"] is None)
    kept = table.metadata["validation" if result["trusted"] else "validation_rejected"]
    assert [s["arch"] for s in kept.get("samples", table.metadata.get("validation_samples"))] == [a.key for a in archs]


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
