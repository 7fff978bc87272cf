"""Every registered search engine: constraints honoured, budget respected, one seed one result, resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nasforge.errors import ConfigError
from nasforge.search import Evaluator, SearchProblem, parse_constraint, run_search
from nasforge.search.engines import ENGINES, make_engine
from nasforge.testing import tiny_space
from nasforge.testing.search import SyntheticAccuracy, TableLatency

BUDGET = 24  # small: every engine (the GP sampler included) runs 4 searches here


def _problem() -> SearchProblem:
    space = tiny_space("tiny-mbv3")
    ev = Evaluator(space, SyntheticAccuracy(space), TableLatency(space))
    return SearchProblem(space, ev, ("accuracy", "latency"), (parse_constraint("latency<=5ms"),))


def _engine(name: str):  # type: ignore[no-untyped-def]
    """The engine with the options a conformance run needs (small populations; linas gets a measurement)."""
    truth = SyntheticAccuracy(tiny_space("tiny-mbv3"), seed=3)

    def measure(archs):  # type: ignore[no-untyped-def]
        return truth.predict(tiny_space("tiny-mbv3").features(list(archs)))

    try:
        return make_engine(name, pop_size=12, batch_size=8, measure=measure)
    except ConfigError as exc:  # an engine whose optional dependency is missing says so in one line
        pytest.skip(f"{name}: {exc}")


_FIRST: dict[str, object] = {}


def _first_run(name: str):  # type: ignore[no-untyped-def]
    """One in-memory search per engine, shared by the checks that only read it."""
    if name not in _FIRST:
        _FIRST[name] = _run(name)
    return _FIRST[name]


def _run(name: str, budget: int = BUDGET, problem: SearchProblem | None = None, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return run_search(problem or _problem(), _engine(name), budget=budget, seed=4, **kwargs)
    except ConfigError as exc:
        if "needs" in str(exc):
            pytest.skip(f"{name}: {exc}")
        raise


@pytest.mark.parametrize("name", ENGINES.names())
def test_front_meets_constraints_within_budget(name):
    result = _first_run(name)
    h = result.history
    assert 0 < len(h) <= BUDGET
    assert len(result.front) > 0
    lat = h.metrics["latency_ms"][result.front]
    assert np.all(lat <= 5.0)
    assert np.all(h.G[result.front] <= 0)


@pytest.mark.parametrize("name", ENGINES.names())
def test_one_seed_gives_one_result(name):
    a, b = _first_run(name), _run(name)
    assert np.array_equal(a.history.genes, b.history.genes)


class _Interrupted(Exception):
    """Raised from `on_step` to stop a search part-way, as a crash would."""


def _interrupt_once_saved(out_dir: Path, at: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    """An `on_step` that stops the search at the first step end after it saved anything to `out_dir`."""

    def on_step(step: int, count: int, hv: float) -> None:
        if any(out_dir.iterdir()):
            at.append((step, count))
            raise _Interrupted

    return on_step


@pytest.mark.parametrize("name", ENGINES.names())
def test_an_interrupted_search_resumes(name, tmp_path):
    """Stopped by an exception at a step end after its first checkpoint (or first stored trials), then run again
    on the same folder: it continues from there, not from the start, and ends as a search that never stopped.

    Engines that keep a study (`storage` in the result's meta) resume its stored trials, but their sampler starts
    again from its seed (it re-proposes the stored trials, told as duplicates), so what follows differs from an
    uninterrupted search: for them the stored trials must come back as they were, and the search end at its budget.
    """
    full = _first_run(name)
    budget = BUDGET if len(full.hv) >= 2 else 2 * BUDGET  # one step to save, one to interrupt
    if budget != BUDGET:
        full = _run(name, budget=budget)
    at: list[tuple[int, int]] = []
    with pytest.raises(_Interrupted):
        _run(name, budget=budget, out_dir=tmp_path, on_step=_interrupt_once_saved(tmp_path, at))
    ((step, count),) = at
    problem, computed = _problem(), []  # archs the resumed run evaluates (its evaluator's cache misses)
    compute = problem.evaluator.compute

    def counted(genes, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not args and not kwargs:  # every metric of new archs (not a one-column probe of the search's bounds)
            computed.append(len(genes))
        return compute(genes, *args, **kwargs)

    problem.evaluator.compute = counted  # type: ignore[method-assign]
    steps: list[tuple[int, int, int]] = []
    resumed = _run(name, budget=budget, problem=problem, out_dir=tmp_path,
                   on_step=lambda s, n, hv: steps.append((s, n, sum(computed))))
    h, h0 = resumed.history, full.history
    assert steps[0][:2] == (step, count)  # the step it was interrupted in, after what was saved before it
    if "storage" in resumed.meta:
        assert steps[0][2] == 0  # the stored trials are read back before anything is evaluated
        stored = slice(0, count)  # the trials stored before the interruption, as the first run evaluated them
        assert np.array_equal(h.genes[stored], h0.genes[stored]) and np.array_equal(h.F[stored], h0.F[stored])
        assert np.all(h.step[stored] == 0) and np.all(h.step[count:] > 0)  # read back first, then new trials
        assert len(h) == len(h0) == budget
        return
    assert step > 0  # with steps[0]: steps 0 .. step-1 came back from the checkpoint, the resumed run never ran them
    assert np.array_equal(h.genes, h0.genes) and np.array_equal(h.step, h0.step)
    assert np.array_equal(h.F, h0.F) and np.array_equal(h.G, h0.G)
    assert resumed.front_rows() == full.front_rows()
    assert resumed.hv == full.hv
