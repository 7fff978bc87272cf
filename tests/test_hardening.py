"""Issue #12: every failure is a one-line error and nothing is lost (stores, studies, tables, files)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nasforge.predictors import MeasurementStore, sample_for_predictor
from nasforge.testing import tiny_space
from nasforge.testing.synthetic import SyntheticAccuracy

ROOT = Path(__file__).resolve().parent.parent
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
