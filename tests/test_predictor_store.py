"""The measurement store resumes without re-measuring, survives a torn last line, refuses mixing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nasforge.errors import ConfigError, PredictorError, PredictorMismatchError
from nasforge.predictors import MeasurementStore, build_predictor, load_predictor, sample_for_predictor
from nasforge.predictors.base import find_run_predictor, read_predictor_metadata
from nasforge.testing import tiny_space
from nasforge.testing.synthetic import SyntheticAccuracy

SHA = "f" * 64


@pytest.fixture
def space():
    return tiny_space("tiny-mbv3")


def _store(path, space, sha=SHA, **kw):
    return MeasurementStore(path, space, checkpoint_sha256=sha, dataset="synthetic", **kw)


def test_store_resumes_without_remeasuring(space, tmp_path):
    fn = SyntheticAccuracy(space, seed=0)
    archs = sample_for_predictor(space, 40, seed=1)
    acc1, new1 = _store(tmp_path / "m.jsonl", space).measure(archs[:25], fn, batch_size=10)
    assert new1 == 25 and fn.calls == 3 and len(fn.measured) == 25
    # A fresh store object (a new process) over the same file measures only the 15 missing.
    fn2 = SyntheticAccuracy(space, seed=0)
    acc2, new2 = _store(tmp_path / "m.jsonl", space).measure(archs, fn2, batch_size=10)
    assert new2 == 15 and sorted(fn2.measured) == sorted(a.key for a in archs[25:])
    np.testing.assert_array_equal(acc2[:25], acc1)
    np.testing.assert_allclose(acc2, fn(archs))
    fn3 = SyntheticAccuracy(space, seed=0)
    _, new3 = _store(tmp_path / "m.jsonl", space).measure(archs, fn3)
    assert new3 == 0 and fn3.calls == 0


def test_duplicates_and_non_canonical_archs_share_one_measurement(space, tmp_path):
    fn = SyntheticAccuracy(space, seed=0)
    a = space.sample(np.random.default_rng(0))
    store = _store(tmp_path / "m.jsonl", space)
    acc, new = store.measure([a, a, a], fn)
    assert new == 1 and len(fn.measured) == 1 and acc[0] == acc[1] == acc[2]


def test_torn_last_line_is_ignored_and_cut_before_appending(space, tmp_path):
    fn = SyntheticAccuracy(space, seed=0)
    archs = sample_for_predictor(space, 12, seed=2)
    path = tmp_path / "m.jsonl"
    _store(path, space).measure(archs[:10], fn, batch_size=5)
    with open(path, "ab") as fh:  # a crash mid-write leaves half a record
        fh.write(b'{"key":"r16-d1,1,1","arch":{"resol')
    store = _store(path, space)
    assert len(store) == 10
    fn2 = SyntheticAccuracy(space, seed=0)
    acc, new = store.measure(archs, fn2)
    assert new == 2
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 12 and all(json.loads(line) for line in lines)
    assert len(_store(path, space)) == 12
    np.testing.assert_allclose(acc, fn(archs))


def test_corrupt_middle_line_is_an_error(space, tmp_path):
    path = tmp_path / "m.jsonl"
    _store(path, space).measure(sample_for_predictor(space, 3, seed=0), SyntheticAccuracy(space))
    lines = path.read_text().splitlines()
    lines[2] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PredictorError, match="line 3 is corrupt"):
        _store(path, space)


def test_store_refuses_other_checkpoint_or_space(space, tmp_path):
    path = tmp_path / "m.jsonl"
    _store(path, space).measure(sample_for_predictor(space, 3, seed=0), SyntheticAccuracy(space))
    with pytest.raises(PredictorMismatchError, match="checkpoint_sha256"):
        _store(path, space, sha="0" * 64)
    with pytest.raises(PredictorMismatchError, match="space_fingerprint"):
        _store(path, space.with_options(num_classes=100))
    with pytest.raises(PredictorMismatchError, match="split"):
        _store(path, space, split="test")
    with pytest.raises(PredictorMismatchError, match="protocol"):
        _store(path, space, protocol={"calib_images": 500})


def test_bad_measure_output_is_not_stored(space, tmp_path):
    store = _store(tmp_path / "m.jsonl", space)
    archs = sample_for_predictor(space, 4, seed=0)
    with pytest.raises(PredictorError, match="NaN"):
        store.measure(archs, lambda a: np.full(len(a), np.nan))
    with pytest.raises(PredictorError, match="3 accuracies for 4"):
        store.measure(archs, lambda a: np.zeros(3))
    assert len(_store(tmp_path / "m.jsonl", space)) == 0


def test_sampling_is_prefix_stable_distinct_and_spread_over_resolution(space):
    a = sample_for_predictor(space, 300, seed=5)
    assert a[:120] == sample_for_predictor(space, 120, seed=5)
    assert len({x.key for x in a}) == 300
    res, counts = np.unique([x.resolution for x in a], return_counts=True)
    assert list(res) == list(space.resolutions) and counts.max() - counts.min() <= 10  # a few duplicates are dropped
    assert a != sample_for_predictor(space, 300, seed=6)
    with pytest.raises(ConfigError, match="only"):
        sample_for_predictor(space, space.num_subnets(include_resolution=True) + 1)


def test_build_predictor_end_to_end_and_resume(space, tmp_path):
    fn = SyntheticAccuracy(space, seed=0)
    kw = dict(checkpoint_sha256=SHA, dataset="synthetic", store_path=tmp_path / "run" / "measurements" / "val.jsonl",
              out_dir=tmp_path / "run" / "predictor", model="ridge", holdout=0.25, batch_size=16)
    pred, report = build_predictor(space, fn, samples=200, seed=0, **kw)
    assert report.newly_measured == 200 and len(fn.measured) == 200
    assert report.num_train == 150 and report.num_holdout == 50
    assert report.metrics["kendall_tau"] > 0.7
    meta = read_predictor_metadata(find_run_predictor(tmp_path / "run"))
    assert meta["space_fingerprint"] == space.fingerprint and meta["checkpoint_sha256"] == SHA
    assert meta["dataset"] == "synthetic" and meta["num_measurements"] == 200 and meta["model"] == "ridge"
    assert meta["metrics"]["kendall_tau"] == pytest.approx(report.metrics["kendall_tau"])
    # Re-running with more samples measures only the new ones (sampling is prefix-stable).
    fn2 = SyntheticAccuracy(space, seed=0)
    _, report2 = build_predictor(space, fn2, samples=260, seed=0, **kw)
    assert report2.newly_measured == 60 and len(fn2.measured) == 60
    loaded = load_predictor(find_run_predictor(tmp_path / "run"), space, checkpoint_sha256=SHA)
    assert loaded.metadata["num_measurements"] == 260


def test_find_run_predictor_names_the_command(tmp_path):
    with pytest.raises(PredictorError, match="nasforge build-predictor --run"):
        find_run_predictor(tmp_path)
