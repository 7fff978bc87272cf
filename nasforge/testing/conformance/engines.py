"""Every registered search engine: constraints honoured, budget respected, one seed one result, resumable."""

from __future__ import annotations

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


def _run(name: str, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return run_search(_problem(), _engine(name), budget=BUDGET, seed=4, **kwargs)
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


@pytest.mark.parametrize("name", ENGINES.names())
def test_a_finished_search_resumes_to_the_same_front(name, tmp_path):
    first = _run(name, out_dir=tmp_path)
    again = _run(name, out_dir=tmp_path)
    assert np.array_equal(first.history.genes[first.front], again.history.genes[again.front])
