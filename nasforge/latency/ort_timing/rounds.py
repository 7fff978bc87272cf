"""The one round loop: a single model is timed as a group of one, several models round-robin."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .session import INTERLEAVED_ROUNDS, SWITCH_RUNS


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


Runs = tuple[np.ndarray, np.ndarray, np.ndarray]  # per-run times (ms), whether preempted, round index


def timed_runs(
    session: Any,
    feeds: dict[str, np.ndarray],
    warmup: int = 10,
    repeats: int = 50,
    rounds: int = 5,
    pause_s: float = 0.005,
    clean_wanted: int | None = None,
    max_factor: int = 4,
) -> Runs:
    """Per-run wall times (ms), whether each run was preempted, and its round (see the protocol).

    One model is a group of one in `run_rounds`, without untimed runs between its rounds (nothing else ran).
    After `rounds` rounds, more rounds follow while fewer than `clean_wanted` runs were left alone
    (default: a quarter of `repeats`, at least 5 or all of them), up to `max_factor` x `repeats` runs in all.
    """
    return run_rounds([(session, feeds)], warmup, repeats, rounds, pause_s, clean_wanted, max_factor, 0)[0]


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
) -> list[Runs]:
    """The runs behind `time_interleaved`: per model, its times (ms), whether each was preempted, and its round.

    Each round gives every model at least one untimed run first (`switch_runs`: its data back in the caches).
    min_timed_ms: more rounds (at most `max_factor` x) until the group's typical model gets this many ms of timed runs.
    """
    return run_rounds(sessions, warmup, repeats, rounds, pause_s, clean_wanted, max_factor, max(1, switch_runs),
                      min_timed_ms)


def run_rounds(
    sessions: list[tuple[Any, dict[str, np.ndarray]]],
    warmup: int,
    repeats: int,
    rounds: int,
    pause_s: float,
    clean_wanted: int | None,
    max_factor: int,
    switch_runs: int,
    min_timed_ms: float = 0.0,
) -> list[Runs]:
    """The one round loop of the protocol, for a group of models (one model: a group of one).

    Every model runs 1 + `warmup` untimed times; then, round after round (a `pause_s` pause between rounds), each
    model in turn gets `switch_runs` untimed runs and its share of timed ones, until `rounds` rounds are done and
    every model has `clean_wanted` runs left alone or `max_factor` x its runs.
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
            for _ in range(switch_runs):
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
