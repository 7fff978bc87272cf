"""Multi-objective search over a trained supernet's predictors: `run_search` is the one entry point.

    problem = SearchProblem(space, Evaluator(space, predictor, latency), ("accuracy", "latency"),
                            (parse_constraint("latency<=15ms"),))
    result = run_search(problem, make_engine("nsga2"), budget=10_000, seed=0, out_dir=Path("out"))
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.io import atomic_write_json
from nasforge.search.engines import ENGINES, Engine, EngineContext, History, Recorder, make_engine
from nasforge.search.objectives import (
    Constraint,
    Evaluator,
    SearchError,
    SearchProblem,
    check_feasible,
    metric_range,
    parse_constraint,
    parse_objectives,
)
from nasforge.search.pareto import Hypervolume, front_rows, non_dominated

__all__ = [
    "ENGINES",
    "Constraint",
    "Evaluator",
    "SearchError",
    "SearchProblem",
    "SearchResult",
    "check_feasible",
    "hypervolume_for",
    "make_engine",
    "non_dominated",
    "parse_constraint",
    "parse_objectives",
    "run_search",
    "write_outputs",
]


@dataclass
class SearchResult:
    problem: SearchProblem
    engine: str
    seed: int
    history: History
    front: np.ndarray  # indices into history
    hypervolume: Hypervolume
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def hv(self) -> list[tuple[int, int, float]]:
        return self.history.hv

    def front_rows(self) -> list[dict[str, Any]]:
        h = self.history
        order = self.front[np.argsort(h.F[self.front, 0], kind="stable")] if len(self.front) else self.front
        archs = self.problem.evaluator.archs(h.genes[order]) if len(order) else []
        return front_rows(archs, {c: v[order] for c, v in h.metrics.items()}, self.problem.evaluator.latency_source)


def hypervolume_for(problem: SearchProblem) -> Hypervolume:
    """Fixed normalisation: accuracy over 0..100 %, cost metrics over smallest..largest subnet."""
    ideal, nadir = [], []
    for name in problem.objectives:
        if name == "accuracy":
            ideal.append(-100.0)
            nadir.append(0.0)
        else:
            lo, hi = metric_range(problem, name)
            ideal.append(lo)
            nadir.append(hi)
    return Hypervolume(ideal, nadir)


def signature(problem: SearchProblem, seed: int) -> dict[str, Any]:
    """What must match for a checkpoint or a shared study to belong to this search."""
    return {
        "space": problem.space.fingerprint,
        "objectives": list(problem.objectives),
        "constraints": [c.text for c in problem.constraints],
        "latency_target": getattr(problem.evaluator.latency, "target", None),
        "seed": int(seed),
    }


def study_name(engine: str, problem: SearchProblem, seed: int) -> str:
    digest = hashlib.sha256(json.dumps(signature(problem, seed), sort_keys=True).encode()).hexdigest()[:10]
    return f"nasforge-{engine}-{problem.space.name}-{'-'.join(problem.objectives)}-seed{seed}-{digest}"


def run_search(
    problem: SearchProblem,
    engine: Engine,
    *,
    budget: int,
    seed: int = 0,
    out_dir: Path | None = None,
    storage: str | None = None,
    worker: int = 0,
    resume: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,
) -> SearchResult:
    """Check feasibility, run `engine` for `budget` evaluations, return the feasible front.

    With `out_dir`, engines checkpoint there each step and resume from it; engines that keep a study
    keep it in `storage` (their default: SQLite in `out_dir`).
    """
    if budget <= 0:
        raise ConfigError(f"--budget must be positive, got {budget}")
    check_feasible(problem)
    hv = hypervolume_for(problem)
    recorder = Recorder(problem, budget, hv, on_step)
    ckpt = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = out_dir / f"checkpoint-{engine.name}.npz"
        if not resume and ckpt.exists():
            ckpt.unlink()
    ctx = EngineContext(
        seed=seed,
        checkpoint=ckpt,
        signature=signature(problem, seed),
        storage=storage,
        study_name=study_name(engine.name, problem, seed),
        worker=worker,
        out_dir=out_dir,
    )
    t0 = time.perf_counter()
    meta = engine.run(recorder, ctx) or {}
    seconds = time.perf_counter() - t0
    history = recorder.history()
    result = SearchResult(problem, engine.name, seed, history, history.front(), hv, seconds)
    result.meta = dict(meta)
    return result


def write_outputs(result: SearchResult, out_dir: Path, *, plot: bool = True) -> dict[str, Path]:
    """pareto.json, history.csv, hypervolume.csv, search.json and pareto.png (atomic writes)."""
    from nasforge.search.pareto import plot_front, write_history_csv, write_hv_csv, write_pareto_json

    out_dir.mkdir(parents=True, exist_ok=True)
    p = result.problem
    h = result.history
    paths = {
        "pareto": out_dir / "pareto.json",
        "history": out_dir / "history.csv",
        "hypervolume": out_dir / "hypervolume.csv",
        "meta": out_dir / "search.json",
    }
    write_history_csv(paths["history"], p.space, h, p.evaluator.archs(h.genes) if len(h) else [])
    write_hv_csv(paths["hypervolume"], h.hv)
    write_pareto_json(paths["pareto"], result.front_rows())
    atomic_write_json(
        paths["meta"],
        {
            "engine": result.engine,
            "seed": result.seed,
            "space": p.space.name,
            "space_fingerprint": p.space.fingerprint,
            "objectives": list(p.objectives),
            "constraints": [c.text for c in p.constraints],
            "latency_target": getattr(p.evaluator.latency, "target", None),
            "latency_source": p.evaluator.latency_source,
            "evaluations": len(h),
            "front_size": len(result.front),
            "hypervolume": h.hv[-1][2] if h.hv else 0.0,
            "hypervolume_normalisation": result.hypervolume.to_dict(),
            "seconds": round(result.seconds, 3),
            **{k: v for k, v in result.meta.items() if v is not None},
        },
    )
    if plot and len(result.front):
        fm = {c: v[result.front] for c, v in h.metrics.items()}
        paths["plot"] = out_dir / "pareto.png"
        plot_front(paths["plot"], p.objectives, h.metrics, h.feasible, fm, p.constraints,
                   f"{p.space.name}: {result.engine}, {len(h)} evaluations")
    return paths


