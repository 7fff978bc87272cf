"""Timing models with the protocol: one model, a group interleaved, and the bounded retries of unsteady ones."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from .rounds import interleaved_runs, timed_runs
from .session import BLOCK_GROUP, MAX_UNCERTAINTY, RETRIES, make_session, session_feeds
from .stats import against_reference, round_medians, summarise

T = TypeVar("T")


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



def time_model(
    model: str | bytes, provider: str = "CPUExecutionProvider", threads: int = 1, warmup: int = 10, repeats: int = 50
) -> dict[str, Any]:
    """Time one ONNX model (path or bytes) with the protocol (one attempt; `time_stable` retries)."""
    session = make_session(model, provider, threads)
    return time_session(session, session_feeds(session), warmup, repeats)




def measure_in_groups(
    todo: Sequence[T],
    time_group: Callable[[Sequence[T]], Iterable[dict[str, Any]]],
    record: Callable[[T, dict[str, Any]], None],
    save: Callable[[int, int], None],
    *,
    save_every_s: float = 10.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Time `todo` in interleaved groups of `BLOCK_GROUP`, `record` each timing, and `save(done, total)` every
    `save_every_s` and once at the end, so a killed build resumes from its last save.

    The one group loop of a table's blocks: `profiler.build_table` (on this machine) and the bundle runner (on a
    board without torch) both go through it.
    """
    last_save = time.perf_counter()
    for g in range(0, len(todo), BLOCK_GROUP):
        group = todo[g : g + BLOCK_GROUP]
        for item, timing in zip(group, time_group(group), strict=True):
            record(item, timing)
        done = g + len(group)
        if on_progress is not None:
            on_progress(done, len(todo))
        if time.perf_counter() - last_save > save_every_s and done < len(todo):
            save(done, len(todo))
            last_save = time.perf_counter()
    if todo:
        save(len(todo), len(todo))
