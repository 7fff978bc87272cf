"""`tpe` and `gp`: optuna's samplers through ask/tell, constraints through `constraints_func`.

The study lives in `--storage` (SQLite in the out dir by default, or a PostgreSQL/MySQL URL), so
several processes (`--worker 0`, `--worker 1`, ...) fill one study until it holds `budget` trials;
a killed search resumes from the trials already stored. Each trial stores its genes (params), its
metrics and its constraint values (user attrs), so any process can rebuild the whole history.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.search.engines.base import ENGINES, EngineContext, EngineOptions, Recorder
from nasforge.search.objectives import COLUMNS


def _storage(url: str, locked: bool = False) -> Any:
    """An RDB storage; SQLite gets WAL and synchronous=NORMAL (one fsync per commit is ~8 ms here,
    and optuna commits every suggested parameter)."""
    import optuna

    if url in ("memory", ":memory:"):
        return None  # optuna's in-memory storage: one process, nothing kept
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
    db = url.split(":///", 1)[-1]
    with _file_lock(None if locked or not db or db == ":memory:" else Path(db + ".lock")):
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # drop the connection made before the listener existed
    return storage


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class OptunaEngine:
    name: str = "tpe"
    batch_size: int = 16

    def _sampler(self, seed: int) -> Any:
        """Constraints reach both samplers through `trial.set_constraint` (optuna 5)."""
        import optuna

        if self.name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True)
        if self.name == "gp":
            return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True)
        raise ConfigError(f"unknown optuna engine {self.name!r}")

    def run(self, recorder: Recorder, ctx: EngineContext) -> dict[str, Any] | None:
        import optuna

        previous = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # optuna logs every trial at INFO
        try:
            return self._run(recorder, ctx)
        finally:
            optuna.logging.set_verbosity(previous)

    def _run(self, recorder: Recorder, ctx: EngineContext) -> dict[str, Any]:
        import optuna
        from optuna.trial import TrialState

        problem = recorder.problem
        space = problem.space
        storage_url = ctx.storage or (f"sqlite:///{(ctx.out_dir / 'study.db').resolve()}" if ctx.out_dir else "memory")
        ctx = replace(ctx, storage=storage_url)
        if ctx.study_name is None:
            raise ConfigError(f"engine {self.name} needs a study name")
        seed = int(np.random.SeedSequence([ctx.seed, ctx.worker]).generate_state(1)[0] % (2**31))
        db = ctx.storage.split(":///", 1)[-1] if ctx.storage.startswith("sqlite") else ""
        lock = Path(db + ".lock") if db and db != ":memory:" else None
        try:
            with _file_lock(lock):
                study = optuna.create_study(
                    study_name=ctx.study_name,
                    storage=_storage(ctx.storage, locked=True),
                    sampler=self._sampler(seed),
                    directions=["minimize"] * problem.n_obj,
                    load_if_exists=True,
                )
        except (ValueError, ImportError, optuna.exceptions.OptunaError) as exc:
            raise ConfigError(f"optuna storage {ctx.storage!r}: {str(exc).splitlines()[0]}") from None
        names = [f"g{i}" for i in range(space.num_genes)]
        seen: set[int] = set()

        def sync() -> None:
            """Record trials finished by other processes (or by an earlier, killed run)."""
            rows, mets = [], []
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                if t.number in seen or "metrics" not in t.user_attrs:
                    continue
                seen.add(t.number)
                rows.append([int(t.params[n]) for n in names])
                mets.append([np.nan if v is None else float(v) for v in t.user_attrs["metrics"]])
            if rows:
                m = np.array(mets, dtype=np.float64)
                recorder.evaluate(np.array(rows), {c: m[:, j] for j, c in enumerate(COLUMNS)}, within_budget=False)
                recorder.end_step()

        sync()
        while True:
            active = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            n = min(self.batch_size, recorder.budget - len(active))
            if n <= 0:
                break
            trials = [study.ask() for _ in range(n)]
            genes = np.array(
                [[t.suggest_int(nm, 0, int(k) - 1) for nm, k in zip(names, space.gene_sizes)] for t in trials]
            )
            ev = recorder.evaluate(genes)
            for i, t in enumerate(trials):
                values = [float(ev.metrics[c][i]) for c in COLUMNS]
                t.set_user_attr("metrics", [None if np.isnan(v) else v for v in values])
                for j, g in enumerate(ev.G[i]):
                    t.set_constraint(f"c{j}", float(g))
                study.tell(t, ev.F[i].tolist())
                seen.add(t.number)
            recorder.end_step()
            sync()
        return {"storage": ctx.storage, "study_name": ctx.study_name}



@ENGINES.register("tpe", summary="optuna's TPE sampler (ask/tell; a shared study across workers)")
def tpe(options: EngineOptions) -> OptunaEngine:
    return OptunaEngine("tpe", batch_size=options.batch_size or 16)


@ENGINES.register("gp", summary="optuna's Gaussian-process sampler (sample-efficient, slower per trial)")
def gp(options: EngineOptions) -> OptunaEngine:
    return OptunaEngine("gp", batch_size=options.batch_size or 16)
