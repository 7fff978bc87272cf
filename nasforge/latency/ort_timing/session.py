"""The timing protocol (v6): its constants, its record in every table, the session, the pinning and the input.

Protocol v6 (one ONNX model at a time, batch fixed by the model's input shape):
  * session: graph optimisation ORT_ENABLE_ALL, intra-op threads fixed (`threads`),
    inter-op threads 1, sequential execution; the process is pinned to `threads`
    cores with `os.sched_setaffinity` and asks for nice -20 where the OS permits. Neither
    keeps other processes off the core: with the kernel's autogroups (most desktop and VM
    Linux kernels) nice only ranks processes of one session, and users rarely may raise it;
  * input: one fixed float32 tensor drawn from N(0, 1) with seed 0, fed from host memory;
  * warm-up: one untimed run (which builds a TensorRT/CUDA engine if the EP needs one),
    then `warmup` more untimed runs;
  * timing (`rounds.run_rounds`, one loop: a single model is a group of one): `repeats` runs split into
    `rounds` rounds separated by a short pause, each run
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
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

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


def used_provider(provider: str) -> str:
    """The provider that will actually run: the first requested one this ORT build offers."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    for entry in providers_for(provider):
        name = entry[0] if isinstance(entry, tuple) else entry
        if name in available:
            return name
    raise RuntimeError(f"none of {providers_for(provider)} is available (this ORT offers {sorted(available)})")


