"""How steady is this machine? One ONNX model timed back to back for `--seconds`, one row per second.

A latency table can only be as repeatable as the machine it is measured on. This times one exported subnet
(the largest of `--space` by default) in a plain ONNX Runtime session (1 intra-op thread, pinned to one core,
no nasforge timing code), and prints, per second, the median / min / p90 run time and the hypervisor's steal
ticks (`/proc/stat`). The summary says how far the per-second medians wander from their overall median: if
they leave +-10% often, no table (and no single independent timing) can hold +-10% on this machine.

    PYTHONPATH=. python scripts/bench_timing_drift.py --space mobilenetv3-ofa --seconds 60

The last line of stdout is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def steal_ticks() -> int:
    """Ticks the hypervisor gave this VM's CPUs to someone else (0 on bare metal)."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()
    return int(fields[8]) if len(fields) > 8 else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mobilenetv3-ofa")
    ap.add_argument("--arch", default="largest", help="largest | smallest")
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()

    import onnxruntime as ort

    from nasforge.latency.backends import export_subnet
    from nasforge.latency.ort_timing import machine_info
    from nasforge.space import load_space

    space = load_space(args.space)
    arch = space.largest() if args.arch == "largest" else space.smallest()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(export_subnet(space, arch, 1), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in inp.shape], dtype=np.float32)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    for _ in range(20):
        sess.run(None, {inp.name: x})
    machine = machine_info("CPUExecutionProvider", 1)
    print(f"# cpu: {machine.get('cpu')} ({machine.get('cpu_id', '')}), {machine.get('logical_cpus')} logical CPUs")
    print(f"# {args.space} {args.arch} ({arch.key}), onnxruntime {ort.__version__}, 1 thread, pinned")
    rows = []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        steal0, times, start = steal_ticks(), [], time.perf_counter()
        while time.perf_counter() - start < 1.0:
            t = time.perf_counter()
            sess.run(None, {inp.name: x})
            times.append((time.perf_counter() - t) * 1e3)
        ms = np.asarray(times)
        rows.append({"median_ms": float(np.median(ms)), "min_ms": float(ms.min()),
                     "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms), "steal_ticks": steal_ticks() - steal0})
        r = rows[-1]
        print(f"{len(rows):3d} s: median {r['median_ms']:.3f}  min {r['min_ms']:.3f}  p90 {r['p90_ms']:.3f} ms  "
              f"({r['runs']} runs, steal {r['steal_ticks']})")
    medians = np.asarray([r["median_ms"] for r in rows])
    mins = np.asarray([r["min_ms"] for r in rows])
    dev = np.abs(medians / np.median(medians) - 1)
    dev_min = np.abs(mins / np.median(mins) - 1)
    summary = {
        "cpu": machine.get("cpu"), "cpu_id": machine.get("cpu_id"), "space": args.space, "arch": arch.key,
        "seconds": len(rows), "median_of_medians_ms": float(np.median(medians)),
        "per_second_median_range_pct": [float((medians.min() / np.median(medians) - 1) * 100),
                                        float((medians.max() / np.median(medians) - 1) * 100)],
        "seconds_beyond_5pct": float((dev > 0.05).mean()), "seconds_beyond_10pct": float((dev > 0.10).mean()),
        "min_seconds_beyond_5pct": float((dev_min > 0.05).mean()),
        "min_seconds_beyond_10pct": float((dev_min > 0.10).mean()),
        "steal_ticks": int(sum(r["steal_ticks"] for r in rows)),
    }
    print(f"per-second medians: {summary['per_second_median_range_pct'][0]:+.1f}% .. "
          f"{summary['per_second_median_range_pct'][1]:+.1f}% of their median; beyond +-5%: "
          f"{summary['seconds_beyond_5pct']:.0%} of seconds, beyond +-10%: "
          f"{summary['seconds_beyond_10pct']:.0%}; per-second minima beyond +-10%: "
          f"{summary['min_seconds_beyond_10pct']:.0%}; steal {summary['steal_ticks']} ticks")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
