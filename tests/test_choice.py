"""The shipped subnet is chosen by measured validation accuracy among the best few feasible predictions."""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.pipelines.choice import Candidate, choose_by_validation, top_feasible
from nasforge.search import Evaluator, SearchError, SearchProblem, make_engine, run_search
from nasforge.search.objectives import parse_constraint
from nasforge.testing import tiny_space
from nasforge.testing.search import SyntheticAccuracy, TableLatency


def search(bound_quantile: float = 0.5, budget: int = 300):
    """nsga2 on tiny-mbv3 with a predictor that is wrong on purpose (another synthetic function than `truth`)."""
    space = tiny_space("tiny-mbv3")
    latency = TableLatency(space)
    lat = latency.predict(space.sample_many(np.random.default_rng(3), 500))
    bound = float(np.quantile(lat, bound_quantile))
    problem = SearchProblem(space, Evaluator(space, SyntheticAccuracy(space, seed=11), latency),
                            ("accuracy", "latency"), (parse_constraint(f"latency<={bound:.6f}ms"),))
    return run_search(problem, make_engine("nsga2"), budget=budget, seed=0, storage="memory"), bound


def test_top_feasible_are_the_best_predicted_distinct_feasible_subnets():
    result, bound = search()
    cands = top_feasible(result, 5)
    h = result.history
    assert len(cands) == 5 and len({c.arch.key for c in cands}) == 5
    assert all(c.latency_ms <= bound + 1e-9 for c in cands)
    predicted = [c.predicted for c in cands]
    assert predicted == sorted(predicted, reverse=True)
    # nothing feasible in the whole history is predicted above the fifth, and no infeasible one is taken
    assert h.metrics["accuracy"][h.feasible].max() == pytest.approx(predicted[0])
    taken = {c.arch.key for c in cands}
    feasible = result.problem.evaluator.archs(h.genes[h.feasible])
    better = {a.key for a, p in zip(feasible, h.metrics["accuracy"][h.feasible]) if p > predicted[-1] + 1e-12}
    assert better <= taken


def test_the_choice_follows_measured_validation_accuracy_not_the_prediction():
    result, _ = search()
    space = result.problem.space
    truth = SyntheticAccuracy(space, seed=0)  # the "validation split": ranks the candidates otherwise
    calls = []

    def measure(archs):
        calls.append(len(archs))
        return truth.predict(space.features(list(archs)))

    cands = top_feasible(result, 5)
    chosen, measured = choose_by_validation(cands, measure)
    vals = np.array([c.val for c in measured])
    assert calls == [5]  # the candidates are measured once, together
    assert chosen.val == vals.max() and chosen.arch == measured[int(np.argmax(vals))].arch
    assert chosen.arch != cands[0].arch  # the predicted best is not the measured best here: the test can tell
    assert [c.predicted for c in measured] == [c.predicted for c in cands]  # order and predictions kept


def test_ties_go_to_the_higher_prediction_and_nothing_to_choose_is_an_error():
    space = tiny_space("tiny-mbv3")
    a, b = space.smallest(), space.largest()
    chosen, _ = choose_by_validation([Candidate(a, 70.0), Candidate(b, 80.0)], lambda archs: np.array([60.0, 60.0]))
    assert chosen.arch == b
    chosen, _ = choose_by_validation([Candidate(a, 90.0), Candidate(b, 80.0)], lambda archs: np.array([50.0, 61.0]))
    assert chosen.arch == b and chosen.val == 61.0
    with pytest.raises(SearchError):
        choose_by_validation([], lambda archs: np.zeros(0))
