"""Search from a `SearchConfig`: load what it names (run, predictor, latency model), search, write the outputs.

    outcome = search_from_config(SearchConfig(run="runs/x", target="cpu", constraints=("latency<=2ms",)))

The CLI's `nasforge search` and the quickstart both call this; progress goes to `on_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nasforge.errors import ConfigError
from nasforge.io import atomic_write_text, check_output_dir
from nasforge.search import Evaluator, SearchError, SearchProblem, SearchResult, make_engine, run_search, write_outputs
from nasforge.search.config import SearchConfig
from nasforge.search.engines import engine_needs
from nasforge.space import SearchSpace, load_space

if TYPE_CHECKING:
    from nasforge.latency.model import LatencyModel
    from nasforge.latency.targets import Target
    from nasforge.predictors.base import AccuracyPredictor
    from nasforge.train.runs import Run


@dataclass
class SearchOutcome:
    result: SearchResult
    out_dir: Path
    paths: dict[str, Path]


def load_accuracy(path: Path | None, run: Any, space: SearchSpace) -> Any:
    """The run's predictor (refused if built for another space or supernet), or the one at `path`."""
    from nasforge.predictors import load_predictor, load_run_predictor

    if run is not None:
        return load_run_predictor(run, path)
    if path is None:
        raise ConfigError("accuracy needs a predictor: give --predictor PATH or --run RUN_DIR")
    return load_predictor(path, space)


def load_latency(target: Target | str, space: SearchSpace, lut: str | None) -> Any:
    """The target's latency model: `lut` if given, else a shipped table, else the roofline estimate."""
    from nasforge.latency import load_latency_model

    return load_latency_model(target, space, lut_path=lut)


def real_accuracy(run: Any) -> Callable[[Any], Any]:
    """What an engine that `needs(measurements=True)` measures with: top-1 on the run's val split, BN recalibrated."""
    from nasforge.train.runs import evaluate_subnets

    return lambda archs: evaluate_subnets(run, list(archs), split="val")


def default_out(cfg: SearchConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    if cfg.run:
        return Path(cfg.run) / f"search-{cfg.target or 'cost'}"
    return Path("search-out")


def search_from_config(
    cfg: SearchConfig, *, on_step: Callable[[int, int, float], None] | None = None, device: str = "auto",
    run: Run | None = None, accuracy: AccuracyPredictor | None = None, latency: LatencyModel | None = None,
) -> SearchOutcome:
    """Load the space, predictor and latency model `cfg` names, search, and write pareto.json & co.

    A caller that resolved them already (the quickstart) passes `run`, `accuracy` and `latency`: each is loaded
    at most once per command. They must be the ones `cfg` names (`cfg` is what config.yaml records).
    """
    out_dir = check_output_dir(default_out(cfg))  # before minutes of loading and searching
    run_dir = Path(cfg.run) if cfg.run else None
    if run is None and run_dir is not None:
        if not run_dir.is_dir():
            raise ConfigError(f"--run {run_dir}: no such directory")
        from nasforge.train.runs import load_run

        run = load_run(run_dir, device=device)
    if cfg.space is None and run is None:
        raise ConfigError("give --run RUN_DIR (or --space S with --predictor PATH)")
    space = load_space(cfg.space) if cfg.space else run.space  # type: ignore[union-attr]
    constraints = cfg.parsed_constraints()
    used = set(cfg.objectives) | {c.metric for c in constraints}
    if "accuracy" not in used:
        accuracy = None
    elif accuracy is None:
        accuracy = load_accuracy(Path(cfg.predictor) if cfg.predictor else None, run, space)
    if "latency" in used and not cfg.target:
        raise ConfigError("latency is an objective or constraint: give --target NAME")
    if latency is None and cfg.target:
        latency = load_latency(cfg.target, space, cfg.lut)
    measure = None
    if engine_needs(cfg.engine).measurements:
        if run is None:
            raise ConfigError(f"engine {cfg.engine} measures real accuracy: give --run RUN_DIR")
        measure = real_accuracy(run)
    problem = SearchProblem(space, Evaluator(space, accuracy, latency), tuple(cfg.objectives), constraints)
    engine = make_engine(cfg.engine, pop_size=cfg.pop_size, mutation_rate=cfg.mutation_rate, measure=measure)
    result = run_search(problem, engine, budget=cfg.budget, seed=cfg.seed, out_dir=out_dir, storage=cfg.storage,
                        worker=cfg.worker, resume=cfg.resume, on_step=on_step)
    paths = write_outputs(result, out_dir)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if not len(result.front):
        raise SearchError(
            f"no evaluated arch met {', '.join(c.text for c in constraints)} in {len(result.history)} evaluations; "
            f"history is in {paths['history']}"
        )
    return SearchOutcome(result, out_dir, paths)
