"""Engines on a synthetic two-objective problem over tiny-mbv3 whose true front is known by enumeration."""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.errors import ConfigError
from nasforge.search import (
    Evaluator,
    SearchError,
    SearchProblem,
    hypervolume_for,
    make_engine,
    parse_constraint,
    run_search,
)
from nasforge.search.pareto import non_dominated
from nasforge.testing import tiny_space
from nasforge.testing.search import SyntheticAccuracy, TableLatency, all_encodings


def problem(constraints=(), objectives=("accuracy", "latency")):
    space = tiny_space("tiny-mbv3")
    ev = Evaluator(space, SyntheticAccuracy(space), TableLatency(space))
    return SearchProblem(space, ev, objectives, tuple(parse_constraint(c) for c in constraints))


def true_hv(p):
    ev = p.evaluate(all_encodings(p.space))
    F = ev.F[ev.feasible]
    return hypervolume_for(p)(F), F[non_dominated(F)]


def test_non_dominated_matches_brute_force():
    rng = np.random.default_rng(1234)
    F = rng.integers(0, 20, size=(300, 2)).astype(float)
    nd = set(non_dominated(F).tolist())
    for i, f in enumerate(F):
        dominated = np.any(np.all(F <= f, axis=1) & np.any(F < f, axis=1))
        first = i == int(np.nonzero(np.all(F == f, axis=1))[0][0])
        assert (i in nd) == (not dominated and first)


def test_nsga2_reaches_95_percent_of_true_hypervolume():
    p = problem()
    hv_true, front = true_hv(p)
    assert len(front) > 20  # a real trade-off, not a single point
    result = run_search(p, make_engine("nsga2", pop_size=100), budget=600, seed=0)  # 2.5% of the space
    assert result.hv[-1][2] >= 0.95 * hv_true
    assert result.hv[-1][2] <= hv_true + 1e-9
    # hypervolume per generation never decreases (it is over everything seen so far)
    hvs = [v for _, _, v in result.hv]
    assert all(b >= a - 1e-12 for a, b in zip(hvs, hvs[1:]))


def test_nsga2_beats_random_at_equal_budget():
    p = problem()
    hv_n = run_search(p, make_engine("nsga2"), budget=1500, seed=1).hv[-1][2]
    hv_r = run_search(p, make_engine("random"), budget=1500, seed=1).hv[-1][2]
    assert hv_n > hv_r


CONSTRAINTS = ("latency<=6ms", "macs<=1.2M", "accuracy>=60")


def _measure(space):
    truth = SyntheticAccuracy(space)
    return lambda archs: truth.predict(space.features(list(archs))) - 1.0


@pytest.mark.parametrize(
    "engine, budget",
    [("nsga2", 600), ("nsga3", 600), ("evolution", 600), ("random", 400), ("tpe", 60), ("gp", 14), ("linas", 40)],
)
def test_every_returned_arch_meets_the_constraints(engine, budget):
    p = problem(CONSTRAINTS)
    kw = {"measure": _measure(p.space)} if engine == "linas" else {}
    if engine == "gp":
        kw["batch_size"] = 4
    result = run_search(p, make_engine(engine, **kw), budget=budget, seed=0)
    rows = result.front_rows()
    assert rows, "found no feasible arch"
    assert len(result.history) <= budget
    space = p.space
    lat = TableLatency(space)
    for r in rows:
        arch = space.parse_arch(r["arch"])  # what --arch accepts elsewhere
        assert space.macs(arch) == r["macs"] <= 1.2e6
        assert r["latency_ms"] == pytest.approx(float(lat.predict([arch])[0]), abs=1e-3)
        assert r["latency_ms"] <= 6.0 and r["accuracy"] >= 60
        assert r["latency_source"] == "estimated"
    # the front is non-dominated among the returned points
    F = np.array([[-r["accuracy"], r["latency_ms"]] for r in rows])
    assert len(non_dominated(F)) == len(F)


def test_linas_reports_only_measured_points():
    p = problem()
    measure = _measure(p.space)
    result = run_search(p, make_engine("linas", measure=measure), budget=50, seed=0)
    h = result.history
    assert len(h) == 50
    assert len({g.tobytes() for g in h.genes}) == 50  # never measures a configuration twice
    assert np.allclose(h.metrics["accuracy"], measure(p.evaluator.archs(h.genes)))  # measured, not predicted


def test_linas_learns_only_from_its_own_measurements():
    """The problem's accuracy predictor (a run's, built from measurements linas is not charged for) never steers
    linas: with a good, a wrong and a constant predictor it measures the same configurations in the same order."""
    space = tiny_space("tiny-mbv3")
    measure = _measure(space)

    class Constant:
        def predict(self, features):
            return np.full(len(features), 50.0)

    runs = []
    for predictor in (SyntheticAccuracy(space), SyntheticAccuracy(space, seed=11), Constant()):
        p = SearchProblem(space, Evaluator(space, predictor, TableLatency(space)), ("accuracy", "latency"))
        runs.append(run_search(p, make_engine("linas", measure=measure), budget=50, seed=3).history)
    for h in runs[1:]:
        assert np.array_equal(h.genes, runs[0].genes)
        assert np.array_equal(h.metrics["accuracy"], runs[0].metrics["accuracy"])


@pytest.mark.parametrize("engine", ["nsga2", "evolution", "random", "linas", "tpe"])
def test_same_seed_same_front(engine):
    budgets = {"tpe": 40, "linas": 30}
    fronts = []
    for _ in range(2):
        p = problem(("latency<=8ms",))
        kw = {"measure": _measure(p.space)} if engine == "linas" else {}
        r = run_search(p, make_engine(engine, **kw), budget=budgets.get(engine, 500), seed=7)
        fronts.append(r.front_rows())
    assert fronts[0] == fronts[1]


def test_mutation_really_mutates():
    from nasforge.search.engines.pymoo_engines import _operators

    space = tiny_space("tiny-mbv3")
    mut = _operators(space, 0.25)["mutation"]
    X = np.zeros((2000, space.num_genes), dtype=np.int64)
    Y = mut._do(None, X, random_state=np.random.default_rng(0))
    changed = (Y != X).mean()
    assert 0.22 < changed < 0.28  # per gene, not per individual, and every flip changes the value
    assert np.all(Y < space.gene_sizes) and np.all(Y >= 0)


# sha256 (16 hex) of the history genes of a search written by the code before evolution bred through the
# space's operators and pymoo sampled through `space.sample_genes`: the same seed still gives the same search.
GOLDEN_HISTORY = {"evolution": "71dc04d667a16f10", "nsga2": "124d6b4e91a1eabe"}


@pytest.mark.parametrize("engine", sorted(GOLDEN_HISTORY))
def test_engines_search_as_before_for_a_seed(engine):
    import hashlib

    r = run_search(problem(("latency<=6ms",)), make_engine(engine, pop_size=40), budget=300, seed=5)
    assert len(r.history) == 300
    assert hashlib.sha256(np.ascontiguousarray(r.history.genes).tobytes()).hexdigest()[:16] == GOLDEN_HISTORY[engine]


def test_evolution_breeds_with_the_spaces_operators(monkeypatch):
    """One mutation and one crossover: the engine's children come from `SearchSpace.mutate_genes/crossover_genes`."""
    from nasforge.space import SearchSpace

    calls = {"mutate_genes": 0, "crossover_genes": 0}
    for name in calls:
        real = getattr(SearchSpace, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(SearchSpace, name, counted)
    r = run_search(problem(("latency<=6ms",)), make_engine("evolution", pop_size=40), budget=200, seed=5)
    assert len(r.history) == 200 and calls["mutate_genes"] > 0 and calls["crossover_genes"] > 0
    # and what they breed is what the engine evaluates: children that are no parent's copy (or a new sample) exist
    monkeypatch.setattr(SearchSpace, "mutate_genes", lambda self, genes, rng, prob=0.1: genes)
    monkeypatch.setattr(SearchSpace, "crossover_genes", lambda self, a, b, rng: a)
    frozen = run_search(problem(("latency<=6ms",)), make_engine("evolution", pop_size=40), budget=200, seed=5)
    first = {g.tobytes() for g in frozen.history.genes[frozen.history.step == 0]}
    assert {g.tobytes() for g in frozen.history.genes} == first  # no operator, no new arch after the first population


def test_evolution_gives_up_on_unmeetable_constraints():
    p = problem(("accuracy>=99.9",))
    with pytest.raises(SearchError, match="no arch meeting"):
        run_search(p, make_engine("evolution"), budget=100_000, seed=0)


def test_single_objective_engines():
    p = problem(("macs<=1.5M",), objectives=("accuracy",))
    r = run_search(p, make_engine("evolution"), budget=800, seed=0)
    assert len(r.front) == 1
    with pytest.raises(ConfigError, match="two objectives"):
        run_search(p, make_engine("nsga3"), budget=100, seed=0)


def test_agemoea_runs_or_says_what_is_missing():
    p = problem()
    try:
        r = run_search(p, make_engine("agemoea"), budget=300, seed=0)
    except ConfigError as exc:
        assert "numba" in str(exc)
    else:
        assert len(r.front)


def test_unknown_engine():
    with pytest.raises(ConfigError, match="unknown engine"):
        make_engine("simulated-annealing")
    with pytest.raises(ConfigError, match="measurement"):
        make_engine("linas")


@pytest.mark.parametrize("engine", ["nsga2", "nsga3"])
def test_three_objectives(engine):
    p = problem(("params<=20K",), objectives=("accuracy", "latency", "macs"))
    eng = make_engine(engine)
    r = run_search(p, eng, budget=400, seed=0)
    F = r.history.F[r.front]
    assert len(F) > 5 and len(non_dominated(F)) == len(F)
    assert np.all(r.history.metrics["params"][r.front] <= 20e3)
    if engine == "nsga3":
        assert len(eng._ref_dirs) <= 100  # no more reference directions than the population
