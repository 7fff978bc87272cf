"""The ORT timing protocol, and the on-device bundle runner (needs only onnxruntime and numpy).

This file travels inside every bundle as `profile_bundle.py` (the bundle's `__main__.py` runs it:
`python bundle.zip --out lut.json`), so the same protocol times blocks on this machine and on a
Jetson or a Raspberry Pi that has no torch and no nasforge. That is why it is one long module (over 900
lines, five jobs: protocol, statistics, machine fingerprint, protobuf, the runner's command line); splitting
it by job into a package the bundle carries (zipimport) is still open (issue 23).

Protocol v6 (one ONNX model at a time, batch fixed by the model's input shape):
  * session: graph optimisation ORT_ENABLE_ALL, intra-op threads fixed (`threads`),
    inter-op threads 1, sequential execution; the process is pinned to `threads`
    cores with `os.sched_setaffinity` and asks for nice -20 where the OS permits. Neither
    keeps other processes off the core: with the kernel's autogroups (most desktop and VM
    Linux kernels) nice only ranks processes of one session, and users rarely may raise it;
  * input: one fixed float32 tensor drawn from N(0, 1) with seed 0, fed from host memory;
  * warm-up: one untimed run (which builds a TensorRT/CUDA engine if the EP needs one),
    then `warmup` more untimed runs;
  * timing: `repeats` runs split into `rounds` rounds separated by a short pause, each run
    timed alone with `time.perf_counter` around `session.run` (host wall clock, output
    copied back to the host: what an application sees). Each run also records whether the
    process was preempted during it (its involuntary context switches moved): on a 2-core
    machine with two busy neighbours, 2% of sub-ms block runs but 50-98% of 3-15 ms whole-net
    runs were, each losing a time slice (inflating the plain median of whole nets up to 1.6x).
    More rounds follow (bounded: 4 x `repeats` runs) until a quarter of `repeats` runs were
    left alone. Tables time models in groups, interleaved (`time_interleaved`: 16 blocks or 10
    whole subnets per group, round-robin in `INTERLEAVED_ROUNDS` rounds of 2 timed runs each, after
    `SWITCH_RUNS` untimed one(s) on coming back to a model), so that a neighbour's slow phases,
    which last seconds, fall on all of them alike; whole subnets get more rounds (at most 4x) until
    each has `SUBNET_MIN_TIMED_MS` of timed runs, so a sub-ms net is known as precisely as a 5 ms one;
  * speed reference (v6): one fixed model (a block for tables, a subnet for whole-subnet timings) is
    timed in every group as one more member; every timing carries `reference_ms`, the reference's
    median in its group, and `reference_ratio`, the median over rounds of its round median divided
    by the reference's in the same round (its `rounds_spread` is that of the ratios). A table reads
    every timing at one speed, its *reference speed* (the median of `reference_ms` over all groups):
    reference_ratio x speed (`at_reference_speed`). On the 2-vCPU AMD EPYC VM, 40 whole subnets
    timed in three passes 30 s apart differed between passes by 4-10% in the median (up to 45%)
    read plainly, by 1.8-3.0% (at most 10-11%) read as ratios to the reference over 25 short
    rounds, and by 4.1-4.8% (up to 28%) over v5's 5 rounds of 10 (scripts/bench_speed_reference.py);
  * result (`summarise`): preempted runs dropped; `median_ms` and `p90_ms` over the clean
    runs of the quieter half of the rounds; every timing reports its spread: `spread`
    ((p90 - p10) / median), `rounds_spread` ((p90 - p10) / median of the per-round medians, or
    of the per-round ratios to the reference: how much the same number moved over time; the
    middle 80% of rounds, so that it does not grow with their number), `preempted` (share of
    runs hit) and `runs`;
    and `uncertainty` (the estimated relative standard error of the statistic, from the spread of
    the per-round values: 1.2533 x 1.4826 x MAD / sqrt(rounds) / median);
  * stability (`time_stable`, `time_stable_many`): a timing whose `uncertainty` exceeds a
    bound (`MAX_UNCERTAINTY`) is measured again (bounded retries); the most certain attempt is
    kept and `stable` says whether any attempt met the bound.
Isolated blocks run with warm caches, pay the per-run overhead (`null_model`, timed once per
table) and their own layout reorders, so a plain sum of block medians is expected to be off
from a whole network; nasforge fits a calibration on whole subnets measured with this same
protocol (`nasforge.latency.calibration`).

Usage on the device:  python bundle.zip --out lut.json [--provider ...]
            (or, extracted: python profile_bundle.py bundle.zip --out lut.json)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

LUT_FORMAT = "nasforge-lut/1"
PROTOCOL_VERSION = 6
# a timing whose estimated relative standard error (`uncertainty`) is above this is measured again: on 5 rounds it
# is about v5's bound (round medians 15% apart); over 25 short rounds it asks for the precision of the estimate,
# not for calm rounds, which a machine whose speed wanders never gives
MAX_UNCERTAINTY = 0.03
RETRIES = 2
BLOCK_GROUP = 16  # models timed interleaved (`time_interleaved`)
SUBNET_GROUP = 10
# interleaved groups: rounds of 2 timed runs per model, after one untimed run (its weights back in the caches).
# Many short rounds let the ratio to the speed reference follow the machine's speed closely; at the same cost,
# v5's 5 rounds of 10 runs after 5 untimed ones (the best of scripts/bench_switch_runs.py without a reference)
# repeated 2x worse against the reference on the 2-vCPU AMD EPYC VM (scripts/bench_speed_reference.py)
INTERLEAVED_ROUNDS = 25
SWITCH_RUNS = 1
# whole subnets: at least this many ms of timed runs per model (more rounds for fast nets, at most 4x): sub-2-ms
# CIFAR-space subnets ranked against themselves at Kendall tau 0.91 over 25 rounds and 0.95-0.96 over 100
# between passes (scripts/bench_speed_reference.py --space mobilenetv3-ofa-cifar --rounds 100 --repeats 200)
SUBNET_MIN_TIMED_MS = 250.0
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def protocol(
    threads: int, warmup: int, repeats: int, rounds: int = INTERLEAVED_ROUNDS,
    max_uncertainty: float = MAX_UNCERTAINTY, retries: int = RETRIES,
) -> dict[str, Any]:
    """The protocol as it is recorded in every LUT's metadata."""
    return {
        "version": PROTOCOL_VERSION,
        "graph_optimization": "ORT_ENABLE_ALL",
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "execution_mode": "sequential",
        "affinity": "pinned to the first `threads` allowed cores (sched_setaffinity) where available",
        "priority": "nice -20 where permitted (the achieved value is recorded as `nice`)",
        "input": "float32 N(0,1), seed 0, host memory",
        "warmup_runs": 1 + warmup,
        "repeats": repeats,
        "rounds": rounds,
        "preemption": "runs during which the process was preempted (getrusage ru_nivcsw moved) are dropped",
        "interleaving": f"groups of {BLOCK_GROUP} blocks / {SUBNET_GROUP} subnets timed round-robin in `rounds` rounds "
        "(a single model: 5 rounds)",
        "switch_runs": SWITCH_RUNS,
        "subnet_min_timed_ms": SUBNET_MIN_TIMED_MS,
        "speed_reference": "a fixed block (tables) or subnet (whole subnets) timed in every group; a timing is read "
        "as its per-round ratio to the reference (median over rounds) x the reference's median over all groups",
        "statistic": "median and p90 of the clean runs of the quieter half of the rounds",
        "max_uncertainty": max_uncertainty,
        "retries": retries,
    }


def pin_threads(threads: int) -> list[int] | None:
    """Pin this process to `threads` cores (the first ones it may use); None where unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cores = allowed[: max(1, threads)]
    os.sched_setaffinity(0, cores)
    return cores


def raise_priority() -> int | None:
    """Ask for nice -20 (needs privileges); return the niceness this process ends up with."""
    if not hasattr(os, "setpriority"):
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -20)
    except OSError:
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)


@contextlib.contextmanager
def pinned(threads: int) -> Iterator[tuple[list[int] | None, int | None]]:
    """Pin to `threads` cores and raise priority for a measurement; give both back afterwards.

    Yields (cores pinned to, niceness reached). Affinity and niceness are process-wide: whoever times
    inside a larger program must not leave it on one core at nice -20.
    """
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    niceness = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None
    try:
        yield pin_threads(threads), raise_priority()
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
        if niceness is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, niceness)
            except OSError:
                pass


def providers_for(provider: str) -> list[Any]:
    """The ORT provider list for a provider name; TensorRT and CUDA fall back to the next one in line."""
    name = PROVIDER_ALIASES.get(provider.lower(), provider)
    if name == "TensorrtExecutionProvider":
        return [
            ("TensorrtExecutionProvider", {"trt_fp16_enable": False}),
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ]
    if name == "CUDAExecutionProvider":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [name]


def make_session(model: str | bytes, provider: str = "CPUExecutionProvider", threads: int = 1) -> Any:
    """An ORT session configured by the protocol (see the module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=providers_for(provider))


def session_feeds(session: Any) -> dict[str, np.ndarray]:
    """One fixed input per model input (seed 0): float32 N(0, 1), or zeros for integer inputs (token ids)."""
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        if "int" in str(inp.type):
            feeds[inp.name] = np.zeros(shape, dtype=np.int64 if "int64" in str(inp.type) else np.int32)
        else:
            feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def involuntary_switches() -> int:
    """Involuntary context switches of this process so far (every thread); 0 where the OS does not count them.

    A run during which this number moves was preempted: another process took the core for a
    time slice (milliseconds), which a whole network notices and a sub-ms block rarely does.
    """
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)


def _timed_run(session: Any, feeds: dict[str, np.ndarray]) -> tuple[float, bool]:
    """One timed run in ms, and whether the process was preempted during it."""
    before = involuntary_switches()
    start = time.perf_counter()
    session.run(None, feeds)
    return (time.perf_counter() - start) * 1e3, involuntary_switches() != before


def timed_runs(
    session: Any,
    feeds: dict[str, np.ndarray],
    warmup: int = 10,
    repeats: int = 50,
    rounds: int = 5,
    pause_s: float = 0.005,
    clean_wanted: int | None = None,
    max_factor: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-run wall times (ms), whether each run was preempted, and its round (see the protocol).

    After `rounds` rounds, more rounds follow while fewer than `clean_wanted` runs were left alone
    (default: a quarter of `repeats`, at least 5 or all of them), up to `max_factor` x `repeats` runs in all.
    """
    session.run(None, feeds)
    for _ in range(warmup):
        session.run(None, feeds)
    rounds = max(1, min(rounds, repeats))
    per_round = -(-repeats // rounds)
    wanted = min(repeats, max(5, repeats // 4)) if clean_wanted is None else clean_wanted
    cap = max(1, max_factor) * per_round * rounds
    times: list[float] = []
    preempted: list[bool] = []
    round_of: list[int] = []
    r = 0
    while True:
        if r:
            time.sleep(pause_s)
        for _ in range(per_round):
            ms, hit = _timed_run(session, feeds)
            times.append(ms)
            preempted.append(hit)
            round_of.append(r)
        r += 1
        clean = len(preempted) - sum(preempted)
        if r >= rounds and (clean >= wanted or len(times) >= cap):
            break
    return np.array(times), np.array(preempted, dtype=bool), np.array(round_of)


@dataclass(frozen=True)
class TimingStats:
    """One timing's statistics as a table stores them (an entry, a verify row, a validation sample).

    `summarise` fills the first nine; the retry loop adds attempts / stable, a timing beside the speed reference
    reference_ratio / reference_ms. `to_dict()` writes the stored JSON (fields never set stay absent);
    `from_dict()` reads the statistics out of a stored row, leaving what is not a statistic (key, role, arch).
    """

    median_ms: float
    p90_ms: float | None = None
    median_all_ms: float | None = None
    spread: float | None = None
    rounds_spread: float | None = None
    uncertainty: float | None = None
    runs: int | None = None
    clean: int | None = None
    preempted: float | None = None
    reference_ratio: float | None = None
    reference_ms: float | None = None
    attempts: int | None = None
    stable: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> TimingStats:
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})

    def sample(self, digits: int = 5) -> dict[str, Any]:
        """The statistics a validation sample keeps (all but `median_all_ms`), floats rounded to `digits`."""
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in self.to_dict().items()
                if k != "median_all_ms"}


def summarise(
    times: np.ndarray, preempted: np.ndarray | None = None, round_of: np.ndarray | None = None
) -> TimingStats:
    """The protocol's statistic and spread of one timing, from its runs.

    Preempted runs are dropped (all runs are used, and `clean` says so, when fewer than 3 were left
    alone). median_ms / p90_ms: of the clean runs of the quieter half of the rounds (by clean
    median), which sheds windows when a neighbour on the other core slowed the memory system;
    spread: (p90 - p10) / median of those runs; rounds_spread: (p90 - p10) / median of the
    per-round clean medians (how far apart the same timing came out over time); uncertainty: the
    estimated relative standard error (`median_uncertainty` of the round medians, of the runs with
    fewer than 3 rounds);
    preempted: the share of runs a time slice of another process fell into.
    """
    times = np.asarray(times, dtype=np.float64)
    preempted = np.zeros(len(times), bool) if preempted is None else np.asarray(preempted, bool)
    round_of = np.zeros(len(times), np.int64) if round_of is None else np.asarray(round_of)
    ok = ~preempted
    clean = int(ok.sum())
    if clean < 3:
        ok = np.ones(len(times), bool)
    medians = round_medians(times, preempted, round_of)
    if len(medians) >= 2:
        ranked = sorted(medians, key=medians.__getitem__)
        quiet = ranked[: max(1, -(-len(ranked) // 2))]
        use = times[ok & np.isin(round_of, quiet)]
        rounds_spread = middle_spread(np.array(list(medians.values())))
    else:
        use = times[ok]
        rounds_spread = 0.0
    # the statistic's standard error: from the rounds where there are enough, else from the runs themselves
    uncertainty = median_uncertainty(np.array(list(medians.values())) if len(medians) >= 3 else use)
    median = float(np.median(use))
    p10, p90 = (float(v) for v in np.percentile(use, [10, 90]))
    return TimingStats(
        median_ms=median,
        p90_ms=max(p90, median),
        median_all_ms=float(np.median(times)),
        spread=round((p90 - p10) / median, 4),
        rounds_spread=round(rounds_spread, 4),
        uncertainty=round(uncertainty, 4),
        runs=int(len(times)),
        clean=clean,
        preempted=round(float(preempted.mean()), 4) if len(times) else 0.0,
    )


def time_session(
    session: Any,
    feeds: dict[str, np.ndarray],
    warmup: int = 10,
    repeats: int = 50,
    rounds: int = 5,
    pause_s: float = 0.005,
) -> dict[str, Any]:
    """Warm up past any engine build, time single runs in rounds, summarise (see the protocol)."""
    return summarise(*timed_runs(session, feeds, warmup, repeats, rounds, pause_s)).to_dict()


def time_stable(
    measure: Callable[[], dict[str, Any]], max_uncertainty: float = MAX_UNCERTAINTY, retries: int = RETRIES
) -> dict[str, Any]:
    """`measure()` until its `uncertainty` is within `max_uncertainty`, at most 1 + `retries` times.

    Returns the most certain attempt with `attempts` and `stable` (whether any attempt met the bound) added;
    never loops beyond the bound.
    """
    best: dict[str, Any] | None = None
    attempts = 0
    while attempts < 1 + max(0, retries):
        attempts += 1
        timing = measure()
        if best is None or _uncertainty(timing) < _uncertainty(best):
            best = timing
        if _uncertainty(best) <= max_uncertainty:
            break
    assert best is not None
    return {**best, "attempts": attempts, "stable": bool(_uncertainty(best) <= max_uncertainty)}


def _uncertainty(timing: dict[str, Any]) -> float:
    return float(timing.get("uncertainty", 0.0))


def time_interleaved(
    sessions: list[tuple[Any, dict[str, np.ndarray]]],
    warmup: int = 10,
    repeats: int = 50,
    *,
    reference: bool = False,
    **schedule: Any,
) -> list[dict[str, Any]]:
    """Time several models round-robin: each round gives every model `switch_runs` untimed runs (its data
    back in cache, the state a model run back to back is in) and then its share of timed runs, so all of
    them see the same phases of a neighbour's load.

    Measured one after the other, the same whole subnets differed by 7.8% (median, 23% max) between two
    passes on a loaded 2-core VM; interleaved in groups of 16, by 2.3% (6.6% max): the slow phases of
    a memory-heavy neighbour last seconds, longer than one model's measurement.

    reference: the last session is the speed reference; every other timing gets `reference_ratio` (the median
    over rounds of its round median / the reference's) and a `rounds_spread` of those ratios.
    schedule: `interleaved_runs`' rounds, pause_s, clean_wanted, max_factor, switch_runs and min_timed_ms.
    """
    runs = interleaved_runs(sessions, warmup, repeats, **schedule)
    timings = [summarise(*run).to_dict() for run in runs]
    if reference:
        ref_rounds = round_medians(*runs[-1])
        timings[:-1] = [
            {**timing, **against_reference(round_medians(*run), ref_rounds)} for timing, run in zip(timings[:-1], runs)
        ]
    return timings


def interleaved_runs(
    sessions: list[tuple[Any, dict[str, np.ndarray]]],
    warmup: int = 10,
    repeats: int = 50,
    rounds: int = INTERLEAVED_ROUNDS,
    pause_s: float = 0.005,
    clean_wanted: int | None = None,
    max_factor: int = 4,
    switch_runs: int = SWITCH_RUNS,
    min_timed_ms: float = 0.0,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The runs behind `time_interleaved`: per model, its times (ms), whether each was preempted, and its round.

    min_timed_ms: more rounds (at most `max_factor` x) until the group's typical model gets this many ms of timed runs.
    """
    for session, feeds in sessions:
        for _ in range(1 + warmup):
            session.run(None, feeds)
    rounds = max(1, min(rounds, repeats))
    per_round = -(-repeats // rounds)
    if min_timed_ms > 0:  # fast models get more rounds: the same precision per model, whatever its speed
        typical = float(np.median([_timed_run(session, feeds)[0] for session, feeds in sessions]))
        needed = -(-int(np.ceil(min_timed_ms / max(typical, 1e-6))) // per_round)
        rounds = min(max(rounds, needed), rounds * max(1, max_factor))
        repeats = rounds * per_round
    wanted = min(repeats, max(5, repeats // 4)) if clean_wanted is None else clean_wanted
    cap = max(1, max_factor) * per_round * rounds
    runs: list[tuple[list[float], list[bool], list[int]]] = [([], [], []) for _ in sessions]
    r = 0
    while True:
        if r:
            time.sleep(pause_s)
        for (session, feeds), (times, preempted, round_of) in zip(sessions, runs):
            for _ in range(max(1, switch_runs)):
                session.run(None, feeds)
            for _ in range(per_round):
                ms, hit = _timed_run(session, feeds)
                times.append(ms)
                preempted.append(hit)
                round_of.append(r)
        r += 1
        if r >= rounds and all(len(p) - sum(p) >= wanted or len(p) >= cap for _, p, _ in runs):
            break
    return [(np.array(t), np.array(p, dtype=bool), np.array(k)) for t, p, k in runs]


def round_medians(times: np.ndarray, preempted: np.ndarray, round_of: np.ndarray) -> dict[int, float]:
    """Per-round median of the clean runs (of all runs where fewer than 3 were clean)."""
    ok = ~np.asarray(preempted, bool)
    if ok.sum() < 3:
        ok = np.ones(len(times), bool)
    out = {}
    for r in np.unique(round_of):
        sel = ok & (round_of == r)
        if sel.any():
            out[int(r)] = float(np.median(times[sel]))
    return out


def against_reference(model: dict[int, float], reference: dict[int, float]) -> dict[str, Any]:
    """A model's ratio to the reference timed in the same rounds: the median over rounds of (its round median /
    the reference's), and how far those ratios lay apart (`rounds_spread`, replacing the plain one: the
    machine's speed, which moves both alike, no longer counts as unsteadiness)."""
    common = sorted(set(model) & set(reference))
    if not common:
        return {}
    ratios = np.array([model[r] / reference[r] for r in common])
    return {
        "reference_ratio": float(np.median(ratios)),
        "rounds_spread": round(middle_spread(ratios), 4),
        "uncertainty": round(median_uncertainty(ratios), 4),
    }


def median_uncertainty(values: np.ndarray) -> float:
    """The relative standard error of the median of `values`: 1.2533 x sigma / sqrt(n) / median, sigma from the
    MAD (1.4826 x MAD: robust to the odd slow round); 0 for fewer than 2 values."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return 0.0
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    return 1.2533 * sigma / np.sqrt(len(values)) / median if median > 0 else 0.0


def middle_spread(values: np.ndarray) -> float:
    """(p90 - p10) / median of per-round values: how far the middle 80% of rounds lay apart (0 for one round)."""
    if len(values) < 2:
        return 0.0
    p10, p90 = np.percentile(values, [10, 90])
    return float((p90 - p10) / np.median(values))


def time_models(
    models: list[str | bytes], provider: str = "CPUExecutionProvider", threads: int = 1, warmup: int = 10,
    repeats: int = 50, reference: str | bytes | None = None, min_timed_ms: float = 0.0,
) -> list[dict[str, Any]]:
    """Time several ONNX models (paths or bytes) interleaved (`time_interleaved`), one attempt each.

    reference: a model timed in the same group as one more member; every timing then carries
    `reference_ms`, its median in this group (see `at_reference_speed`).
    """
    sessions = []
    for model in [*models, *([] if reference is None else [reference])]:
        session = make_session(model, provider, threads)
        sessions.append((session, session_feeds(session)))
    timings = time_interleaved(sessions, warmup, repeats, reference=reference is not None, min_timed_ms=min_timed_ms)
    if reference is None:
        return timings
    ref = timings.pop()
    return [{**t, "reference_ms": ref["median_ms"]} for t in timings]


def reference_speed(timings: Any) -> float | None:
    """The reference speed of a set of timings: the median `reference_ms` of their groups (None without any)."""
    refs = [float(t["reference_ms"]) for t in timings if isinstance(t, dict) and t.get("reference_ms")]
    return float(np.median(refs)) if refs else None


def at_reference_speed(timing: dict[str, Any], speed_ms: float | None) -> float:
    """A timing's median read at the reference speed `speed_ms`: median_ms x speed_ms / its group's reference_ms.

    A machine's speed wanders as a whole (a neighbour's memory traffic, the host's frequency), which
    moves every model timed in the same seconds alike; the ratio to a reference timed beside it does
    not move with it. Without a reference (older tables, backends that time models alone): the median.
    """
    ref = timing.get("reference_ms")
    if not speed_ms or not ref:
        return float(timing["median_ms"])
    ratio = timing.get("reference_ratio")
    if ratio:  # measured round by round beside the reference: the steadier form
        return float(ratio) * float(speed_ms)
    return float(timing["median_ms"]) * float(speed_ms) / float(ref)


def time_stable_many(
    measure: Callable[[list[int]], list[dict[str, Any]]], n: int, max_uncertainty: float = MAX_UNCERTAINTY,
    retries: int = RETRIES,
) -> list[dict[str, Any]]:
    """`time_stable` for `n` models measured together: `measure(indices)` times those models (interleaved);
    the ones whose `uncertainty` exceeds `max_uncertainty` are measured again together, at most `retries` times."""
    best = measure(list(range(n)))
    attempts = [1] * n
    for _ in range(max(0, retries)):
        todo = [i for i in range(n) if _uncertainty(best[i]) > max_uncertainty]
        if not todo:
            break
        for i, timing in zip(todo, measure(todo)):
            attempts[i] += 1
            if _uncertainty(timing) < _uncertainty(best[i]):
                best[i] = timing
    return [
        {**b, "attempts": a, "stable": bool(_uncertainty(b) <= max_uncertainty)} for b, a in zip(best, attempts)
    ]


def null_model() -> bytes:
    """A one-op ONNX model on a 1-element tensor, written without the onnx package (the bundle has none).

    Timed like a block, it gives the fixed per-run cost (session.run, input and output binding)
    that every isolated block timing carries and a whole network pays once.
    """

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(num: int, payload: bytes) -> bytes:  # length-delimited protobuf field
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    def intfield(num: int, value: int) -> bytes:
        return varint(num << 3) + varint(value)

    def value_info(name: str) -> bytes:  # ValueInfoProto{name, type{tensor_type{elem_type FLOAT, shape [1]}}}
        dim = field(1, intfield(1, 1))  # TensorShapeProto.dim{dim_value: 1}
        tensor = intfield(1, 1) + field(2, dim)
        return field(1, name.encode()) + field(2, field(1, tensor))

    node = field(1, b"x") + field(2, b"y") + field(4, b"Relu")
    graph = field(1, node) + field(2, b"null") + field(11, value_info("x")) + field(12, value_info("y"))
    opset = field(1, b"") + intfield(2, 17)
    return intfield(1, 8) + field(7, graph) + field(8, opset)  # ir_version 8


def time_model(
    model: str | bytes, provider: str = "CPUExecutionProvider", threads: int = 1, warmup: int = 10, repeats: int = 50
) -> dict[str, Any]:
    """Time one ONNX model (path or bytes) with the protocol (one attempt; `time_stable` retries)."""
    session = make_session(model, provider, threads)
    return time_session(session, session_feeds(session), warmup, repeats)


def device_string() -> str:
    """A human-readable name of the machine: board model (Jetson, Pi) or CPU model."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            with open(path, "rb") as fh:
                text = fh.read().decode(errors="replace").strip("\x00 \n")
                if text:
                    return text
        except OSError:
            pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# instruction-set flags that change which kernels ORT's MLAS picks (x86 and Arm spellings from /proc/cpuinfo)
ISA_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
    "neon", "asimd", "asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16",
)


def _cpuinfo_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("flags", "features")):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


def _cpu_id() -> str | None:
    """vendor family/model/stepping from /proc/cpuinfo, e.g. "AuthenticAMD 26/2/1" (x86) or
    "ARM 0x41/0xd0c/0x3/1" (implementer/part/variant/revision on Arm, whose model name is often absent);
    None elsewhere."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
    except OSError:
        return None
    if "vendor_id" not in fields:
        if "cpu implementer" in fields and "cpu part" in fields:
            return "ARM " + "/".join(fields.get(k, "?") for k in ("cpu implementer", "cpu part", "cpu variant",
                                                                   "cpu revision"))
        return None
    family, model, stepping = (fields.get(k, "?") for k in ("cpu family", "model", "stepping"))
    return f"{fields['vendor_id']} {family}/{model}/{stepping}"


def _cache_kb() -> dict[str, int]:
    """Per-level cache sizes of cpu0 in KiB from sysfs (L1d, L2, L3); {} where not exposed."""
    out: dict[str, int] = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return out
    for name in names:
        if not name.startswith("index"):
            continue
        try:
            with open(f"{base}/{name}/level") as fh:
                level = fh.read().strip()
            with open(f"{base}/{name}/type") as fh:
                kind = fh.read().strip()
            with open(f"{base}/{name}/size") as fh:
                size = fh.read().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        label = f"L{level}" + ("d" if kind == "Data" else "")
        mult = 1024 if size.endswith("M") else 1
        try:
            out[label] = int(size.rstrip("KM")) * mult
        except ValueError:
            pass
    return out


def machine_info(provider: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """What a timing depends on, as recorded in every LUT (`metadata.machine`).

    `cpu` + `isa` identify the machine (`nasforge.latency.lut.machine_differences`); the rest says
    what else may differ between two machines with the same CPU.
    """
    flags = _cpuinfo_flags()
    try:
        import onnxruntime as ort

        ort_version = ort.__version__
    except ImportError:
        ort_version = None
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": device_string(),
        "cpu_id": _cpu_id(),
        "arch": platform.machine(),
        "isa": sorted(f for f in flags if f in ISA_FLAGS),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": allowed,
        "cache_kb": _cache_kb(),
        "virtual_machine": "hypervisor" in flags,
        "os": f"{platform.system()} {platform.release()}",
        "ort_version": ort_version,
        "provider": provider,
        "threads": threads,
    }


def used_provider(provider: str) -> str:
    """The provider that will actually run: the first requested one this ORT build offers."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    for entry in providers_for(provider):
        name = entry[0] if isinstance(entry, tuple) else entry
        if name in available:
            return name
    raise RuntimeError(f"none of {providers_for(provider)} is available (this ORT offers {sorted(available)})")


def write_json_atomic(path: str, obj: Any) -> None:
    """Temp file in the same folder, fsync, then rename: a LUT on disk is never half written.

    The temp file is created with mode 0666 (the kernel applies the umask), as a plain open() would.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_bundle(
    bundle: str,
    out: str,
    provider: str | None = None,
    threads: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Time every block (and every verify model) of a bundle; resumes from an existing `out`."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    with zipfile.ZipFile(bundle) as zf, contextlib.ExitStack() as stack:
        manifest = json.loads(zf.read("manifest.json"))
        cfg = manifest["protocol"]
        provider = provider or manifest["provider"]
        threads = int(threads or cfg["intra_op_threads"])
        warmup = int(warmup if warmup is not None else cfg["warmup_runs"] - 1)
        repeats = int(repeats or cfg["repeats"])
        real_provider = used_provider(provider)
        machine = machine_info(real_provider, threads)  # before pinning: the machine, not this process's share
        cores, nice = stack.enter_context(pinned(threads))
        lut: dict[str, Any] = {"format": LUT_FORMAT, "metadata": {}, "entries": {}, "verify": []}
        if os.path.exists(out):
            with open(out) as fh:
                lut = json.load(fh)
            lut.setdefault("verify", [])
        settings = (real_provider, threads, warmup, repeats, cores, nice)
        lut["metadata"].update(_bundle_metadata(manifest, machine, *settings))

        references = manifest.get("reference") or {}  # bundles older than protocol v6 carry none

        def timed_many(files: list[str], kind: str) -> list[dict[str, Any]]:
            models = [zf.read(f) for f in files]
            ref = zf.read(references[kind]["file"]) if kind in references else None
            least = SUBNET_MIN_TIMED_MS if kind == "subnet" else 0.0
            return time_stable_many(
                lambda idx: time_models([models[i] for i in idx], provider, threads, warmup, repeats, ref, least),
                len(models),
            )

        if "run_overhead_ms" not in lut["metadata"]:
            overhead = time_stable(lambda: time_model(null_model(), provider, threads, warmup, repeats))
            lut["metadata"]["run_overhead_ms"] = overhead["median_ms"]
        start = time.perf_counter()
        _time_bundle_blocks(lut, manifest["blocks"], timed_many, out, log)
        _time_bundle_subnets(lut, manifest.get("verify", []), timed_many, out, log)
        if "block" in references:
            lut["metadata"]["speed_reference"] = {
                **lut["metadata"].get("speed_reference", {}),
                "block": references["block"]["key"],
                "block_ms": reference_speed(lut["entries"].values()),
                "subnet": references.get("subnet", {}).get("key"),
            }
        lut["metadata"]["build_seconds"] = round(
            float(lut["metadata"].get("build_seconds", 0.0)) + time.perf_counter() - start, 1
        )
        write_json_atomic(out, lut)
    return lut


def _bundle_metadata(
    manifest: dict[str, Any], machine: dict[str, Any], provider: str, threads: int, warmup: int, repeats: int,
    cores: Any, nice: Any,
) -> dict[str, Any]:
    """What a table timed from a bundle says about where and how it was measured."""
    import onnxruntime as ort

    return {
        "target": manifest["target"],
        "device": device_string(),
        "machine": machine,
        "ort_version": ort.__version__,
        "provider": provider,
        "threads": threads,
        "cores": cores,
        "nice": nice,
        "batch": manifest["batch"],
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "protocol": protocol(threads, warmup, repeats),
        "space": manifest["space"],
        "space_fingerprint": manifest["space_fingerprint"],
        "made_by": "profile_bundle.py",
    }


def _time_bundle_blocks(lut: dict[str, Any], blocks: list[dict[str, Any]], timed_many: Any, out: str, log: Any) -> None:
    """Blocks not yet in the table, in interleaved groups; saved every 10 s so a killed run resumes."""
    todo = [b for b in blocks if b["key"] not in lut["entries"]]
    log(f"{len(blocks)} blocks, {len(blocks) - len(todo)} already measured, provider {lut['metadata']['provider']}")
    start = last_save = time.perf_counter()
    for g in range(0, len(todo), BLOCK_GROUP):
        group = todo[g : g + BLOCK_GROUP]
        for block, timing in zip(group, timed_many([b["file"] for b in group], "block")):
            lut["entries"][block["key"]] = timing
        now = time.perf_counter()
        done = g + len(group)
        if now - last_save > 10 or done == len(todo):
            write_json_atomic(out, lut)
            last_save = now
            eta = (now - start) / done * (len(todo) - done)
            log(f"  {done}/{len(todo)} blocks, ETA {eta:.0f} s")


def _time_bundle_subnets(
    lut: dict[str, Any], verify: list[dict[str, Any]], timed_many: Any, out: str, log: Any
) -> None:
    """Whole subnets not yet timed: validation, then top-K, then the repeats (minutes after their first timing)."""
    measured = {v["key"] for v in lut["verify"]}
    pending = [m for m in verify if m["key"] not in measured]
    for role in ("validation", "topk", "repeat"):
        models = [m for m in pending if m.get("role") == role]
        for g in range(0, len(models), SUBNET_GROUP):
            group = models[g : g + SUBNET_GROUP]
            for model, timing in zip(group, timed_many([m["file"] for m in group], "subnet")):
                lut["verify"].append({**model, **timing})
                log(f"  verify {model['key']}: {timing['median_ms']:.3f} ms (spread {timing['spread']:.0%})")
            write_json_atomic(out, lut)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the blocks of a nasforge bundle with ONNX Runtime.")
    parser.add_argument("bundle", help="bundle.zip written by `nasforge profile --bundle`")
    parser.add_argument("--out", default="lut.json", help="LUT file to write (re-running resumes it)")
    parser.add_argument("--provider", default=None, help="cpu, cuda, tensorrt or an ORT provider name")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        run_bundle(args.bundle, args.out, args.provider, args.threads, args.warmup, args.repeats)
    except (OSError, KeyError, RuntimeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
