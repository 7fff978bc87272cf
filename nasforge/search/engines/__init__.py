"""Search engines behind one interface: `engine.run(recorder, ctx)`; `make_engine(name)` builds one.

Every engine is a factory registered in `ENGINES` (`@ENGINES.register("nsga2")`); the CLI lists
`ENGINES.names()`, and `nasforge.testing.conformance.engines` runs its suite on each of them.
"""

from nasforge.search.engines.base import (
    ENGINES,
    Engine,
    EngineContext,
    EngineOptions,
    History,
    Recorder,
    make_engine,
)

__all__ = ["ENGINES", "Engine", "EngineContext", "EngineOptions", "History", "Recorder", "make_engine"]
