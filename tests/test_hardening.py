"""Issue #12: every failure is a one-line error and nothing is lost (stores, studies, tables, files)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nasforge.predictors import MeasurementStore, sample_for_predictor
from nasforge.testing import TINY_SPACES_DIR, tiny_space
from nasforge.testing.synthetic import SyntheticAccuracy
from nasforge.train.callbacks import TrainCallback

ROOT = Path(__file__).resolve().parent.parent
TINY_YAML = TINY_SPACES_DIR / "tiny-mbv3.yaml"
SHA = "f" * 64


def _store(path, space):
    return MeasurementStore(path, space, checkpoint_sha256=SHA, dataset="synthetic")


# ---------------------------------------------------------------------------------------------- 1. store
STORE_WORKER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from nasforge.predictors import MeasurementStore, sample_for_predictor
    from nasforge.testing import tiny_space
    from nasforge.testing.synthetic import SyntheticAccuracy
    store_path, go, seed, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    space = tiny_space("tiny-mbv3")
    archs = sample_for_predictor(space, 120, seed=seed)
    fn = SyntheticAccuracy(space, seed=0)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.002)
    store = MeasurementStore(store_path, space, checkpoint_sha256={sha!r}, dataset="synthetic")
    acc, new = store.measure(archs, fn, batch_size=batch)
    print(json.dumps({{"new": new, "n": len(archs)}}), flush=True)
""")


@pytest.mark.parametrize("seeds", [(1, 2), (1, 1)], ids=["different-seeds", "same-seed"])
def test_two_processes_share_one_store_without_losing_a_record(tmp_path, seeds):
    """Two real processes create and append ~60 batches each to one store at once: all kept, none torn."""
    script = tmp_path / "worker.py"
    script.write_text(STORE_WORKER.format(root=str(ROOT), sha=SHA))
    path, go = tmp_path / "m.jsonl", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(go), str(s), str(batch)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s, batch in zip(seeds, (2, 3))]  # batches of different sizes: appends of different lengths
    try:
        for p in procs:  # both imported and ready: start them together so their appends interleave
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        go.touch()
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    space = tiny_space("tiny-mbv3")
    wanted = {a.key: a for s in set(seeds) for a in sample_for_predictor(space, 120, seed=s)}
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a complete line
    recs = [json.loads(line) for line in lines[1:-1]]  # every line is one JSON record (no torn or merged lines)
    keys = [r["key"] for r in recs]
    assert len(keys) == len(set(keys))  # the same arch is stored once even when both measured it
    assert set(keys) == set(wanted)
    store = _store(path, space)  # a fresh reader sees everything
    archs = list(wanted.values())
    np.testing.assert_allclose(store.accuracies(archs), SyntheticAccuracy(space, seed=0)(archs))
    news = [json.loads(out.strip().splitlines()[-1])["new"] for out, _ in outs]
    assert sum(news) >= len(wanted)


# ---------------------------------------------------------------------------------------------- 2. optuna
def _search_problem():
    from nasforge.search import Evaluator, SearchProblem, parse_constraint
    from nasforge.testing.search import SyntheticAccuracy as SearchAccuracy
    from nasforge.testing.search import TableLatency

    space = tiny_space("tiny-mbv3")
    ev = Evaluator(space, SearchAccuracy(space), TableLatency(space))
    return SearchProblem(space, ev, ("accuracy", "latency"), (parse_constraint("latency<=8ms"),))


def _charged(trials):
    """COMPLETE trials that count toward the budget (a duplicate answered from an earlier trial does not)."""
    from optuna.trial import TrialState

    return [t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]


KILLED_SEARCH = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    import test_hardening
    from nasforge.search import make_engine, run_search
    p = test_hardening._search_problem()
    real, calls = p.evaluator.accuracy.predict, []
    def dying(features):  # SIGKILL while the third batch is in flight: 8 trials stay RUNNING
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(features)
    p.evaluator.accuracy.predict = dying
    run_search(p, make_engine("tpe", batch_size=8), budget=40, seed=0, storage=sys.argv[1])
""")


def test_killed_optuna_worker_in_flight_trials_are_failed_and_retried(tmp_path):
    import warnings

    import optuna
    from optuna.trial import TrialState

    from nasforge.search import make_engine, run_search

    script = tmp_path / "search.py"
    script.write_text(KILLED_SEARCH.format(root=str(ROOT), tests=str(ROOT / "tests")))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    killed = subprocess.run([sys.executable, str(script), url], check=False, capture_output=True, text=True,
                            timeout=240)
    assert killed.returncode == -9, killed.stderr
    p = _search_problem()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_search(p, make_engine("tpe", batch_size=8), budget=40, seed=0, storage=url)
    assert [str(w.message) for w in caught] == []  # warning-free
    study = optuna.load_study(study_name=result.meta["study_name"], storage=url)
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 8 and not [t for t in trials if t.state == TrialState.RUNNING]
    retried = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    assert sorted(retried) == sorted(t.number for t in failed)  # each lost trial's params asked again
    assert all(retried[t.number].params == t.params and retried[t.number].state == TrialState.COMPLETE for t in failed)
    assert len(_charged(trials)) == 40 == len(result.history)  # the full budget of COMPLETE trials


def test_stale_trial_of_another_host_is_failed_live_one_is_waited_for(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from nasforge.search import run_search
    from nasforge.search.engines.optuna_engines import HEARTBEAT_PREFIX, OptunaEngine

    url = f"sqlite:///{tmp_path / 'study.db'}"
    engine = OptunaEngine("tpe", batch_size=5, heartbeat_interval=0.1, grace_period=1.5, poll_interval=0.05)
    first = run_search(_search_problem(), engine, budget=10, seed=0, storage=url)
    study = optuna.load_study(study_name=first.meta["study_name"], storage=url)
    space = tiny_space("tiny-mbv3")
    fake = {}
    for owner, age in (("dead-host/41/aaaa", 1000.0), ("live-host/42/bbbb", 0.0)):  # through the storage
        t = study.ask()
        for i, k in enumerate(space.gene_sizes):
            t.suggest_int(f"g{i}", 0, int(k) - 1)
        t.set_user_attr("worker", {"id": owner, "host": owner.split("/")[0], "boot": None, "pidns": None, "pid": 1})
        study.set_user_attr(HEARTBEAT_PREFIX + owner, time.time() - age)
        fake[owner] = t.number
    t0 = time.monotonic()
    result = run_search(_search_problem(), engine, budget=25, seed=0, storage=url)
    waited = time.monotonic() - t0
    trials = study.get_trials()
    assert trials[fake["dead-host/41/aaaa"]].state == TrialState.FAIL
    assert trials[fake["live-host/42/bbbb"]].state == TrialState.FAIL  # its heartbeat stopped: failed after grace
    assert waited >= 1.0  # ... but only after waiting for it while it was live
    retried = {t.user_attrs["retry_of"] for t in trials
               if "retry_of" in t.user_attrs and t.state == TrialState.COMPLETE}
    assert retried == set(fake.values())
    assert len(_charged(trials)) == 25 == len(result.history)


def test_optuna_duplicates_are_answered_from_the_study_not_charged(tmp_path):
    import optuna

    from nasforge.search import make_engine, run_search
    from nasforge.search.engines.optuna_engines import OptunaEngine

    runs = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        p = _search_problem()
        result = run_search(p, make_engine("tpe", batch_size=8), budget=48, seed=0, storage=url)
        trials = optuna.load_study(study_name=result.meta["study_name"], storage=url).get_trials()
        runs.append([(t.params, t.user_attrs.get("duplicate_of"), t.values) for t in trials])
        dups = [t for t in trials if "duplicate_of" in t.user_attrs]
        assert dups, "tpe re-proposes evaluated archs on this space (canonical duplicates)"
        canon = {t.number: p.evaluator.canonical(np.array([[t.params[f"g{i}"] for i in range(p.space.num_genes)]]))
                 for t in trials}
        for t in dups:
            src = trials[t.user_attrs["duplicate_of"]]
            assert np.array_equal(canon[t.number], canon[src.number]) and t.values == src.values
        assert len(_charged(trials)) == 48 == len(result.history) == p.evaluator.evaluations
        assert len({g.tobytes() for g in result.history.genes}) == 48  # every charged trial a new arch
    assert runs[0] == runs[1]  # deterministic for a seed
    # Free duplicates are bounded: with none allowed every trial is charged (and the run still ends).
    p = _search_problem()
    url = f"sqlite:///{tmp_path / 'c'}.db"
    result = run_search(p, OptunaEngine("tpe", batch_size=8, max_free_duplicates=0), budget=48, seed=0, storage=url)
    trials = optuna.load_study(study_name=result.meta["study_name"], storage=url).get_trials()
    assert len(trials) == 48 and not [t for t in trials if "duplicate_of" in t.user_attrs]


@pytest.mark.parametrize("url", ["notaurl://x", "not a url at all", "sqlite:////proc/no-such-dir/study.db"])
def test_bad_optuna_storage_is_one_line_config_error(url):
    from nasforge.errors import ConfigError
    from nasforge.search import make_engine, run_search

    with pytest.raises(ConfigError, match="storage") as info:
        run_search(_search_problem(), make_engine("tpe"), budget=5, seed=0, storage=url)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- 5. resume
class _BatchNoiseAccuracy:
    """A batched predictor whose last bits depend on the batch (as BLAS kernels' do): a row's value
    differs by ~1e-9 between a batch of 10 and a batch of 100."""

    def __init__(self, space):
        from nasforge.testing.search import SyntheticAccuracy as SearchAccuracy

        self.base = SearchAccuracy(space, seed=3)

    def predict(self, features):
        return self.base.predict(features) + 1e-11 * len(features)


def _noisy_problem():
    from nasforge.search import Evaluator, SearchProblem, parse_constraint
    from nasforge.testing.search import TableLatency

    space = tiny_space("tiny-mbv3")
    ev = Evaluator(space, _BatchNoiseAccuracy(space), TableLatency(space))
    return SearchProblem(space, ev, ("accuracy", "latency"), (parse_constraint("latency<=8ms"),))


class _Killed(Exception):
    pass


@pytest.mark.parametrize("engine", ["nsga2", "nsga3", "evolution"])
def test_resumed_search_history_equals_uninterrupted_bit_for_bit(tmp_path, engine):
    from nasforge.search import make_engine, run_search

    def kill_at_2(step, n, hv):
        if step == 2:
            raise _Killed

    full = run_search(_noisy_problem(), make_engine(engine), budget=800, seed=3)
    with pytest.raises(_Killed):
        run_search(_noisy_problem(), make_engine(engine), budget=800, seed=3, out_dir=tmp_path, on_step=kill_at_2)
    resumed = run_search(_noisy_problem(), make_engine(engine), budget=800, seed=3, out_dir=tmp_path)
    a, b = full.history, resumed.history
    assert np.array_equal(a.genes, b.genes) and np.array_equal(a.step, b.step)
    for column in a.metrics:
        assert a.metrics[column].tobytes() == b.metrics[column].tobytes(), column
    assert a.F.tobytes() == b.F.tobytes() and a.G.tobytes() == b.G.tobytes()
    assert a.hv == b.hv  # exact, not rounded
    assert resumed.front_rows() == full.front_rows()


# ---------------------------------------------------------------------------------------------- 3. LUTs, targets
def _lut(tmp_path, entries, **extra):
    from nasforge.latency.ort_timing import LUT_FORMAT

    path = tmp_path / "lut.json"
    # json.dumps writes NaN / Infinity, as a runner with a broken timer would
    path.write_text(json.dumps({"format": LUT_FORMAT, "metadata": extra.pop("metadata", {"target": "cpu"}),
                                "entries": entries, **extra}))
    return path


@pytest.mark.parametrize(
    "timing, words",
    [
        ({"median_ms": float("nan")}, "median_ms nan"),
        ({"median_ms": 1e308}, "median_ms 1e+308"),
        ({"median_ms": float("inf")}, "median_ms inf"),
        ({"median_ms": -36.6}, "median_ms -36.6"),
        ({"median_ms": 0}, "median_ms 0"),
        ({"median_ms": "1.0"}, "no numeric median_ms"),
        ({"median_ms": 1.0, "p90_ms": float("nan")}, "p90_ms nan"),
        ({"median_ms": 1.0, "p90_ms": 0.5}, "below its median_ms"),
        ({"median_ms": 1.0, "reference_ms": -0.3}, "reference_ms -0.3"),
        ({"median_ms": 1.0, "reference_ms": 0.3, "reference_ratio": float("nan")}, "reference_ratio nan"),
    ],
)
def test_lut_with_an_invalid_timing_is_refused_naming_the_entry(tmp_path, timing, words):
    from nasforge.errors import LatencyError
    from nasforge.latency.lut import LatencyTable

    path = _lut(tmp_path, {"conv-3-8": {"median_ms": 0.5, "p90_ms": 0.6}, "bad-block": timing})
    with pytest.raises(LatencyError, match="entry 'bad-block'") as info:
        LatencyTable.load(path)
    assert words in str(info.value) and "\n" not in str(info.value)
    path = _lut(tmp_path, {"conv-3-8": {"median_ms": 0.5}}, verify=[{"key": "validation:r32", **timing}])
    with pytest.raises(LatencyError, match="verify entry 'validation:r32'"):
        LatencyTable.load(path)


@pytest.mark.parametrize(
    "calibration, words",
    [
        ({"kind": "linear-sum-blocks", "a": float("nan"), "b": 0.0, "c": 0.1}, "'a' must be finite"),
        ({"kind": "linear-sum-blocks", "a": 1.0, "b": "x", "c": 0.1}, "'b' must be a number"),
        ({"kind": "linear-sum-blocks", "a": 1.0, "b": 0.0}, "'c' must be a number"),
        ([1, 2, 3], "must be a mapping"),
    ],
)
def test_lut_with_a_broken_calibration_is_a_one_line_error(tmp_path, calibration, words):
    from nasforge.errors import LatencyError
    from nasforge.latency import calibration as cal
    from nasforge.latency.lut import LatencyTable

    path = _lut(tmp_path, {"conv-3-8": {"median_ms": 0.5}}, metadata={"target": "cpu", "calibration": calibration})
    with pytest.raises(LatencyError, match=words):
        LatencyTable.load(path)
    with pytest.raises(LatencyError, match=words):  # a table built in memory fails the same way when used
        cal.apply(calibration, np.ones(2), np.ones(2))
    ok = {"kind": "linear-sum-blocks", "a": 1.0, "b": 0.0, "c": 0.5}
    assert cal.apply(ok, np.ones(2), np.ones(2)).tolist() == [1.5, 1.5]


def test_lut_import_refuses_an_invalid_table(tmp_path):
    """`lut import` used to save a NaN table; search then failed with an empty constraint text."""
    from typer.testing import CliRunner

    from nasforge.cli import app

    path = _lut(tmp_path, {"conv-3-8": {"median_ms": float("nan")}},
                metadata={"target": "cpu", "space": "tiny-mbv3", "space_fingerprint": "x"})
    space = str(ROOT / "nasforge" / "testing" / "spaces" / "tiny-mbv3.yaml")
    result = CliRunner().invoke(app, ["lut", "import", str(path), "--space", space, "--out", str(tmp_path / "o.json")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "entry 'conv-3-8'" in lines[0], result.output
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("field", ["peak_flops", "bandwidth", "efficiency", "per_layer_overhead_ms"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400", "1" + "0" * 400])
def test_target_with_a_non_finite_number_is_refused(tmp_path, field, value):
    from nasforge.errors import LatencyError
    from nasforge.latency.targets import load_target

    spec = {"peak_flops": "1.0e+9", "bandwidth": "1.0e+8", "efficiency": "0.5", "per_layer_overhead_ms": "0.1"}
    spec[field] = value
    path = tmp_path / "t.yaml"
    path.write_text("name: toy\n" + "".join(f"{k}: {v}\n" for k, v in spec.items()))
    with pytest.raises(LatencyError, match=f"field '{field}'") as info:
        load_target(path)
    assert len(str(info.value)) < 200


def test_target_threads_must_be_an_integer(tmp_path):
    from nasforge.errors import LatencyError
    from nasforge.latency.targets import load_target

    path = tmp_path / "t.yaml"
    path.write_text("name: toy\npeak_flops: 1.0e+9\nbandwidth: 1.0e+8\nefficiency: 0.5\nthreads: 2.5\n")
    with pytest.raises(LatencyError, match="field 'threads'"):
        load_target(path)


# ---------------------------------------------------------------------------------------------- 4. one-line errors
@pytest.mark.parametrize("content", ["object-array", "pickle", "bad-zip"])
def test_predictor_weights_that_are_not_plain_arrays_are_a_predictor_error(tmp_path, content):
    import hashlib
    import io
    import pickle

    from nasforge.errors import PredictorError
    from nasforge.predictors import load_predictor, make_predictor, save_predictor
    from nasforge.predictors.base import predictor_metadata

    space = tiny_space("tiny-mbv3")
    archs = sample_for_predictor(space, 30, seed=0)
    pred = make_predictor("ridge", space.num_features, seed=0)
    pred.fit(space.features(archs), SyntheticAccuracy(space)(archs))
    folder = save_predictor(pred, tmp_path / "pred", predictor_metadata(space, checkpoint_sha256=SHA,
                                                                         dataset="synthetic", num_measurements=30))
    buf = io.BytesIO()
    if content == "object-array":
        np.savez(buf, coef=np.array([{"a": 1}, None], dtype=object))
    elif content == "pickle":
        pickle.dump({"coef": [1.0]}, buf)
    else:
        buf.write(b"PK\x03\x04" + b"\x00" * 64)
    blob = buf.getvalue()
    (folder / "weights.npz").write_bytes(blob)
    doc = json.loads((folder / "predictor.json").read_text())
    doc["weights_sha256"] = hashlib.sha256(blob).hexdigest()  # consistent, so only the content is wrong
    (folder / "predictor.json").write_text(json.dumps(doc))
    with pytest.raises(PredictorError, match="weights.npz: not a plain-array predictor weights file") as info:
        load_predictor(folder, space)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "arch, words",
    [
        ('{"resolution": 1e400, "depths": [1, 1, 1]}', "'resolution' must hold integers, got inf"),
        ('{"resolution": NaN, "depths": [1, 1, 1]}', "'resolution' must hold integers, got nan"),
        ('{"resolution": 16, "depths": [1, -Infinity, 1]}', "'depths' must hold integers"),
        ('{"resolution": 16, "depths": [1, 1, 1], "expand_ratios": [NaN]}', "'expand_ratios' must hold finite"),
        ('{"resolution": 16, "depths": [1, 1, 1], "width_mults": [1e400]}', "'width_mults' must hold finite"),
        ('{"resolution": 16, "depths": [1, 1, 1], "width_mults": [1' + "0" * 400 + "]}", "must hold finite"),
    ],
)
def test_non_finite_arch_numbers_are_arch_errors(arch, words):
    from nasforge.errors import ArchError
    from nasforge.io import read_arch_argument

    space = tiny_space("tiny-mbv3")
    with pytest.raises(ArchError, match=words) as info:
        space.parse_arch(read_arch_argument(arch))
    assert len(str(info.value)) < 200


def test_binary_arch_file_is_an_arch_error(tmp_path):
    from nasforge.errors import ArchError
    from nasforge.io import read_arch_argument

    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ArchError, match="not a text file"):
        read_arch_argument(str(path))
    with pytest.raises(ArchError, match="not a text file"):
        read_arch_argument(f"{path}#0")


# ---------------------------------------------------------------------------------------------- 5. litter
def _ckpt_payload(iteration, fingerprint="abc"):
    import torch

    from nasforge.train import checkpoint as ckpt

    return {"model": {"w": torch.ones(3)}, "optimizer": {}, "scheduler": {}, "phase": "p", "epoch": 1, "step": 0,
            "iteration": iteration, "rng": ckpt.rng_state(), "space_fingerprint": fingerprint}


def _age(path, seconds=60.0):
    import os

    t = time.time() - seconds
    os.utime(path, (t, t))


def test_checkpoint_save_and_load_remove_stale_temp_files_of_their_own_names_only(tmp_path):
    import fcntl
    import os

    from nasforge.train import checkpoint as ckpt

    ckpt.save_checkpoint(tmp_path, _ckpt_payload(10))
    stale = [tmp_path / ".last.pt.k1ll3d00.tmp", tmp_path / ".phase-warmup.pt.x.tmp"]
    others = [tmp_path / ".notes.txt.abc.tmp", tmp_path / "last.pt.tmp", tmp_path / ".last.pt.swp"]
    for p in stale + others:
        p.write_bytes(b"half a checkpoint")
        _age(p)
    live = tmp_path / ".last.pt.wr1t1ng0.tmp"  # a writer still holding its temp file
    live.write_bytes(b"in progress")
    _age(live)
    fd = os.open(live, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        state, _ = ckpt.load_latest(tmp_path)
        assert state["iteration"] == 10
        assert not any(p.exists() for p in stale) and all(p.exists() for p in others) and live.exists()
        stale[0].write_bytes(b"killed again")
        _age(stale[0])
        ckpt.save_checkpoint(tmp_path, _ckpt_payload(20))
        assert not stale[0].exists() and live.exists()
    finally:
        os.close(fd)
    fresh = tmp_path / ".last.pt.justmade.tmp"  # created a moment ago: its writer may not have locked it yet
    fresh.write_bytes(b"")
    ckpt.load_latest(tmp_path)
    assert fresh.exists()


def test_checkpoint_fallback_does_not_depend_on_error_message_text(tmp_path):
    """A folder whose name contains 'is for space' made a corrupt last.pt fatal instead of using prev.pt."""
    from nasforge.errors import CheckpointError, CheckpointMismatchError
    from nasforge.train import checkpoint as ckpt

    folder = tmp_path / "what this is for space reasons"
    ckpt.save_checkpoint(folder, _ckpt_payload(10))
    ckpt.save_checkpoint(folder, _ckpt_payload(20))
    (folder / "last.pt").write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="skipping"):
        state, path = ckpt.load_latest(folder, fingerprint="abc")
    assert path.name == "prev.pt" and state["iteration"] == 10
    with pytest.raises(CheckpointMismatchError, match="is for space"), pytest.warns(UserWarning, match="skipping"):
        ckpt.load_latest(folder, fingerprint="other")  # the corrupt last.pt is skipped, prev.pt is foreign
    assert issubclass(CheckpointMismatchError, CheckpointError)


def test_bundle_refuses_a_directory_destination_before_any_work(tmp_path, monkeypatch):
    from nasforge.errors import LatencyError
    from nasforge.latency import profiler
    from nasforge.latency.bundle import write_bundle
    from nasforge.latency.targets import load_target

    calls = []
    monkeypatch.setattr(profiler, "export_block", lambda spec, batch: calls.append(spec) or b"onnx")
    space, target = tiny_space("tiny-mbv3"), load_target("cpu")
    (tmp_path / "bdir").mkdir()
    with pytest.raises(LatencyError, match="is a directory") as info:
        write_bundle(tmp_path / "bdir", space, target)
    assert "\n" not in str(info.value) and calls == []  # nothing exported
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bdir"]  # no .bdir.tmp
    (tmp_path / "file").write_text("x")
    with pytest.raises(LatencyError, match="cannot create"):
        write_bundle(tmp_path / "file" / "b.zip", space, target)


def test_bundle_failing_midway_leaves_no_temp_file(tmp_path, monkeypatch):
    from nasforge.latency import backends
    from nasforge.latency.bundle import write_bundle
    from nasforge.latency.targets import load_target

    calls = []

    def export(spec, batch):
        calls.append(spec)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return b"onnx" * 1000

    monkeypatch.setattr(backends, "export_block", export)
    with pytest.raises(KeyboardInterrupt):
        write_bundle(tmp_path / "b.zip", tiny_space("tiny-mbv3"), load_target("cpu"))
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path):
    import os
    import stat

    from nasforge.io import atomic_write_text

    plain = tmp_path / "metrics.jsonl"
    with open(plain, "w") as fh:
        fh.write("{}\n")
    atomic_write_text(tmp_path / "run.json", "{}\n")
    mode = stat.S_IMODE(os.stat(tmp_path / "run.json").st_mode)
    assert mode == stat.S_IMODE(os.stat(plain).st_mode)  # 0666 & ~umask, not mkstemp's 0600
    os.chmod(tmp_path / "run.json", 0o640)
    atomic_write_text(tmp_path / "run.json", "{}\n")  # replacing keeps the file's mode
    assert stat.S_IMODE(os.stat(tmp_path / "run.json").st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "run.json"]


def test_negative_seed_is_a_config_error_for_optuna_engines():
    from nasforge.errors import ConfigError
    from nasforge.search import make_engine, run_search

    with pytest.raises(ConfigError, match="non-negative"):
        run_search(_search_problem(), make_engine("tpe"), budget=5, seed=-1)


# ---------------------------------------------------------------------------------------------- issue 22
def _one_error_line(result) -> str:
    """The CLI's answer to bad input: exit 2, exactly one `error:` line, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@contextlib.contextmanager
def _immutable(folder: Path):
    """`folder` made immutable (`chattr +i`): the tests run as root, where a chmod does not stop writes."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: cannot make a folder read-only for root")
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not permitted here ({done.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


@pytest.mark.parametrize("where", ["below", "itself"])
def test_import_ofa_refuses_a_read_only_out_before_reading_the_checkpoint(tmp_path, monkeypatch, where):
    from typer.testing import CliRunner

    from nasforge.cli import app
    from nasforge.foreign import ofa_runs

    monkeypatch.setattr(ofa_runs, "read_checkpoint", lambda path: pytest.fail("checkpoint read before --out checked"))
    source = tmp_path / "ofa.pth"
    source.write_bytes(b"weights")
    ro = tmp_path / "ro"
    ro.mkdir()
    out = ro / "run" if where == "below" else ro
    with _immutable(ro):
        result = CliRunner().invoke(app, ["import-ofa", str(source), "--out", str(out)])
        assert list(ro.iterdir()) == []
    line = _one_error_line(result)
    assert f"--out {out}" in line and "not writable" in line


@pytest.mark.parametrize("fmt", ["onnx", "torch", "ofa"])
def test_every_export_format_checks_its_output_before_loading_the_run(tmp_path, monkeypatch, fmt):
    from typer.testing import CliRunner

    from nasforge.cli import app
    from nasforge.train import runs

    monkeypatch.setattr(runs, "load_run", lambda *a, **k: pytest.fail("run loaded before --out was checked"))
    arch = [] if fmt == "ofa" else ["--arch", json.dumps(tiny_space().largest().to_dict())]
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "a_dir").mkdir()
    base = ["export", "--run", str(tmp_path / "run"), "--format", fmt, *arch, "--out"]
    line = _one_error_line(CliRunner().invoke(app, [*base, str(tmp_path / "a_dir")]))
    assert "is a folder" in line  # was IsADirectoryError at the final rename (format ofa)
    with _immutable(ro):
        line = _one_error_line(CliRunner().invoke(app, [*base, str(ro / "m.pt")]))
        assert list(ro.iterdir()) == []
    assert "not writable" in line


def test_export_ofa_checkpoint_checks_its_output_first(tmp_path):
    from nasforge.errors import ConfigError
    from nasforge.foreign.ofa_runs import export_ofa_checkpoint

    with pytest.raises(ConfigError, match="is a folder"):
        export_ofa_checkpoint(object(), tmp_path)  # the run (here not one) is not touched before the check


@pytest.mark.parametrize("name", ["tiny-mbv3", "tiny-resnet"])
def test_opset_range_is_what_export_checker_and_runtime_accept(tmp_path, monkeypatch, name):
    """Both ends of the range export, pass onnx.checker and run in ORT; one past either end fails when forced,
    and `export_onnx` refuses it up front with one line."""
    import warnings

    import torch

    from nasforge.errors import ConfigError
    from nasforge.export import export_onnx
    from nasforge.export import onnx as onnx_mod
    from nasforge.export.quantize import onnx_accuracy, quantize_int8
    from nasforge.supernet import build_supernet

    space = tiny_space(name)
    torch.manual_seed(0)
    arch = space.smallest()
    subnet = build_supernet(space).eval().extract(arch)
    low, high = onnx_mod.opset_range()
    low8, high8 = onnx_mod.opset_range("int8")
    assert (low, low8) == (7, 13) and high == high8 >= 17  # 17: the default
    for opset in (low, high):
        assert export_onnx(subnet, tmp_path / f"m{opset}.onnx", arch.resolution, opset=opset).max_abs_diff <= 1e-4
    images = np.random.default_rng(0).standard_normal((4, 3, arch.resolution, arch.resolution)).astype(np.float32)
    for opset in (low8, high8):
        fp32 = export_onnx(subnet, tmp_path / f"q{opset}.onnx", arch.resolution, opset=opset, dynamic_batch=True)
        int8 = quantize_int8(fp32.path, tmp_path / f"q{opset}.int8.onnx", images)
        assert 0.0 <= onnx_accuracy(int8, images, np.zeros(4, dtype=np.int64)) <= 100.0
    for opset in (low - 1, high + 1):
        with pytest.raises(ConfigError, match=f"--opset {opset} is not supported; give an opset from {low} to {high}"):
            export_onnx(subnet, tmp_path / "bad.onnx", arch.resolution, opset=opset)
    monkeypatch.setattr(onnx_mod, "check_opset", lambda opset, quantize=None: None)
    with pytest.raises(Exception):  # noqa: B017 - the low edge is real: forced past it, onnx.checker or ORT fails
        export_onnx(subnet, tmp_path / "forced.onnx", arch.resolution, opset=low - 1)
    with warnings.catch_warnings(record=True) as said:  # and so is the high one: torch says it is unsupported
        warnings.simplefilter("always")
        with contextlib.suppress(Exception):
            export_onnx(subnet, tmp_path / "forced.onnx", arch.resolution, opset=high + 1)
    assert any(f"opset version {high + 1} is not supported" in str(w.message) for w in said)
    fp32 = export_onnx(subnet, tmp_path / "q12.onnx", arch.resolution, opset=low8 - 1, dynamic_batch=True)
    with pytest.raises(Exception):  # noqa: B017 - ORT refuses the int8 graph of opset 12 (per-channel QDQ)
        onnx_accuracy(quantize_int8(fp32.path, tmp_path / "q12.int8.onnx", images), images, np.zeros(4, np.int64))


def _loop_folder(root: Path) -> Path:
    """A tiny ImageFolder whose folders also hold symlinks that cannot be followed: to themselves, in a loop."""
    from nasforge.testing.conformance.data_sources import make_folder

    make_folder(root, train=2, held=1, fixed=24)
    (root / "train" / "self").symlink_to("self")  # a 'class' linking to itself
    cls = sorted((root / "train").iterdir())[0]
    (cls / "me.png").symlink_to("me.png")  # an 'image' linking to itself
    (cls / "a.jpg").symlink_to("b.jpg")
    (cls / "b.jpg").symlink_to("a.jpg")  # two links in a loop
    (root / "val" / cls.name / "up").symlink_to("..")  # a folder link (not an image): ignored as before
    return cls


@pytest.mark.parametrize("loader", ["stream", "memory"])
def test_symlink_loops_in_a_data_folder_are_skipped_with_a_warning(tmp_path, loader):
    import warnings

    from nasforge.data import open_source
    from nasforge.testing.conformance.data_sources import settings

    cls = _loop_folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = open_source(settings(tmp_path, loader=loader, val_fraction=0.0), resolution=24)
    said = {str(w.message) for w in caught}  # (train/ is listed twice: for its classes, then for strays)
    assert said == {f"{p}: skipped (Too many levels of symbolic links)"
                    for p in (tmp_path / "train" / "self", cls / "me.png", cls / "a.jpg", cls / "b.jpg")}
    assert src.split_size("train") == 2 * 3 and src.split_size("test") == 1 * 3  # every real image, no link
    batches = src.train_batches(0, batch_size=3, seed=0)
    assert sum(int(x.shape[0]) for x, _ in batches) == 6


def test_a_data_folder_of_only_a_symlink_loop_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from nasforge.cli import app

    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "loop").symlink_to("loop")
    result = CliRunner().invoke(app, ["train-supernet", "--quiet", "--dataset", "imagefolder", "--data-dir",
                                      str(tmp_path), "--loader", "stream", "--out", str(tmp_path / "run")])
    assert "no class folders" in _one_error_line(result)
    assert f"warning: {tmp_path / 'train' / 'loop'}: skipped" in result.output


class _Stop(Exception):
    pass


class _StopAfter(TrainCallback):
    """Kills training (an exception) right after optimizer step `iteration`."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_step_end(self, trainer) -> None:
        if trainer.state.iteration == self.iteration:
            raise _Stop


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from nasforge.testing.train import tiny_train_config
    from nasforge.train import train_supernet

    cfg = tiny_train_config(schedule__name="sandwich", epochs=2, checkpoint_every_steps=3)
    run = tmp_path_factory.mktemp("whole") / "run"
    return cfg, train_supernet(cfg, run)


def test_run_resumed_mid_epoch_logs_what_an_uninterrupted_one_does(uninterrupted, tmp_path):
    """8 steps an epoch, a checkpoint every 3: killed after step 5, it resumes from step 3 of epoch 1."""
    import torch

    from nasforge.train import train_supernet
    from nasforge.train.callbacks import METRICS_FILE, read_metrics

    cfg, whole = uninterrupted
    run = tmp_path / "run"
    with pytest.raises(_Stop):
        train_supernet(cfg, run, callbacks=[_StopAfter(5)])
    resumed = train_supernet(cfg, run, resume=True)
    assert resumed.finished
    wall_clock = ("images_per_s", "train_seconds")
    expected = [{k: v for k, v in r.items() if k not in wall_clock} for r in read_metrics(whole.run_dir / METRICS_FILE)]
    got = [{k: v for k, v in r.items() if k not in wall_clock} for r in read_metrics(run / METRICS_FILE)]
    assert len(expected) == 2 and got == expected  # every logged number, train_loss and train_acc included
    a, b = whole.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _optuna_worker(problem, url: str, budget: int, worker: int, out: list) -> None:
    from nasforge.search import make_engine, run_search

    try:
        result = run_search(problem, make_engine("tpe", batch_size=7), budget=budget, seed=0, storage=url,
                            worker=worker)
        out.append(result.meta["study_name"])
    except BaseException as exc:  # reported to the test's thread
        out.append(exc)


@pytest.mark.parametrize("locked", [True, False], ids=["sqlite-lock", "no-lock"])
def test_two_optuna_workers_never_charge_more_than_the_budget(tmp_path, monkeypatch, locked):
    """Two workers (threads) on one SQLite study: exactly `budget` charged trials. Without the file lock (as on
    a database server) the surplus a race asks for is failed, never evaluated or counted."""
    import threading

    import optuna
    from optuna.trial import TrialState

    from nasforge.search import optuna_workers
    from nasforge.search.engines import optuna_engines

    if not locked:
        monkeypatch.setattr(optuna_workers, "file_lock", lambda path: contextlib.nullcontext())
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna_engines._storage(url)  # the tables, before two threads race to create them
    budget, done = 45, []
    problems = [_search_problem() for _ in (0, 1)]  # built here: the space registries fill lazily, not thread-safe
    threads = [threading.Thread(target=_optuna_worker, args=(problems[w], url, budget, w, done)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 2 and all(isinstance(d, str) for d in done) and done[0] == done[1], done
    trials = optuna.load_study(study_name=done[0], storage=url).get_trials()
    assert len(_charged(trials)) == budget
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if locked:
        assert not [t for t in trials if t.state == TrialState.FAIL]  # nothing asked beyond the budget


def test_second_profile_on_one_table_fails_at_once_while_the_first_times(tmp_path, monkeypatch):
    """A profile (a thread, stopped inside its lock) holds the table; a second `nasforge profile` on the same
    --out is one line and times nothing; the lock goes with the first one."""
    import threading

    from typer.testing import CliRunner

    from nasforge.cli import app
    from nasforge.latency import profiler
    from nasforge.latency.targets import load_target

    timers, entered, release = [], threading.Event(), threading.Event()

    class _HeldTimer:  # no real timing: the first profile waits here, inside its lock, until released
        def __init__(self, *args, **kwargs) -> None:
            timers.append(threading.current_thread().name)
            if len(timers) == 1:
                entered.set()
                release.wait(120)
            raise _Stop

    monkeypatch.setattr(profiler, "Timer", _HeldTimer)
    out = tmp_path / "tables" / "cpu.json"
    outcome: list = []

    def first() -> None:
        try:
            profiler.profile(tiny_space(), load_target("cpu"), out, pin=False)
        except BaseException as exc:
            outcome.append(exc)

    holder = threading.Thread(target=first, name="first")
    holder.start()
    try:
        assert entered.wait(120)
        result = CliRunner().invoke(app, ["profile", "--target", "cpu", "--space", str(TINY_YAML), "--out", str(out)])
        lock_held = (out.parent / ".cpu.json.lock").exists()
    finally:
        release.set()
        holder.join()
    line = _one_error_line(result)
    assert f"{out}: another `nasforge profile` is writing this table" in line
    assert timers == ["first"] and lock_held  # the second timed nothing
    assert len(outcome) == 1 and isinstance(outcome[0], _Stop)
    assert list(out.parent.iterdir()) == []  # the lock file went with the first profile (no table: it timed nothing)


def test_table_lock_is_exclusive_and_released_on_error(tmp_path):
    from nasforge.errors import LatencyError
    from nasforge.latency.profiler import table_lock

    out = tmp_path / "t.json"
    with pytest.raises(_Stop), table_lock(out):
        with pytest.raises(LatencyError, match="another `nasforge profile` is writing this table"), table_lock(out):
            pass
        raise _Stop
    assert list(tmp_path.iterdir()) == []
    with table_lock(out):  # free again
        assert [p.name for p in tmp_path.iterdir()] == [".t.json.lock"]
    ro = tmp_path / "ro"
    ro.mkdir()
    with _immutable(ro), pytest.raises(LatencyError, match="cannot create the lock file"), table_lock(ro / "t.json"):
        pass


def test_import_ofa_predictor_refuses_a_read_only_run_before_loading_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nasforge.cli import app
    from nasforge.train import runs

    monkeypatch.setattr(runs, "load_run", lambda *a, **k: pytest.fail("run loaded before its predictor/ was checked"))
    (tmp_path / "acc.pth").write_bytes(b"weights")
    run = tmp_path / "run"
    run.mkdir()
    with _immutable(run):
        result = CliRunner().invoke(app, ["import-ofa", "--predictor", str(tmp_path / "acc.pth"), "--run", str(run)])
    line = _one_error_line(result)
    assert f"{run / 'predictor'}: {run} is not writable" in line


def test_finite_json_makes_every_non_finite_float_null_and_keeps_the_rest():
    from nasforge.io import finite_json

    record = {"loss": float("nan"), "eval": {"largest": 91.5, "lr": float("inf")},
              "curve": [1.0, float("-inf"), (2, 3)]}
    assert finite_json(record) == {"loss": None, "eval": {"largest": 91.5, "lr": None}, "curve": [1.0, None, [2, 3]]}
    json.dumps(finite_json(record), allow_nan=False)  # standard JSON, no NaN tokens
