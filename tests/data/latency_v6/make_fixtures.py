"""How the tables in this folder were written: by nasforge 9e1fac1 (main at dbc1f28), before the typed records.

    git worktree add /tmp/old 9e1fac1 && PYTHONPATH=/tmp/old python make_fixtures.py OUT

profiled.json: `build_table` with real ORT block timings, then a trusted validation (whole subnets faked
steady, beside the reference subnet); rejected.json: the same blocks, a noisy validation (rejected, an earlier
calibration kept); device.json: a bundle timed by its runner (`python b.zip`), the on-device format with `verify`.
expected.json: what that code predicted from each table (device.json also imported: "imported-from-device.json",
with the validation the import stored, added by hand from imported.json), read back by
tests/test_latency_records.py. Kept for provenance: it uses
the dict API of 9e1fac1 and does not run against the current code.
"""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from nasforge.latency import profiler
from nasforge.latency.bundle import import_table, write_bundle
from nasforge.latency.lut import LatencyTable
from nasforge.latency.model import TableFeatures, load_latency_model
from nasforge.latency.profiler import Timer, build_table, validate_table
from nasforge.latency.targets import load_target
from nasforge.testing import tiny_space


def full(ms, ref):
    return {"median_ms": ms, "p90_ms": ms * 1.05, "median_all_ms": ms * 1.01, "spread": 0.03, "rounds_spread": 0.01,
            "uncertainty": 0.004, "runs": 50, "clean": 49, "preempted": 0.02, "reference_ratio": ms / ref,
            "reference_ms": ref}


def main(out: Path) -> None:
    profiler.measure_block_drift = lambda *a: 0.012  # the real re-timing of blocks is noisy on a shared machine
    out.mkdir(parents=True, exist_ok=True)
    space = tiny_space("tiny-mbv3")
    timer = Timer(load_target("cpu"), threads=1, warmup=1, repeats=5, pin=False)
    table = build_table(space, timer, out / "profiled.json", note="fixture written by nasforge 9e1fac1")
    feats = TableFeatures(table, space)

    def truth(a):
        f = feats([a])
        return float(0.9 * f["net_ms"][0] + 0.05 * f["weight_mb"][0] + 0.02)

    timer.impl.time_subnets = lambda sp, archs, w, r, ref: [full(truth(a), truth(ref)) for a in archs]
    validate_table(space, table, timer, 12)

    table2 = LatencyTable.load(out / "profiled.json")  # the same blocks, an earlier calibration, a noisy validation
    for key in ("validation", "validation_samples"):
        table2.metadata.pop(key)
    table2.metadata["calibration"] = {"kind": "nnls-features", "coef": {"net_ms": 1.1, "one": 0.01}}
    table2.save(out / "rejected.json")
    seen: dict[str, int] = {}

    def noisy(sp, archs, warmup, repeats, reference):
        res = []
        for a in archs:
            seen[a.key] = seen.get(a.key, 0) + 1
            res.append(full(truth(a) * (1.3 if seen[a.key] > 1 else 1.0), truth(reference)))
        return res

    timer.impl.time_subnets = noisy
    validate_table(space, LatencyTable.load(out / "rejected.json"), timer, 12)

    topk = space.sample_many(np.random.default_rng(0), 2)
    write_bundle(out / "b.zip", space, load_target("cpu"), validate=6, topk=topk, warmup=1, repeats=3)
    proc = subprocess.run([sys.executable, str(out / "b.zip"), "--out", str(out / "device.json"), "--repeats", "3",
                           "--warmup", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import_table(out / "device.json", space, out / "imported.json")

    archs = [space.smallest(), space.largest(), *space.sample_many(np.random.default_rng(7), 4)]
    expected = {"space": "tiny-mbv3", "archs": [a.to_dict() for a in archs], "predictions": {}}
    for name in ("profiled.json", "rejected.json", "device.json", "imported.json"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = load_latency_model("cpu", space, out / name)
        t = LatencyTable.load(out / name)
        expected["predictions"][name] = {"ms": [float(v) for v in m.predict(archs)],
                                         "calibrated": bool(m.calibration), "block_speed_ms": t.block_speed_ms,
                                         "first_block_ms": {k: t.ms(k) for k in sorted(t.entries)[:5]}}
    (out / "expected.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
