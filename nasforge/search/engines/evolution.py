"""`evolution`: Once-for-All's EvolutionFinder, batched: max the first objective s.t. the constraints.

As OFA: population 100, the best 25% are parents, half the children are parents mutated (each gene
resampled with probability 0.1), half are uniform crossovers of two parents. OFA resamples until a
child meets the constraints with an unbounded loop; here each fill gets at most `max_rounds` batches
and the search stops with a clear error if not even an initial population can be found.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from nasforge.search.engines.base import ENGINES, EngineContext, EngineOptions, Recorder, bounded_feasible
from nasforge.search.objectives import SearchError


@dataclass
class EvolutionEngine:
    name: str = "evolution"
    population_size: int = 100
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    max_rounds: int = 20

    def run(self, recorder: Recorder, ctx: EngineContext) -> dict[str, Any] | None:
        problem = recorder.problem
        space = problem.space
        signature = {**ctx.signature, "engine": self.name, "population_size": self.population_size}
        state = recorder.load(ctx.checkpoint, signature) if ctx.checkpoint else None
        pop = None if state is None else state["pop"].astype(np.int64)
        n_pop = min(self.population_size, recorder.budget)
        n_parents = max(int(round(n_pop * self.parent_ratio)), 1)
        n_mut = int(round(n_pop * self.mutation_ratio))
        while recorder.remaining > 0:
            rng = np.random.default_rng([ctx.seed, recorder.step])
            if pop is None:
                pop, _ = bounded_feasible(partial(space.sample_genes, rng), recorder, n_pop, self.max_rounds)
                if len(pop) == 0:
                    raise SearchError(
                        f"evolution: no arch meeting {', '.join(c.text for c in problem.constraints)} "
                        f"in {recorder.count} random samples; relax the constraints or use nsga2"
                    )
            else:
                fitness = problem.evaluate(pop).F[:, 0]  # cached: parents are not re-counted
                parents = pop[np.argsort(fitness, kind="stable")[:n_parents]]
                mutants, crosses = self._children(space, parents, rng)
                kids_m, _ = bounded_feasible(mutants, recorder, n_mut, self.max_rounds)
                kids_c, _ = bounded_feasible(crosses, recorder, n_pop - n_mut, self.max_rounds)
                pop = np.concatenate([parents, kids_m, kids_c])
            recorder.end_step()
            if ctx.checkpoint:
                recorder.save(ctx.checkpoint, signature, {"pop": pop})

    def _children(self, space: Any, parents: np.ndarray, rng: np.random.Generator) -> tuple[Any, Any]:
        """(n -> n mutated parents, n -> n uniform crossovers of two parents), OFA's two kinds of children,
        bred with the space's operators (`mutate_genes`, `crossover_genes`)."""

        def mutants(n: int) -> np.ndarray:
            return space.mutate_genes(parents[rng.integers(0, len(parents), n)], rng, self.mutate_prob)

        def crosses(n: int) -> np.ndarray:
            a = parents[rng.integers(0, len(parents), n)]
            b = parents[rng.integers(0, len(parents), n)]
            return space.crossover_genes(a, b, rng)

        return mutants, crosses


@ENGINES.register("evolution", summary="Once-for-All's evolution finder: best first objective under the constraints")
def evolution(options: EngineOptions) -> EvolutionEngine:
    return EvolutionEngine(population_size=options.pop_size)
