"""`random`: uniform per-gene sampling, the baseline every engine is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nasforge.search.engines.base import ENGINES, EngineContext, EngineOptions, Recorder


@dataclass
class RandomEngine:
    name: str = "random"
    batch_size: int = 100

    def run(self, recorder: Recorder, ctx: EngineContext) -> dict[str, Any] | None:
        space = recorder.problem.space
        signature = {**ctx.signature, "engine": self.name, "batch_size": self.batch_size}
        if ctx.checkpoint:
            recorder.load(ctx.checkpoint, signature)
        while recorder.remaining > 0:
            # One generator per step: a resumed run draws what an uninterrupted one would.
            rng = np.random.default_rng([ctx.seed, recorder.step])
            recorder.evaluate(space.sample_genes(rng, min(self.batch_size, recorder.remaining)))
            recorder.end_step()
            if ctx.checkpoint:
                recorder.save(ctx.checkpoint, signature, {})


@ENGINES.register("random", summary="uniform random sampling (the baseline)")
def random_engine(options: EngineOptions) -> RandomEngine:
    return RandomEngine(batch_size=options.batch_size or options.pop_size)
