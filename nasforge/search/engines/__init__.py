"""Search engines behind one interface: `engine.run(recorder, ctx)`; `make_engine(name)` builds one.

Every engine is a factory registered in `ENGINES` (`@ENGINES.register("nsga2")`); the CLI lists
`ENGINES.names()`, and `nasforge.testing.conformance.engines` runs its suite on each of them. What an
engine needs from the command (a measurement function) it declares with `@needs(...)`; the pipeline reads
it through `engine_needs(name)`, never the engine's name.
"""

from nasforge.search.engines.base import (
    ENGINES,
    Engine,
    EngineContext,
    EngineNeeds,
    EngineOptions,
    History,
    Recorder,
    engine_needs,
    make_engine,
    needs,
)

__all__ = [
    "ENGINES",
    "Engine",
    "EngineContext",
    "EngineNeeds",
    "EngineOptions",
    "History",
    "Recorder",
    "engine_needs",
    "make_engine",
    "needs",
]
