"""What every engine shares: a `Recorder` that evaluates batches, enforces the budget, keeps the
history and the hypervolume per step, and checkpoints. Engines only decide *which* genes next."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from nasforge.errors import CheckpointError
from nasforge.io import atomic_write_bytes
from nasforge.registry import Registry
from nasforge.search.objectives import COLUMNS, Evaluation, SearchProblem
from nasforge.search.pareto import Hypervolume, non_dominated


@dataclass
class History:
    """Every evaluated point in order, with the step (generation/round) that produced it."""

    genes: np.ndarray
    step: np.ndarray
    metrics: dict[str, np.ndarray]
    F: np.ndarray
    G: np.ndarray
    hv: list[tuple[int, int, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.genes)

    @property
    def feasible(self) -> np.ndarray:
        return np.all(self.G <= 0, axis=1) if self.G.shape[1] else np.ones(len(self.F), dtype=bool)

    def front(self) -> np.ndarray:
        """Indices of the feasible non-dominated points (first occurrence of each arch)."""
        feas = np.nonzero(self.feasible)[0]
        if not len(feas):
            return feas
        _, first = np.unique(self.genes[feas], axis=0, return_index=True)
        feas = feas[np.sort(first)]
        return feas[non_dominated(self.F[feas])]


class Recorder:
    """Evaluates batches for an engine under a budget and logs everything the outputs need."""

    def __init__(
        self,
        problem: SearchProblem,
        budget: int,
        hypervolume: Hypervolume,
        on_step: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.problem = problem
        self.budget = int(budget)
        self.hypervolume = hypervolume
        self.on_step = on_step
        self._genes: list[np.ndarray] = []
        self._steps: list[np.ndarray] = []
        self._evals: list[Evaluation] = []
        self._by_evaluator: list[np.ndarray] = []  # per row: metrics computed by the problem's evaluator
        self.hv: list[tuple[int, int, float]] = []
        self._nd = np.zeros((0, problem.n_obj))
        self.count = 0
        self.step = 0

    @property
    def remaining(self) -> int:
        return max(self.budget - self.count, 0)

    def evaluate(
        self, genes: np.ndarray, metrics: dict[str, np.ndarray] | None = None, *, within_budget: bool = True
    ) -> Evaluation:
        """Evaluate (or record given metrics for) a batch; never more than the remaining budget.

        `within_budget=False` records points evaluated elsewhere (another worker of a shared study).
        """
        genes = np.atleast_2d(np.asarray(genes, dtype=np.int64))
        if within_budget:
            genes = genes[: self.remaining]
        if metrics is None:
            ev = self.problem.evaluate(genes)
        else:
            genes = self.problem.evaluator.canonical(genes)
            metrics = {k: np.asarray(v, dtype=np.float64)[: len(genes)] for k, v in metrics.items()}
            ev = Evaluation(genes, metrics, self.problem.to_minimise(metrics), self.problem.violations(metrics))
        self._by_evaluator.append(np.full(len(ev.genes), metrics is None))
        self._genes.append(ev.genes)
        self._steps.append(np.full(len(ev.genes), self.step, dtype=np.int64))
        self._evals.append(ev)
        self.count += len(ev.genes)
        feas = ev.feasible
        if feas.any():
            nd = np.concatenate([self._nd, ev.F[feas]])
            self._nd = nd[non_dominated(nd)]
        return ev

    def end_step(self) -> float:
        """Close a generation/round: log the hypervolume of everything feasible seen so far."""
        value = self.hypervolume(self._nd)
        self.hv.append((self.step, self.count, value))
        if self.on_step is not None:
            self.on_step(self.step, self.count, value)
        self.step += 1
        return value

    def history(self) -> History:
        n_obj, n_con = self.problem.n_obj, self.problem.n_constr
        if not self._evals:
            empty = {c: np.zeros(0) for c in COLUMNS}
            return History(np.zeros((0, self.problem.space.num_genes), np.int64), np.zeros(0, np.int64), empty,
                           np.zeros((0, n_obj)), np.zeros((0, n_con)), list(self.hv))
        return History(
            np.concatenate(self._genes),
            np.concatenate(self._steps),
            {c: np.concatenate([e.metrics[c] for e in self._evals]) for c in COLUMNS},
            np.concatenate([e.F for e in self._evals]),
            np.concatenate([e.G for e in self._evals]),
            list(self.hv),
        )

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: Path, signature: dict[str, Any], extra: dict[str, np.ndarray]) -> None:
        """History genes (+ metrics), hv log and engine state as .npz (no pickle), written atomically."""
        h = self.history()
        buf = io.BytesIO()
        np.savez(
            buf,
            signature=np.array(json.dumps(signature, sort_keys=True)),
            genes=h.genes,
            step=h.step,
            metrics=np.stack([h.metrics[c] for c in COLUMNS], axis=1) if len(h) else np.zeros((0, len(COLUMNS))),
            hv=np.array(self.hv, dtype=np.float64).reshape(-1, 3),
            next_step=np.array(self.step),
            by_evaluator=np.concatenate(self._by_evaluator) if self._by_evaluator else np.zeros(0, dtype=bool),
            **{f"x_{k}": v for k, v in extra.items()},
        )
        atomic_write_bytes(path, buf.getvalue())

    def load(self, path: Path, signature: dict[str, Any]) -> dict[str, np.ndarray] | None:
        """Restore a checkpoint written by `save` for the same problem; None when there is none."""
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                saved_sig = json.loads(str(data["signature"]))
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: unreadable search checkpoint ({exc}); delete it to start over") from None
        if saved_sig != json.loads(json.dumps(signature, sort_keys=True)):
            diff = sorted(k for k in set(saved_sig) | set(signature) if saved_sig.get(k) != signature.get(k))
            raise CheckpointError(
                f"{path}: checkpoint is from a different search ({', '.join(diff)} differ); "
                "use another --out or --no-resume"
            )
        genes, steps, metrics = arrays["genes"], arrays["step"], arrays["metrics"]
        # Checkpoints from before this flag: unknown provenance, so the evaluator's cache is not primed.
        by_evaluator = np.asarray(arrays.get("by_evaluator", np.zeros(0))).astype(bool)
        if by_evaluator.shape != (len(genes),):
            by_evaluator = np.zeros(len(genes), dtype=bool)
        self.step = 0
        for s in np.unique(steps):
            sel = steps == s
            self.step = int(s)
            self.evaluate(genes[sel], {c: metrics[sel, j] for j, c in enumerate(COLUMNS)})
            self._by_evaluator[-1] = by_evaluator[sel]
        self._prime_cache(genes[by_evaluator], metrics[by_evaluator])
        self.hv = [(int(a), int(b), float(c)) for a, b, c in arrays["hv"]]
        self.step = int(arrays["next_step"])
        return {k[2:]: v for k, v in arrays.items() if k.startswith("x_")}

    def _prime_cache(self, genes: np.ndarray, metrics: np.ndarray) -> None:
        """Give the evaluator back what it computed before the checkpoint, bit for bit.

        An uninterrupted search re-reads survivors (and re-proposed archs) from the evaluator's cache;
        a resumed one would recompute them in other batches, and a batched predictor's last bits depend
        on the batch. Only rows the evaluator itself computed are primed (linas records measured accuracy).
        """
        if len(genes):
            self.problem.evaluator.prime(genes, {c: metrics[:, j] for j, c in enumerate(COLUMNS)})


@dataclass(frozen=True)
class EngineContext:
    """What `Engine.run` gets besides the problem: the RNG seed, where to checkpoint, where to keep state."""

    seed: int
    checkpoint: Path | None = None
    signature: dict[str, Any] = field(default_factory=dict)
    storage: str | None = None  # a study storage URL (engines that keep a study); None: the engine's default
    study_name: str | None = None
    worker: int = 0
    out_dir: Path | None = None


class Engine(Protocol):
    """One search strategy over the integer encoding.

    `run` evaluates through the recorder until its budget is spent (or the space is exhausted) and may
    return facts for the search's record (e.g. the study storage it used).
    """

    name: str

    def run(self, recorder: Recorder, ctx: EngineContext) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class EngineOptions:
    """What a user may tune; each engine takes what applies to it."""

    pop_size: int = 100
    mutation_rate: float | None = None
    batch_size: int | None = None
    measure: Callable[..., Any] | None = None  # linas: archs -> measured accuracy


@dataclass(frozen=True)
class EngineNeeds:
    """What an engine needs from the command beyond the problem, declared where it registers (`@needs`).

    The pipeline asks the registered engine (`engine_needs(name)`), never its name, so a new engine that
    measures real accuracy gets a measurement function without any edit to the pipeline.
    measurements: `EngineOptions.measure` (archs -> top-1 measured on a trained run's validation split);
    the command refuses to start without a run to measure on.
    """

    measurements: bool = False


EngineFactory = Callable[[EngineOptions], Engine]
F = TypeVar("F", bound=Callable[..., Any])


def needs(*, measurements: bool = False) -> Callable[[F], F]:
    """Decorator for an engine factory, under its `@ENGINES.register`: `@needs(measurements=True)`."""
    requirements = EngineNeeds(measurements=measurements)

    def mark(factory: F) -> F:
        factory.needs = requirements  # type: ignore[attr-defined]
        return factory

    return mark


ENGINES: Registry[EngineFactory] = Registry(
    "engine",
    modules=(
        "nasforge.search.engines.pymoo_engines",
        "nasforge.search.engines.evolution",
        "nasforge.search.engines.optuna_engines",
        "nasforge.search.engines.random_search",
        "nasforge.search.engines.linas",
    ),
)


def make_engine(name: str, **options: Any) -> Engine:
    """The engine called `name`, built with `EngineOptions(**options)`."""
    return ENGINES.get(name)(EngineOptions(**options))


def engine_needs(name: str) -> EngineNeeds:
    """What the registered engine `name` declares it needs (nothing, for a factory that declares nothing)."""
    declared = getattr(ENGINES.get(name), "needs", None)
    return declared if isinstance(declared, EngineNeeds) else EngineNeeds()


def bounded_feasible(
    propose: Callable[[int], np.ndarray],
    recorder: Recorder,
    n: int,
    max_rounds: int = 50,
) -> tuple[np.ndarray, Evaluation | None]:
    """Keep proposing batches until `n` feasible points are found, at most `max_rounds` batches.

    Returns the feasible genes found (possibly fewer than n when rounds or budget run out).
    """
    found: list[np.ndarray] = []
    total = 0
    last = None
    for _ in range(max_rounds):
        if total >= n or recorder.remaining == 0:
            break
        ev = recorder.evaluate(propose(max(n - total, 1)))
        last = ev
        feas = ev.genes[ev.feasible]
        found.append(feas)
        total += len(feas)
    genes = np.concatenate(found)[:n] if found else np.zeros((0, recorder.problem.space.num_genes), np.int64)
    return genes, last
