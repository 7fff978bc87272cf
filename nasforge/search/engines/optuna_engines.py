"""`tpe` and `gp`: optuna's samplers through ask/tell, constraints through `constraints_func`.

The study lives in `--storage` (SQLite in the out dir by default, or a PostgreSQL/MySQL URL), so
several processes (`--worker 0`, `--worker 1`, ...) fill one study until it holds `budget` trials;
a killed search resumes from the trials already stored. Each trial stores its genes (params), its
metrics and its constraint values (user attrs), so any process can rebuild the whole history.

Liveness and the budget across workers (heartbeats, stale trials failed and retried, the reservation
under a lock) live in `nasforge.search.optuna_workers`; this adapter only decides which trials to ask.

Duplicates: two encodings that are one network (or a re-proposed point) are not evaluated twice.
The later trial is told the earlier trial's values (user attr `duplicate_of`) and is not charged to
the budget, up to `max_free_duplicates` (default: the budget) per study; beyond that a duplicate is
charged like any trial, so a sampler that only re-proposes known points still ends.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.search import optuna_workers as workers
from nasforge.search.engines.base import ENGINES, EngineContext, EngineOptions, Recorder
from nasforge.search.objectives import COLUMNS
from nasforge.search.optuna_workers import HEARTBEAT_PREFIX, StudyWorkers

__all__ = ["HEARTBEAT_PREFIX", "OptunaEngine"]  # HEARTBEAT_PREFIX: re-exported for code that imported it here


def _storage(url: str, locked: bool = False) -> Any:
    """An RDB storage; SQLite gets WAL and synchronous=NORMAL (one fsync per commit is ~8 ms here,
    and optuna commits every suggested parameter)."""
    import optuna

    if url in ("memory", ":memory:"):
        return None  # optuna's in-memory storage: one process, nothing kept
    _check_url(url)
    if not url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url)
    from sqlalchemy import event

    def pragmas(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    # Processes opening one fresh database race on creating its tables: serialise that with a lock file.
    with workers.file_lock(None if locked else workers.lock_path(url)):
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # drop the connection made before the listener existed
    return storage


def _check_url(url: str) -> None:
    """A one-line ConfigError for what SQLAlchemy cannot parse or has no driver for."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    hint = "expected 'memory', sqlite:///PATH or a database URL such as postgresql://user@host/db"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"--storage {url!r} is not a database URL; {hint}") from None
    try:
        parsed.get_dialect()
    except ArgumentError:  # NoSuchModuleError: an unknown scheme
        raise ConfigError(f"--storage {url!r}: unknown database kind {parsed.drivername!r}; {hint}") from None
    except ImportError as exc:  # a known database whose driver is not installed
        raise ConfigError(f"--storage {url!r}: database driver missing ({exc})") from None


@dataclass
class _Known:
    """The first trial that evaluated one canonical arch: what a duplicate of it is told."""

    number: int
    values: list[float]
    metrics: list[float | None]


class _SharedStudy:
    """This worker's view of a study other processes may fill too: the trials seen so far, as history."""

    def __init__(self, pool: StudyWorkers, recorder: Recorder) -> None:
        self.workers, self.study, self.recorder = pool, pool.study, recorder
        self.names = pool.names
        self.known: dict[bytes, _Known] = {}
        self.seen: set[int] = set()

    def genes_of(self, trial: Any) -> np.ndarray | None:
        if any(n not in trial.params for n in self.names):
            return None
        return self.recorder.problem.evaluator.canonical(np.array([[int(trial.params[n]) for n in self.names]]))[0]

    def suggest(self) -> np.ndarray:
        """The genes of the reserved trials."""
        sizes = self.recorder.problem.space.gene_sizes
        genes = np.array([[t.suggest_int(nm, 0, int(k) - 1) for nm, k in zip(self.names, sizes)]
                          for t in self.workers.in_flight])
        self.workers.beat()
        return genes

    def sync(self) -> None:
        """Record trials finished by other processes (or by an earlier, killed run)."""
        from optuna.trial import TrialState

        rows, mets = [], []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number in self.seen:
                continue
            self.seen.add(t.number)
            g = self.genes_of(t)
            metrics = t.user_attrs.get("metrics")
            if g is None or not isinstance(metrics, list) or len(metrics) != len(COLUMNS):
                continue
            self.known.setdefault(g.tobytes(), _Known(t.number, list(t.values), list(metrics)))
            if "duplicate_of" in t.user_attrs:
                continue  # answered from an earlier trial: not an evaluation
            rows.append(g)
            mets.append([np.nan if v is None else float(v) for v in metrics])
        if rows:
            m = np.array(mets, dtype=np.float64)
            self.recorder.evaluate(np.array(rows), {c: m[:, j] for j, c in enumerate(COLUMNS)}, within_budget=False)
            self.recorder.end_step()


@dataclass
class OptunaEngine:
    name: str = "tpe"
    batch_size: int = 16
    heartbeat_interval: float = 10.0  # seconds between heartbeats of a worker's main loop
    grace_period: float = 120.0  # a trial whose owner sent no heartbeat for this long is failed and retried
    max_free_duplicates: int | None = None  # duplicates told for free per study; None: the budget
    poll_interval: float = 0.5  # while waiting for other workers' in-flight trials

    def _sampler(self, seed: int) -> Any:
        """Constraints reach both samplers through `trial.set_constraint` (optuna 5)."""
        import optuna

        if self.name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True)
        if self.name == "gp":
            with warnings.catch_warnings():  # `deterministic_objective` is experimental: say nothing per run
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True)
        raise ConfigError(f"unknown optuna engine {self.name!r}")

    def run(self, recorder: Recorder, ctx: EngineContext) -> dict[str, Any] | None:
        import optuna

        # the study lives in --storage; by default in SQLite next to the search's other outputs
        storage = ctx.storage or (f"sqlite:///{(ctx.out_dir / 'study.db').resolve()}" if ctx.out_dir else "memory")
        ctx = replace(ctx, storage=storage)
        if ctx.study_name is None:
            raise ConfigError(f"engine {self.name} needs a study name")
        if ctx.seed < 0 or ctx.worker < 0:
            raise ConfigError(f"--seed and --worker must be non-negative, got {ctx.seed} and {ctx.worker}")
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no INFO line per trial; restored below
        try:
            self._run(recorder, ctx)
        finally:
            optuna.logging.set_verbosity(verbosity)
        return {"storage": ctx.storage, "study_name": ctx.study_name}

    def _open_study(self, recorder: Recorder, ctx: EngineContext, lock: Path | None) -> Any:
        import optuna
        from sqlalchemy.exc import SQLAlchemyError

        assert ctx.storage is not None
        seed = int(np.random.SeedSequence([ctx.seed, ctx.worker]).generate_state(1)[0] % (2**31))
        try:
            with workers.file_lock(lock):
                return optuna.create_study(
                    study_name=ctx.study_name,
                    storage=_storage(ctx.storage, locked=True),
                    sampler=self._sampler(seed),
                    directions=["minimize"] * recorder.problem.n_obj,
                    load_if_exists=True,
                )
        except (ValueError, ImportError, OSError, SQLAlchemyError, optuna.exceptions.OptunaError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"optuna storage {ctx.storage!r}: {text}") from None

    def _run(self, recorder: Recorder, ctx: EngineContext) -> None:
        assert ctx.storage is not None
        lock = workers.lock_path(ctx.storage)
        names = [f"g{i}" for i in range(recorder.problem.space.num_genes)]
        pool = StudyWorkers(self._open_study(recorder, ctx, lock), names, heartbeat_interval=self.heartbeat_interval,
                            grace_period=self.grace_period, poll_interval=self.poll_interval, lock=lock)
        shared = _SharedStudy(pool, recorder)
        free_cap = recorder.budget if self.max_free_duplicates is None else int(self.max_free_duplicates)
        try:
            pool.beat(force=True)
            shared.sync()
            while True:
                got = pool.reserve(self.batch_size, recorder.budget)
                if got.kept <= 0:
                    # Other workers' trials are still in flight: wait for them (or for them to go stale)
                    # so this history ends complete; bounded by the grace period.
                    if not pool.wait_for(got.running):
                        break
                    shared.sync()
                    continue
                genes = shared.suggest()
                self._evaluate_and_tell(shared, genes, free_cap - got.free_used)
                shared.seen.update(t.number for t in pool.in_flight)  # recorded already: `sync` must not add them
                pool.in_flight.clear()
                pool.beat()
                shared.sync()
        except BaseException:
            pool.abandon()
            raise

    def _evaluate_and_tell(self, shared: _SharedStudy, genes: np.ndarray, free_left: int) -> None:
        """Evaluate the batch's new archs once; answer duplicates from the first trial that evaluated them."""
        recorder, pool, known, trials = shared.recorder, shared.workers, shared.known, shared.workers.in_flight
        problem = recorder.problem
        canon = problem.evaluator.canonical(genes)
        keys = [row.tobytes() for row in canon]
        fresh: list[int] = []
        first_in_batch: dict[bytes, int] = {}
        duplicate: dict[int, bytes] = {}
        for i, key in enumerate(keys):
            if free_left > 0 and (key in known or key in first_in_batch):
                duplicate[i] = key
                free_left -= 1
            else:
                first_in_batch.setdefault(key, i)
                fresh.append(i)
        ev = recorder.evaluate(genes[fresh]) if fresh else None
        for j, i in enumerate(fresh):
            t = trials[i]
            if ev is None or j >= len(ev.genes):  # past the budget (another worker filled it): retried later
                pool.fail(t, retry=False)
                continue
            metrics = [None if np.isnan(v) else float(v) for v in (float(ev.metrics[c][j]) for c in COLUMNS)]
            pool.tell(t, ev.F[j].tolist(), ev.G[j].tolist(), {"metrics": metrics})
            known.setdefault(keys[i], _Known(t.number, ev.F[j].tolist(), metrics))
        for i, key in duplicate.items():
            k = known.get(key)
            if k is None:  # its first trial in this batch fell past the budget
                pool.fail(trials[i], retry=False)
                continue
            m = {c: np.array([np.nan if v is None else v], dtype=np.float64) for c, v in zip(COLUMNS, k.metrics)}
            G = problem.violations(m)[0].tolist()
            pool.tell(trials[i], k.values, G, {"metrics": k.metrics, "duplicate_of": k.number})
        if fresh:
            recorder.end_step()


@ENGINES.register("tpe", summary="optuna's TPE sampler (ask/tell; a shared study across workers)")
def tpe(options: EngineOptions) -> OptunaEngine:
    return OptunaEngine("tpe", batch_size=options.batch_size or 16)


@ENGINES.register("gp", summary="optuna's Gaussian-process sampler (sample-efficient, slower per trial)")
def gp(options: EngineOptions) -> OptunaEngine:
    return OptunaEngine("gp", batch_size=options.batch_size or 16)
