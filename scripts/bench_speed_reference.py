"""Does timing beside a speed reference make timings repeat? The same models timed in several passes, minutes apart.

The latency protocol (v6) times every group of blocks or whole subnets beside one fixed reference model of the
space (`nasforge.latency.reference`) and reads each timing at the reference's typical speed. This script times
`--n` random subnets (or distinct blocks, `--kind blocks`) of a space with the protocol's schedule (groups of
`SUBNET_GROUP` / `BLOCK_GROUP` plus the reference, `SWITCH_RUNS` untimed runs per return, `--rounds` rounds of
`--repeats` runs), `--passes` times, keeps every run, and compares how well each way of reading a timing repeats
from one pass to the next:

  plain   the protocol's statistic without the reference (median of the quieter half of the rounds)
  group   plain x speed / the reference's plain statistic in the same group
  ratio   the median over rounds of (its round median / the reference's round median) x speed

(speed: the reference's median over every group of every pass). Also: the share of timings whose estimated
standard error exceeds the protocol's bound (`MAX_UNCERTAINTY`), measured plainly and as ratios.

    PYTHONPATH=. python scripts/bench_speed_reference.py [--kind subnets|blocks] [--n 40] [--passes 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from nasforge.latency import ort_timing
from nasforge.latency.backends import export_block, export_subnet
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.reference import reference_block, reference_subnet
from nasforge.space import load_space


def models_of(space, kind: str, n: int, seed: int) -> tuple[list[bytes], bytes, int]:
    """The models to time, the reference, and the protocol's group size for them."""
    rng = np.random.default_rng(seed)
    if kind == "blocks":
        specs = distinct_layers(space)
        pick = rng.choice(len(specs), min(n, len(specs)), replace=False)
        return [export_block(specs[i]) for i in pick], export_block(reference_block(space)), ort_timing.BLOCK_GROUP
    archs = list(dict.fromkeys(space.sample_many(rng, n)))
    reference = export_subnet(space, reference_subnet(space))
    return [export_subnet(space, a) for a in archs], reference, ort_timing.SUBNET_GROUP


def one_pass(models: list[bytes], reference: bytes, group: int, rounds: int, repeats: int, switch: int) -> list[dict]:
    """Every model's runs and its group's reference runs, groups timed one after the other."""
    out = []
    for g in range(0, len(models), group):
        sessions = []
        for model in [*models[g : g + group], reference]:
            session = ort_timing.make_session(model, threads=1)
            sessions.append((session, ort_timing.session_feeds(session)))
        runs = ort_timing.interleaved_runs(sessions, warmup=10, repeats=repeats, rounds=rounds, switch_runs=switch)
        out += [{"runs": run, "reference": runs[-1]} for run in runs[:-1]]
    return out


def readings(timed: list[list[dict]]) -> dict[str, np.ndarray]:
    """passes x models for each way of reading a timing, and the spread over rounds of the plain and ratio forms."""
    ref_plain = [[ort_timing.summarise(*t["reference"]).median_ms for t in p] for p in timed]
    speed = float(np.median(ref_plain))
    plain, group, ratio, spread_plain, spread_ratio = ([] for _ in range(5))
    for p, refs in zip(timed, ref_plain):
        s = [ort_timing.summarise(*t["runs"]).to_dict() for t in p]
        medians = [(ort_timing.round_medians(*t["runs"]), ort_timing.round_medians(*t["reference"])) for t in p]
        r = [ort_timing.against_reference(model, ref) for model, ref in medians]
        plain.append([x["median_ms"] for x in s])
        group.append([x["median_ms"] * speed / ref for x, ref in zip(s, refs)])
        ratio.append([x["reference_ratio"] * speed for x in r])
        spread_plain.append([x["uncertainty"] for x in s])
        spread_ratio.append([x["uncertainty"] for x in r])
    return {k: np.array(v) for k, v in (("plain", plain), ("group", group), ("ratio", ratio),
                                        ("spread_plain", spread_plain), ("spread_ratio", spread_ratio))}


def repeatability(values: np.ndarray) -> dict[str, float]:
    """Pass-to-pass |relative difference| over every pair of passes."""
    pairs = itertools.combinations(range(len(values)), 2)
    diffs = np.concatenate([np.abs(values[j] / values[i] - 1) for i, j in pairs])
    from scipy.stats import kendalltau

    taus = [kendalltau(values[i], values[j]).statistic for i, j in itertools.combinations(range(len(values)), 2)]
    return {"kendall_tau_between_passes": round(float(np.mean(taus)), 4),
            "median_pct": round(float(np.median(diffs)) * 100, 2),
            "p90_pct": round(float(np.percentile(diffs, 90)) * 100, 2),
            "max_pct": round(float(diffs.max()) * 100, 1), "over_5pct": round(float(np.mean(diffs > 0.05)), 3),
            "over_10pct": round(float(np.mean(diffs > 0.10)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mobilenetv3-ofa")
    ap.add_argument("--kind", choices=("subnets", "blocks"), default="subnets")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--switch-runs", type=int, default=ort_timing.SWITCH_RUNS)
    ap.add_argument("--pause-s", type=float, default=20.0, help="seconds between passes")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    space = load_space(args.space)
    models, reference, group = models_of(space, args.kind, args.n, args.seed)
    machine = ort_timing.machine_info("CPUExecutionProvider", 1)
    timed = []
    with ort_timing.pinned(1):
        for p in range(args.passes):
            if p:
                time.sleep(args.pause_s)
            start = time.perf_counter()
            timed.append(one_pass(models, reference, group, args.rounds, args.repeats, args.switch_runs))
            print(f"pass {p + 1}/{args.passes}: {time.perf_counter() - start:.0f} s", flush=True)
    r = readings(timed)
    report = {
        "cpu": machine["cpu"], "cpu_id": machine["cpu_id"], "space": args.space, "kind": args.kind,
        "n": len(models), "passes": args.passes, "rounds": args.rounds, "repeats": args.repeats,
        "switch_runs": args.switch_runs,
        "repeatability": {k: repeatability(r[k]) for k in ("plain", "group", "ratio")},
        "unsteady_share": {k: round(float(np.mean(r[f"spread_{k}"] > ort_timing.MAX_UNCERTAINTY)), 3)
                           for k in ("plain", "ratio")},
    }
    print(f"# {machine['cpu']} ({machine['cpu_id']}), {args.space} {args.kind}, {len(models)} models, "
          f"{args.passes} passes, {args.rounds} rounds, {args.repeats} runs, {args.switch_runs} untimed per return")
    for k, v in report["repeatability"].items():
        print(f"{k:6s} pass-to-pass |diff| median {v['median_pct']}%  p90 {v['p90_pct']}%  max {v['max_pct']}%  "
              f">5%: {v['over_5pct']:.0%}  >10%: {v['over_10pct']:.0%}  tau {v['kendall_tau_between_passes']}")
    print(f"unsteady (uncertainty > {ort_timing.MAX_UNCERTAINTY}): {report['unsteady_share']}")
    if args.json:
        ort_timing.write_json_atomic(args.json, report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
