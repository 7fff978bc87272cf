"""Does timing models round-robin change what is measured? Back-to-back vs round-robin with k untimed runs.

The latency protocol times whole subnets round-robin in groups (so a machine's slow spells hit them alike),
giving each model untimed runs whenever the round comes back to it (`ort_timing.SWITCH_RUNS`). This measures,
on 8 random subnets (4 of `mobilenetv3-ofa-cifar`, 4 of `mobilenetv3-ofa`) in plain ONNX Runtime sessions
(1 thread, pinned), each model's median under:

  seq           100 runs of one model back to back, then the next
  rr10+k        10 rounds; per round and model k untimed runs, then 10 timed ones (k = 0, 1, 5)
  rr10+1+sleep  as rr10+1 with the protocol's 5 ms pause between rounds
  rr50x2        2 rounds of 50 timed runs (1 untimed)

each mode `--reps` times, alternating; prints every mode's median relative to `seq` per model and how much
two passes of the same mode differ.

    PYTHONPATH=. python scripts/bench_switch_runs.py --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    import onnxruntime as ort

    from nasforge.latency.backends import export_subnet
    from nasforge.latency.ort_timing import machine_info
    from nasforge.space import load_space

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = np.random.default_rng(args.seed)
    models = []
    for name in ("mobilenetv3-ofa-cifar", "mobilenetv3-ofa"):
        space = load_space(name)
        for arch in space.sample_many(rng, 4):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(export_subnet(space, arch, 1), opts, providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in inp.shape], dtype=np.float32)
            feeds = {inp.name: x}
            for _ in range(10):
                sess.run(None, feeds)
            models.append((f"{name} {arch.key[:12]}", sess, feeds))

    def run(sess, feeds) -> float:
        start = time.perf_counter()
        sess.run(None, feeds)
        return (time.perf_counter() - start) * 1e3

    def seq() -> list[float]:
        return [float(np.median([run(s, f) for _ in range(100)])) for _, s, f in models]

    def round_robin(per: int = 10, rounds: int = 10, untimed: int = 0, pause: float = 0.0) -> list[float]:
        times: list[list[float]] = [[] for _ in models]
        for _ in range(rounds):
            if pause:
                time.sleep(pause)
            for j, (_, s, f) in enumerate(models):
                for _ in range(untimed):
                    run(s, f)
                times[j] += [run(s, f) for _ in range(per)]
        return [float(np.median(t)) for t in times]

    modes = {
        "seq": seq,
        "rr10+0": lambda: round_robin(untimed=0),
        "rr10+1": lambda: round_robin(untimed=1),
        "rr10+1+sleep": lambda: round_robin(untimed=1, pause=0.005),
        "rr10+5": lambda: round_robin(untimed=5),
        "rr50x2": lambda: round_robin(per=50, rounds=2, untimed=1),
    }
    results: dict[str, list[list[float]]] = {k: [] for k in modes}
    for _ in range(args.reps):
        for name, measure in modes.items():
            results[name].append(measure())
    base = np.mean(results["seq"], axis=0)
    machine = machine_info("CPUExecutionProvider", 1)
    print(f"# cpu: {machine.get('cpu')} ({machine.get('cpu_id', '')}); onnxruntime {ort.__version__}; "
          f"models: {', '.join(m[0] for m in models)}")
    summary: dict[str, dict[str, float]] = {}
    for name in modes:
        ratio = np.mean(results[name], axis=0) / base
        passes = np.asarray(results[name])
        pass_diff = float(np.median(np.abs(passes[1] / passes[0] - 1))) if len(passes) > 1 else float("nan")
        summary[name] = {"median_ratio_to_seq": float(np.median(ratio)), "min_ratio": float(ratio.min()),
                         "max_ratio": float(ratio.max()), "pass_to_pass_median_diff": pass_diff}
        print(f"{name:13s} vs seq: median {np.median(ratio):.3f} (per model {' '.join(f'{r:.3f}' for r in ratio)}); "
              f"pass-to-pass {pass_diff:.1%}")
    print(json.dumps({"cpu": machine.get("cpu"), "cpu_id": machine.get("cpu_id"), "reps": args.reps,
                      "seq_ms": [round(float(b), 4) for b in base], "modes": summary}))


if __name__ == "__main__":
    main()
