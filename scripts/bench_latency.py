"""Latency-table benchmarks (numbers for BENCHMARKS.md, issue #15): does the table hold on this machine?

    PYTHONPATH=. python scripts/bench_latency.py [--quick] [--spaces mobilenetv3-ofa-cifar,mobilenetv3-ofa]
                                                  [--out DIR] [--json OUT.json]

Per space, on the machine it runs on (the `cpu` target, 1 pinned thread):
1. `nasforge profile` as a user runs it (`nasforge.latency.profiler.profile`, default validation: design
   points + random subnets, noise verdict, calibration): build time, block-timing stability, its own
   5-fold CV, the noise verdict.
2. 100 more random subnets timed whole with the protocol (interleaved groups): the profile's calibration
   scored on them (held out), and a calibration cross-validated on them (5-fold; the old
   `linear-sum-blocks` fit too).
3. An independent check: 20 random subnets exported with nasforge's ONNX export, timed by this script's
   own loop (a plain `onnxruntime.InferenceSession`, 1 intra-op thread, default options, 20 warm-up runs,
   median of 200; no nasforge timing code), twice, against the table's calibrated prediction.
   Preempted runs (getrusage) are counted in the same loop, as a diagnostic only. Then the same plain
   sessions timed round-robin (20 passes x 10 runs of each model), twice: on a machine whose speed wanders
   over seconds, a model timed in one sequential block of 200 runs gets whatever spell it lands in. The
   round-robin includes the space's speed reference subnet (`nasforge.latency.reference`), so each pass can
   also be read at the profile's speed (x the reference's median in the profile / in that pass): the same
   plain timings, the machine's speed of the moment divided out.
Prints the machine (CPU model, flags, caches, ORT) and its load before and after, and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from nasforge.latency import calibration as cal
from nasforge.latency import ort_timing
from nasforge.latency.lut import LatencyTable, at_one_speed, this_machine
from nasforge.latency.model import TableFeatures, TableLatencyModel
from nasforge.latency.profiler import Timer, profile
from nasforge.latency.reference import reference_subnet
from nasforge.latency.targets import load_target
from nasforge.space import load_space

console = Console(width=160)


def load_snapshot() -> dict[str, Any]:
    """How busy the machine is: load average, CPU pressure, busiest other processes."""
    snap: dict[str, Any] = {"loadavg": [round(v, 2) for v in os.getloadavg()]}
    try:
        snap["cpu_pressure"] = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        pass
    busy = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "R":
                busy.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except (OSError, IndexError):
            continue
    snap["other_running_processes"] = busy
    try:
        snap["autogroup_scheduling"] = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        pass
    return snap


def plain_session(path: Path, warmup: int) -> tuple[Any, dict[str, np.ndarray]]:
    """A plain ORT session with 1 intra-op thread (everything else default), warmed up, and its input."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = np.random.default_rng(1).standard_normal([d if isinstance(d, int) else 1 for d in inp.shape])
    feeds = {inp.name: x.astype(np.float32)}
    for _ in range(warmup):
        session.run(None, feeds)
    return session, feeds


def independent_timing(path: Path, runs: int = 200, warmup: int = 20) -> dict[str, float]:
    """A plain ORT session with 1 intra-op thread (everything else default), timed by this loop alone."""
    session, feeds = plain_session(path, warmup)
    times, hit = np.empty(runs), np.zeros(runs, bool)
    for i in range(runs):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
        start = time.perf_counter()
        session.run(None, feeds)
        times[i] = (time.perf_counter() - start) * 1e3
        hit[i] = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw != before
    clean = times[~hit] if (~hit).sum() >= 3 else times
    return {"median_ms": float(np.median(times)), "clean_median_ms": float(np.median(clean)),
            "preempted": float(hit.mean())}


def independent_timing_interleaved(
    paths: list[Path], rounds: int = 20, runs_per_round: int = 10, warmup: int = 20, untimed: int = 0
) -> list[dict[str, float]]:
    """The same plain sessions, but timed round-robin: `rounds` passes over all models, `runs_per_round`
    runs of each per pass (after `untimed` untimed ones), median of all of a model's runs. A machine whose
    speed wanders over seconds then shifts every model alike instead of whichever model happened to run
    during a slow spell."""
    sessions = [plain_session(path, warmup) for path in paths]
    times = np.empty((len(paths), rounds * runs_per_round))
    for r in range(rounds):
        for i, (session, feeds) in enumerate(sessions):
            for _ in range(untimed):
                session.run(None, feeds)
            for k in range(runs_per_round):
                start = time.perf_counter()
                session.run(None, feeds)
                times[i, r * runs_per_round + k] = (time.perf_counter() - start) * 1e3
    return [{"median_ms": float(np.median(row))} for row in times]


def export_subnets(space: Any, archs: list[Any], folder: Path) -> list[Path]:
    """Each arch exported by nasforge's ONNX export (random weights: latency does not depend on their values)."""
    import torch

    from nasforge.export.onnx import export_onnx
    from nasforge.supernet.static import StaticSubnet

    torch.manual_seed(0)
    paths = []
    for i, arch in enumerate(archs):
        path = folder / f"subnet{i:02d}.onnx"
        export_onnx(StaticSubnet(space.layers(arch), arch).eval(), path, arch.resolution, tolerance=float("inf"))
        paths.append(path)
    return paths


def scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    rel = np.abs(pred / true - 1)
    return {**cal.metrics(pred, true), "median_abs_err_pct": round(float(np.median(rel) * 100), 2),
            "max_abs_err_pct": round(float(rel.max() * 100), 1)}


def bench_space(name: str, out: Path, n_random: int, n_independent: int, validate: int | None) -> dict[str, Any]:
    space = load_space(name)
    target = load_target("cpu")
    table_path = out / f"cpu__{name}.json"
    t0 = time.perf_counter()
    result = profile(space, target, table_path, validate=validate)
    profile_s = time.perf_counter() - t0
    table = LatencyTable.load(table_path)
    meta = table.metadata
    # this profile's validation record (trusted or not), else what the table stores; read here as its stored dict
    v = result.validation.to_dict() if result.validation is not None else (
        meta.get("validation") or meta.get("validation_rejected"))
    row: dict[str, Any] = {
        "space": name,
        "blocks": len(table.entries),
        "build_seconds_blocks": meta.get("build_seconds"),
        "validation_seconds": v.get("seconds") if v else None,
        "profile_wall_seconds": round(profile_s, 1),
        "stability": meta.get("stability"),
        "run_overhead_ms": meta.get("run_overhead_ms"),
        "profile_validation": {k: v.get(k) for k in ("n", "n_design", "n_scored", "raw", "calibrated_cv5",
                                                      "linear_sum_blocks_cv5", "smallest", "noise", "trusted")}
        if v else None,
        "calibration_stored": meta.get("calibration"),
    }
    # the block reference from the table; the subnet reference speed from this profile's validation (stored in the
    # table only when the noise verdict trusted it)
    row["speed_reference"] = {**(meta.get("speed_reference") or {}), **((v or {}).get("speed_reference") or {})}
    # 2. 100 random subnets, timed whole with the protocol (each group beside the reference subnet)
    features = TableFeatures(table, space)
    raw_table = LatencyTable({k: val for k, val in meta.items() if k != "speed_reference"}, table.entries)
    raw_features = TableFeatures(raw_table, space)  # the same blocks read without the speed reference
    rng = np.random.default_rng(12345)
    archs = list(dict.fromkeys(space.sample_many(rng, n_random)))
    timer = Timer(target)
    reference = reference_subnet(space)
    t1 = time.perf_counter()
    timings: list[dict[str, Any]] = []
    with timer.pinned():  # the protocol: interleaved groups, re-measured while unsteady
        for g in range(0, len(archs), ort_timing.SUBNET_GROUP):
            timings += timer.subnets(space, archs[g : g + ort_timing.SUBNET_GROUP], reference)
    speed = ort_timing.reference_speed(timings)
    measured = at_one_speed(timings, speed, "random subnets")  # refuses raw timings among referenced ones
    measured_raw = np.array([t["median_ms"] for t in timings])
    profile_speed = (row["speed_reference"] or {}).get("subnet_ms")
    at_profile_speed = np.array([ort_timing.at_reference_speed(t, profile_speed) for t in timings])
    f = features(archs)
    f_raw = raw_features(archs)
    stored = meta.get("calibration")
    would_be = (meta.get("validation_rejected") or {}).get("would_be_calibration")
    fitted = stored or would_be
    row["random_subnets"] = {
        "n": len(archs),
        "seconds": round(time.perf_counter() - t1, 1),
        "measured_ms_range": [round(float(measured.min()), 3), round(float(measured.max()), 3)],
        "speed_range": round(float(np.ptp(refs) / np.median(refs)), 4)
        if len(refs := np.unique([t.get("reference_ms", 0.0) for t in timings])) > 1 else None,
        "preempted_runs": round(float(np.mean([t.get("preempted", 0) for t in timings])), 4),
        "unstable": int(sum(not t.get("stable", True) for t in timings)),
        "raw_block_sum": scores(f["sum_ms"], measured),
        "profile_calibration_held_out": scores(cal.apply(fitted, f), at_profile_speed) if fitted else None,
        "profile_calibration_was_stored": bool(stored),
        "calibrated_cv5": scores(cal.cross_validated(f, measured), measured),
        "calibrated_cv5_without_speed_reference": scores(cal.cross_validated(f_raw, measured_raw), measured_raw),
        "linear_sum_blocks_cv5": scores(
            cal.cross_validated(f, measured, fitter=lambda g, m: cal.fit_linear(g["sum_ms"], g["blocks"], m)), measured
        ),
        "calibration_on_these": cal.fit(f, measured),
    }
    # 3. independent ORT timing of nasforge-exported subnets
    rng = np.random.default_rng(777)
    ind_archs = list(dict.fromkeys(space.sample_many(rng, n_independent)))
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_subnets(space, [*ind_archs, reference], Path(tmp))  # the last one: the reference subnet
        first = [independent_timing(p) for p in paths[:-1]]
        second = [independent_timing(p) for p in paths[:-1]]
        inter1 = independent_timing_interleaved(paths)
        inter2 = independent_timing_interleaved(paths)
        # the protocol's schedule (25 rounds of 2 runs after 1 untimed), in the same plain loop
        sched = [independent_timing_interleaved(paths, rounds=25, runs_per_round=2, untimed=1) for _ in range(2)]
    plain = np.array([t["median_ms"] for t in first])
    plain2 = np.array([t["median_ms"] for t in second])
    clean = np.array([t["clean_median_ms"] for t in first])
    inter, ref1 = np.array([t["median_ms"] for t in inter1[:-1]]), inter1[-1]["median_ms"]
    inter_2, ref2 = np.array([t["median_ms"] for t in inter2[:-1]]), inter2[-1]["median_ms"]
    # the same plain timings read at the profile's speed: x (reference subnet then) / (reference subnet now)
    scale1, scale2 = (profile_speed / ref1, profile_speed / ref2) if profile_speed else (1.0, 1.0)
    at_speed_diff = (inter_2 * scale2) / (inter * scale1) - 1
    sched_ms = [
        np.array([t["median_ms"] for t in p[:-1]]) * (profile_speed / p[-1]["median_ms"] if profile_speed else 1)
        for p in sched
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TableLatencyModel(table, space, target=target)
    pred = model.predict(ind_archs)
    pred_would_be = cal.apply(fitted, features(ind_archs)) if fitted else pred
    row["independent"] = {
        "n": len(ind_archs),
        "how": "plain onnxruntime.InferenceSession, intra_op_num_threads=1, 20 warm-up + median of 200 runs",
        "repeatability_median_diff_pct": round(float(np.median(np.abs(plain2 / plain - 1)) * 100), 2),
        "repeatability_max_diff_pct": round(float(np.max(np.abs(plain2 / plain - 1)) * 100), 1),
        "preempted_runs": round(float(np.mean([t["preempted"] for t in first])), 4),
        "table_as_stored_vs_plain": scores(pred, plain),
        "profile_calibration_vs_plain": scores(pred_would_be, plain),
        "profile_calibration_vs_unpreempted_runs": scores(pred_would_be, clean),
        "measured_ms_range": [round(float(plain.min()), 3), round(float(plain.max()), 3)],
        "interleaved": {
            "how": "the same plain sessions timed round-robin: 20 passes x 10 runs of each, median of its 200",
            "repeatability_median_diff_pct": round(float(np.median(np.abs(inter_2 / inter - 1)) * 100), 2),
            "repeatability_max_diff_pct": round(float(np.max(np.abs(inter_2 / inter - 1)) * 100), 1),
            "table_as_stored": scores(pred, inter),
            "profile_calibration": scores(pred_would_be, inter),
            "profile_calibration_vs_second_pass": scores(pred_would_be, inter_2),
        },
        "protocol_schedule_at_profile_speed": {
            "how": "the same plain sessions round-robin with the protocol's schedule: 25 rounds of 2 timed runs "
            "after 1 untimed one, median of the 50; read at the profile's speed like the row above; two passes",
            "repeatability_median_diff_pct": round(float(np.median(np.abs(sched_ms[1] / sched_ms[0] - 1))) * 100, 2),
            "repeatability_max_diff_pct": round(float(np.max(np.abs(sched_ms[1] / sched_ms[0] - 1))) * 100, 1),
            "kendall_tau_between_passes": round(cal.kendall_tau(sched_ms[0], sched_ms[1]), 4),
            "profile_calibration": scores(pred_would_be, sched_ms[0]),
            "profile_calibration_vs_second_pass": scores(pred_would_be, sched_ms[1]),
        },
        "per_subnet": [
            {"arch": a.key, "predicted_ms": round(float(p_), 4), "plain_ms": round(float(x), 4),
             "round_robin_ms": [round(float(y), 4), round(float(z), 4)],
             "at_profile_speed_ms": [round(float(y * scale1), 4), round(float(z * scale2), 4)]}
            for a, p_, x, y, z in zip(ind_archs, pred_would_be, plain, inter, inter_2)
        ],
        "at_profile_speed": {
            "how": "the round-robin plain timings above, each pass read at the profile's speed: x the reference "
            "subnet's median in the profile's validation / its median in that pass (timed in the same plain loop)",
            "machine_speed_vs_profile": [round(1 / scale1, 4), round(1 / scale2, 4)],
            "repeatability_median_diff_pct": round(float(np.median(np.abs(at_speed_diff)) * 100), 2),
            "repeatability_max_diff_pct": round(float(np.max(np.abs(at_speed_diff)) * 100), 1),
            # how well the check ranks the subnets against itself: no prediction can show a higher tau against it
            "kendall_tau_between_passes": round(cal.kendall_tau(inter * scale1, inter_2 * scale2), 4),
            "profile_calibration": scores(pred_would_be, inter * scale1),
            "profile_calibration_vs_second_pass": scores(pred_would_be, inter_2 * scale2),
        },
    }
    return row


def print_space(row: dict[str, Any]) -> None:
    console.rule(f"[bold]{row['space']}")
    st = row["stability"] or {}
    console.print(
        f"build: {row['blocks']} blocks in {row['build_seconds_blocks']} s; validation {row['validation_seconds']} s; "
        f"profile wall {row['profile_wall_seconds']} s (target: about 180 s for mobilenetv3-ofa on 2 cores)\n"
        f"block timings: round spread median {st.get('rounds_spread_median', 0):.1%} / p90 "
        f"{st.get('rounds_spread_p90', 0):.1%}, {st.get('blocks_retried')} re-measured, "
        f"{st.get('blocks_unstable')} still unstable, {st.get('preempted_runs', 0):.1%} of runs preempted; "
        f"per-run overhead {row['run_overhead_ms']} ms"
    )
    t = Table(title=f"{row['space']}: prediction vs whole-subnet timing")
    for col in ("what", "n", "MAPE %", "within +-10%", "tau", "median |err| %", "max |err| %"):
        t.add_column(col)

    def add(label: str, m: dict[str, Any] | None) -> None:
        if m:
            errs = (str(m.get("median_abs_err_pct", "")), str(m.get("max_abs_err_pct", "")))
            t.add_row(label, str(m["n"]), f"{m['mape']:.2f}", f"{m['within_10pct'] * 100:.0f}%",
                      f"{m['kendall_tau']:.3f}", *errs)

    pv = row["profile_validation"] or {}
    add("profile: raw block sum (its random subnets)", pv.get("raw"))
    add("profile: calibrated, 5-fold CV", pv.get("calibrated_cv5"))
    add("profile: old linear calibration, 5-fold CV", pv.get("linear_sum_blocks_cv5"))
    r = row["random_subnets"]
    add("100 random: raw block sum", r["raw_block_sum"])
    add("100 random: profile's calibration, held out", r["profile_calibration_held_out"])
    add("100 random: calibrated, 5-fold CV", r["calibrated_cv5"])
    add("100 random: calibrated, 5-fold CV, no speed reference", r["calibrated_cv5_without_speed_reference"])
    add("100 random: old linear calibration, 5-fold CV", r["linear_sum_blocks_cv5"])
    ind = row["independent"]
    add("independent ORT (plain): table as stored", ind["table_as_stored_vs_plain"])
    add("independent ORT (plain): profile's calibration", ind["profile_calibration_vs_plain"])
    add("independent ORT, un-preempted runs: profile's calibration", ind["profile_calibration_vs_unpreempted_runs"])
    add("independent ORT interleaved: table as stored", ind["interleaved"]["table_as_stored"])
    add("independent ORT interleaved: profile's calibration", ind["interleaved"]["profile_calibration"])
    add("  the same, its second pass", ind["interleaved"]["profile_calibration_vs_second_pass"])
    add("independent ORT interleaved at the profile's speed: profile's calibration",
        ind["at_profile_speed"]["profile_calibration"])
    add("  the same, its second pass", ind["at_profile_speed"]["profile_calibration_vs_second_pass"])
    add("independent ORT, protocol's schedule, at the profile's speed",
        ind["protocol_schedule_at_profile_speed"]["profile_calibration"])
    add("  the same, its second pass", ind["protocol_schedule_at_profile_speed"]["profile_calibration_vs_second_pass"])
    console.print(t)
    noise = pv.get("noise") or {}
    console.print(
        f"noise verdict of the profile: trusted={pv.get('trusted')} "
        f"(repeat median {noise.get('repeat_median_diff')}, max {noise.get('repeat_max_diff')}, "
        f"block drift {noise.get('block_drift')}, whole-subnet runs preempted {noise.get('preempted_runs')}); "
        f"reason: {noise.get('reason')}\n"
        f"smallest subnet: {pv.get('smallest')}\n"
        f"100 random subnets: {r['seconds']} s, {r['preempted_runs']:.0%} of runs preempted, {r['unstable']} unstable; "
        f"calibration fitted on them: {r['calibration_on_these']['coef']}\n"
        f"independent timing: repeatability median {ind['repeatability_median_diff_pct']}% / max "
        f"{ind['repeatability_max_diff_pct']}%, {ind['preempted_runs']:.0%} of its runs preempted; interleaved "
        f"{ind['interleaved']['repeatability_median_diff_pct']}% / "
        f"{ind['interleaved']['repeatability_max_diff_pct']}%; "
        f"at the profile's speed {ind['at_profile_speed']['repeatability_median_diff_pct']}% / "
        f"{ind['at_profile_speed']['repeatability_max_diff_pct']}% (machine speed vs the profile's: "
        f"{ind['at_profile_speed']['machine_speed_vs_profile']}); Kendall tau of the check against itself (pass 1 vs "
        f"2): {ind['at_profile_speed']['kendall_tau_between_passes']} round-robin, "
        f"{ind['protocol_schedule_at_profile_speed']['kendall_tau_between_passes']} protocol's schedule; "
        f"range {ind['measured_ms_range']} ms\n"
        f"speed reference: {row['speed_reference']}; "
        f"speed range over the {r['n']} random subnets' groups: {r['speed_range']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", default="mobilenetv3-ofa-cifar,mobilenetv3-ofa")
    parser.add_argument("--random", type=int, default=100, help="random subnets timed whole (step 2)")
    parser.add_argument("--independent", type=int, default=20, help="subnets timed independently (step 3)")
    parser.add_argument("--validate", type=int, default=None, help="profile's --validate (default: its default)")
    parser.add_argument("--out", type=Path, default=None, help="keep the tables here (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 random, 5 independent, tiny space")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.spaces, args.random, args.independent = "mobilenetv3-tiny", 20, 5
    import onnxruntime as ort

    machine = this_machine()
    console.rule("[bold]nasforge latency benchmark")
    console.print(f"CPU: {machine['cpu']} ({machine.get('cpu_id')}), {machine.get('logical_cpus')} logical CPUs, "
                  f"caches {machine.get('cache_kb')} KiB, VM: {machine.get('virtual_machine')}\n"
                  f"ISA: {' '.join(machine.get('isa', []))}\nonnxruntime {ort.__version__}, {machine.get('os')}")
    before = load_snapshot()
    console.print(f"load before: {before}")
    out = args.out or Path(tempfile.mkdtemp(prefix="nasforge-bench-latency-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    try:
        for name in args.spaces.split(","):
            row = bench_space(name, out, args.random, args.independent, args.validate)
            print_space(row)
            rows.append(row)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    after = load_snapshot()
    console.print(f"load after: {after}")
    report = {"machine": machine, "ort_version": ort.__version__, "load_before": before, "load_after": after,
              "seconds": round(time.perf_counter() - start, 1), "spaces": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
