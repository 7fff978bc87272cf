"""pymoo's NSGA-II, AGE-MOEA and NSGA-III over the integer encoding.

Each generation runs on a fresh algorithm seeded from (seed, generation) and re-seeded with the
surviving population, so the whole state is the population's genes: a checkpoint is a small .npz
and a resumed search makes exactly the choices an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.search.engines.base import ENGINES, EngineContext, EngineOptions, Recorder


def _operators(space: Any, mutation_rate: float) -> dict[str, Any]:
    from pymoo.core.crossover import Crossover
    from pymoo.core.duplicate import DuplicateElimination
    from pymoo.core.mutation import Mutation
    from pymoo.core.sampling import Sampling

    sizes = space.gene_sizes.astype(np.int64)

    class GeneSampling(Sampling):
        def _do(self, problem, n_samples, *args, random_state=None, **kwargs):  # type: ignore[no-untyped-def]
            return space.sample_genes(random_state, n_samples)

    class GeneCrossover(Crossover):
        """Uniform crossover: each gene from either parent (both children)."""

        def __init__(self) -> None:
            super().__init__(2, 2, prob=0.9)

        def _do(self, problem, X, *args, random_state=None, **kwargs):  # type: ignore[no-untyped-def]
            swap = random_state.random(X.shape[1:]) < 0.5
            Y = X.copy()
            Y[0][swap], Y[1][swap] = X[1][swap], X[0][swap]
            return Y

    class GeneMutation(Mutation):
        """Every offspring is considered (prob=1); each gene moves to a *different* choice with `rate`.

        pymoo's `prob` is per individual; the per-gene rate lives here so it really mutates.
        """

        def __init__(self) -> None:
            super().__init__(prob=1.0)

        def _do(self, problem, X, *args, random_state=None, **kwargs):  # type: ignore[no-untyped-def]
            X = X.astype(np.int64).copy()
            flip = (random_state.random(X.shape) < mutation_rate) & (sizes[None, :] > 1)
            step = 1 + (random_state.random(X.shape) * np.maximum(sizes - 1, 1)[None, :]).astype(np.int64)
            moved = (X + step) % sizes[None, :]
            X[flip] = moved[flip]
            return X

    class CanonicalDuplicates(DuplicateElimination):
        """Two encodings are duplicates when they are one network (skipped-block genes ignored); hashed,
        not pymoo's pairwise distances. Same semantics: a row duplicates an earlier row or `other`."""

        def _do(self, pop, other, is_duplicate):  # type: ignore[no-untyped-def]
            keys = [row.tobytes() for row in _canon(space, pop.get("X"))]
            if other is None:
                seen: set[bytes] = set()
                for i, k in enumerate(keys):
                    if k in seen:
                        is_duplicate[i] = True
                    seen.add(k)
            else:
                taken = {row.tobytes() for row in _canon(space, other.get("X"))}
                for i, k in enumerate(keys):
                    if k in taken:
                        is_duplicate[i] = True
            return is_duplicate

    return {
        "sampling": GeneSampling(),
        "crossover": GeneCrossover(),
        "mutation": GeneMutation(),
        "eliminate_duplicates": CanonicalDuplicates(),
    }


def _canon(space: Any, X: np.ndarray) -> np.ndarray:
    X = np.atleast_2d(np.asarray(X)).astype(np.int64)
    return np.where(space.active_mask(X), X, 0)


@dataclass
class PymooEngine:
    """`nsga2` (default), `agemoea` or `nsga3`."""

    name: str = "nsga2"
    pop_size: int = 100
    mutation_rate: float | None = None  # default 1 / number of genes
    _ref_dirs: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def _stateless(self) -> bool:
        """NSGA-II keeps no state beyond its population; NSGA-III tracks ideal/nadir points."""
        return self.name == "nsga2"

    def _algorithm(self, space: Any, n_obj: int, sampling: Any) -> Any:
        ops = _operators(space, self.mutation_rate or 1.0 / space.num_genes)
        if sampling is not None:
            ops["sampling"] = sampling
        if self.name == "nsga2":
            from pymoo.algorithms.moo.nsga2 import NSGA2

            return NSGA2(pop_size=self.pop_size, **ops)
        if n_obj < 2:
            raise ConfigError(f"engine {self.name} needs at least two objectives; use nsga2 or evolution")
        if self.name == "agemoea":
            try:
                from pymoo.algorithms.moo.age import AGEMOEA
            except Exception:  # pymoo raises a bare Exception when numba is missing
                raise ConfigError("engine agemoea needs numba (pip install numba); use nsga3 or nsga2") from None

            return AGEMOEA(pop_size=self.pop_size, **ops)
        if self.name == "nsga3":
            from pymoo.algorithms.moo.nsga3 import NSGA3
            from pymoo.util.ref_dirs import get_reference_directions

            if self._ref_dirs is None or self._ref_dirs.shape[1] != n_obj:
                # Das-Dennis for 2-3 objectives (instant); Riesz energy beyond (slow, computed once).
                if n_obj <= 3:
                    parts = self.pop_size - 1
                    if n_obj == 3:  # (p+1)(p+2)/2 directions: the most that fit in the population
                        parts = 1
                        while (parts + 2) * (parts + 3) // 2 <= self.pop_size:
                            parts += 1
                    self._ref_dirs = get_reference_directions("das-dennis", n_obj, n_partitions=parts)
                else:
                    self._ref_dirs = get_reference_directions("energy", n_obj, self.pop_size, seed=1)
            return NSGA3(ref_dirs=self._ref_dirs, pop_size=self.pop_size, **ops)
        raise ConfigError(f"unknown pymoo engine {self.name!r}")

    def run(self, recorder: Recorder, ctx: EngineContext) -> dict[str, Any] | None:
        from pymoo.core.population import Population
        from pymoo.core.problem import Problem
        from pymoo.core.termination import NoTermination

        problem = recorder.problem
        space = problem.space
        record = {"on": True}

        class _Problem(Problem):
            def __init__(self) -> None:
                super().__init__(
                    n_var=space.num_genes,
                    n_obj=problem.n_obj,
                    n_ieq_constr=problem.n_constr,
                    xl=np.zeros(space.num_genes),
                    xu=(space.gene_sizes - 1).astype(np.float64),
                    vtype=int,
                )

            def _evaluate(self, X, out, *args, **kwargs):  # type: ignore[no-untyped-def]
                X = np.asarray(X).astype(np.int64)
                ev = recorder.evaluate(X) if record["on"] else problem.evaluate(X)
                out["F"] = ev.F
                if problem.n_constr:
                    out["G"] = ev.G

        pp = _Problem()
        signature = {
            **ctx.signature, "engine": self.name, "pop_size": self.pop_size, "mutation_rate": self.mutation_rate
        }
        state = recorder.load(ctx.checkpoint, signature) if ctx.checkpoint else None
        pop_X = None if state is None else state["pop"].astype(np.int64)
        algo = None
        while recorder.remaining > 0:
            gen = recorder.step
            seed = int(np.random.SeedSequence([ctx.seed, gen]).generate_state(1)[0] % (2**31))
            if pop_X is None:
                algo = self._algorithm(space, problem.n_obj, None)
                algo.setup(pp, termination=NoTermination(), seed=seed, verbose=False)
            elif algo is None or not self._stateless:
                algo = self._algorithm(space, problem.n_obj, Population.new(X=pop_X))
                algo.setup(pp, termination=NoTermination(), seed=seed, verbose=False)
                record["on"] = False  # the survivors: already evaluated (cached), not counted again
                init = algo.ask()
                algo.evaluator.eval(pp, init)
                algo.tell(infills=init)
                record["on"] = True
            else:
                # NSGA-II's state is its population with rank and crowding: recompute them exactly as a
                # re-seeded algorithm would, and keep going (a fresh algorithm per generation costs ~40%).
                algo.pop = algo.survival.do(
                    pp, algo.pop, n_survive=len(algo.pop), random_state=algo.random_state, algorithm=algo
                )
            algo.random_state = np.random.default_rng(seed)  # this generation's draws depend on (seed, gen) only
            infills = algo.ask()
            if infills is None or len(infills) == 0:
                break  # every new child duplicates an evaluated arch: the space is exhausted
            infills = infills[: recorder.remaining]
            algo.evaluator.eval(pp, infills)
            algo.tell(infills=infills)
            pop_X = algo.pop.get("X").astype(np.int64)
            recorder.end_step()
            if ctx.checkpoint:
                recorder.save(ctx.checkpoint, signature, {"pop": pop_X})


@ENGINES.register("nsga2", summary="pymoo's NSGA-II (multi-objective, the default)")
def nsga2(options: EngineOptions) -> PymooEngine:
    return PymooEngine("nsga2", pop_size=options.pop_size, mutation_rate=options.mutation_rate)


@ENGINES.register("nsga3", summary="pymoo's NSGA-III (reference directions; 2+ objectives)")
def nsga3(options: EngineOptions) -> PymooEngine:
    return PymooEngine("nsga3", pop_size=options.pop_size, mutation_rate=options.mutation_rate)


@ENGINES.register("agemoea", summary="pymoo's AGE-MOEA (needs numba; 2+ objectives)")
def agemoea(options: EngineOptions) -> PymooEngine:
    return PymooEngine("agemoea", pop_size=options.pop_size, mutation_rate=options.mutation_rate)
