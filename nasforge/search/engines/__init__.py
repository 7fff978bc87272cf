"""Search engines behind one interface: `engine.run(recorder, ctx)`; `make_engine(name)` builds one."""

from __future__ import annotations

from typing import Any

from nasforge.errors import ConfigError
from nasforge.search.engines.base import Engine, EngineContext, History, Recorder

ENGINES = ("nsga2", "agemoea", "nsga3", "evolution", "tpe", "gp", "random", "linas")
PYMOO_ENGINES = ("nsga2", "agemoea", "nsga3")
OPTUNA_ENGINES = ("tpe", "gp")


def make_engine(
    name: str,
    *,
    pop_size: int = 100,
    mutation_rate: float | None = None,
    measure: Any = None,
    batch_size: int | None = None,
) -> Engine:
    """The engine called `name`; `measure(archs) -> accuracy` is required by (and only by) linas."""
    if name in PYMOO_ENGINES:
        from nasforge.search.engines.pymoo_engines import PymooEngine

        return PymooEngine(name, pop_size=pop_size, mutation_rate=mutation_rate)
    if name == "evolution":
        from nasforge.search.engines.evolution import EvolutionEngine

        return EvolutionEngine(population_size=pop_size)
    if name in OPTUNA_ENGINES:
        from nasforge.search.engines.optuna_engines import OptunaEngine

        return OptunaEngine(name, batch_size=batch_size or 16)
    if name == "random":
        from nasforge.search.engines.random_search import RandomEngine

        return RandomEngine(batch_size=batch_size or pop_size)
    if name == "linas":
        if measure is None:
            raise ConfigError("engine linas needs a measurement function (a trained run: --run RUN_DIR)")
        from nasforge.search.engines.linas import LinasEngine

        return LinasEngine(measure, batch_size=batch_size or 10)
    raise ConfigError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Engine", "EngineContext", "History", "Recorder", "make_engine"]
