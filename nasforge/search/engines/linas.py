"""`linas`: predictor-in-the-loop search with real measurements (DyNAS-T's LINAS).

Each round: fit a surrogate of accuracy on every configuration measured so far, run NSGA-II on the
surrogate (plus the exact cost/latency models), and measure only not-yet-measured configurations
taken from the predicted front (then the next fronts). History, fronts and hypervolume hold
measured points only, and the budget counts measurements.

The surrogate learns from LINAS's own measurements only, as in DyNAS-T (whose predictors are trained on the
subnets measured in the loop): the problem's accuracy predictor (a run's, built from its own measurements)
is never read, so a budget of N measurements means N, with no information from measurements it is not
charged for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import ConfigError
from nasforge.search.engines.base import ENGINES, EngineContext, EngineOptions, Recorder, needs
from nasforge.search.engines.pymoo_engines import PymooEngine
from nasforge.search.objectives import Evaluator, SearchProblem
from nasforge.search.pareto import Hypervolume, non_dominated

Measure = Callable[[Sequence[ArchConfig]], np.ndarray]


class RidgeSurrogate:
    """Ridge regression on one-hot features (intercept not penalised), fitted on measured points only."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.coef: np.ndarray | None = None

    def _x(self, features: np.ndarray) -> np.ndarray:
        return np.concatenate([features.astype(np.float64), np.ones((len(features), 1))], axis=1)

    def fit(self, features: np.ndarray, y: np.ndarray) -> RidgeSurrogate:
        x = self._x(features)
        reg = self.alpha * np.eye(x.shape[1])
        reg[-1, -1] = 0.0
        self.coef = np.linalg.solve(x.T @ x + reg, x.T @ np.asarray(y, dtype=np.float64))
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        assert self.coef is not None, "fit() first"
        return self._x(features) @ self.coef


@dataclass
class LinasEngine:
    measure: Measure
    name: str = "linas"
    n_initial: int = 20
    batch_size: int = 10
    inner_budget: int = 2000
    inner_pop: int = 100

    def run(self, recorder: Recorder, ctx: EngineContext) -> dict[str, Any] | None:
        problem = recorder.problem
        space = problem.space
        ev0 = problem.evaluator
        if "accuracy" not in problem.objectives:
            raise ConfigError("linas measures accuracy: include 'accuracy' in --objectives")
        signature = {**ctx.signature, "engine": self.name, "n_initial": self.n_initial, "batch_size": self.batch_size}
        if ctx.checkpoint:
            recorder.load(ctx.checkpoint, signature)
        while recorder.remaining > 0:
            rng = np.random.default_rng([ctx.seed, recorder.step])
            h = recorder.history()
            measured = {row.tobytes() for row in h.genes}
            if len(h) < min(self.n_initial, recorder.budget):
                cand = self._initial(problem, rng, self.n_initial - len(h), measured)
            else:
                surrogate = RidgeSurrogate().fit(space.features(h.genes), h.metrics["accuracy"])
                cand = self._from_predicted_front(problem, surrogate, ctx.seed + recorder.step, measured)
            cand = cand[: min(self.batch_size if len(h) >= self.n_initial else len(cand), recorder.remaining)]
            if len(cand) == 0:
                break  # every configuration the surrogate proposes is measured already
            metrics = ev0(cand)
            metrics["accuracy"] = np.asarray(self.measure(ev0.archs(cand)), dtype=np.float64).reshape(-1)
            recorder.evaluate(cand, metrics)
            recorder.end_step()
            if ctx.checkpoint:
                recorder.save(ctx.checkpoint, signature, {})

    def _cost_ok(self, problem: SearchProblem, genes: np.ndarray) -> np.ndarray:
        metrics = problem.evaluator(genes)
        ok = np.ones(len(genes), dtype=bool)
        for c in problem.constraints:
            if c.metric != "accuracy":
                ok &= c.satisfied(metrics[c.column])
        return ok

    def _initial(self, problem: SearchProblem, rng: np.random.Generator, n: int, measured: set[bytes]) -> np.ndarray:
        """Random configurations meeting the cost constraints (bounded tries)."""
        space = problem.space
        out: list[np.ndarray] = []
        keys = set(measured)
        for _ in range(50):
            genes = problem.evaluator.canonical(space.sample_genes(rng, max(4 * n, 64)))
            for row in genes[self._cost_ok(problem, genes)]:
                if row.tobytes() not in keys and len(out) < n:
                    keys.add(row.tobytes())
                    out.append(row)
            if len(out) >= n:
                break
        return np.array(out, dtype=np.int64).reshape(-1, space.num_genes)

    def _from_predicted_front(
        self, problem: SearchProblem, surrogate: RidgeSurrogate, seed: int, measured: set[bytes]
    ) -> np.ndarray:
        ev0 = problem.evaluator
        inner_ev = Evaluator(problem.space, surrogate, ev0.latency, cost=ev0.cost)
        inner = SearchProblem(problem.space, inner_ev, problem.objectives, problem.constraints)
        rec = Recorder(inner, self.inner_budget, Hypervolume(np.zeros(inner.n_obj), np.ones(inner.n_obj)))
        PymooEngine("nsga2", pop_size=self.inner_pop).run(rec, EngineContext(seed=seed))
        h = rec.history()
        pool = np.nonzero(h.feasible)[0]
        _, first = np.unique(h.genes[pool], axis=0, return_index=True)
        pool = pool[np.sort(first)]
        pool = np.array([i for i in pool if h.genes[i].tobytes() not in measured], dtype=np.int64)
        chosen: list[int] = []
        while len(pool) and len(chosen) < self.batch_size:
            nd = pool[non_dominated(h.F[pool])]
            need = self.batch_size - len(chosen)
            if len(nd) > need:  # spread the picks along the front
                nd = nd[np.argsort(h.F[nd, 0], kind="stable")]
                nd = nd[np.unique(np.linspace(0, len(nd) - 1, need).round().astype(int))]
            chosen.extend(int(i) for i in nd)
            pool = np.setdiff1d(pool, nd)
        return h.genes[chosen]


@ENGINES.register("linas", summary="DyNAS-T's LINAS: a surrogate fitted on real measurements in the loop")
@needs(measurements=True)
def linas(options: EngineOptions) -> LinasEngine:
    if options.measure is None:
        raise ConfigError("engine linas needs a measurement function (a trained run: --run RUN_DIR)")
    return LinasEngine(options.measure, batch_size=options.batch_size or 10)
