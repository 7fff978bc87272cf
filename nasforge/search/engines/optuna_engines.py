"""`tpe` and `gp`: optuna's samplers through ask/tell, constraints through `constraints_func`.

The study lives in `--storage` (SQLite in the out dir by default, or a PostgreSQL/MySQL URL), so
several processes (`--worker 0`, `--worker 1`, ...) fill one study until it holds `budget` trials;
a killed search resumes from the trials already stored. Each trial stores its genes (params), its
metrics and its constraint values (user attrs), so any process can rebuild the whole history.

Liveness: a worker records which process owns each trial it asks (user attr `worker`) and a heartbeat
in the study (user attr `heartbeat:<worker>`), refreshed from its main loop. A RUNNING trial whose
owner is gone (a dead process on this machine, or no heartbeat for `grace_period` seconds) is failed
and its params are enqueued again, so a killed worker's in-flight trials are retried, never counted.
optuna's own heartbeat is meant for `Study.optimize` (it warns under ask/tell), hence this one.

Duplicates: two encodings that are one network (or a re-proposed point) are not evaluated twice.
The later trial is told the earlier trial's values (user attr `duplicate_of`) and is not charged to
the budget, up to `max_free_duplicates` (default: the budget) per study; beyond that a duplicate is
charged like any trial, so a sampler that only re-proposes known points still ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.search.engines.base import ENGINES, EngineContext, EngineOptions, Recorder
from nasforge.search.objectives import COLUMNS

HEARTBEAT_PREFIX = "heartbeat:"


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
    db = url.split(":///", 1)[-1]
    with _file_lock(None if locked or not db or db == ":memory:" else Path(db + ".lock")):
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


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@dataclass(frozen=True)
class _Worker:
    """Who owns a trial: enough to tell, from another process, whether the owner still runs."""

    id: str
    host: str
    boot: str | None  # kernel boot id: the same machine since the same boot
    pidns: str | None  # pid namespace: pids are comparable only inside one
    pid: int

    @classmethod
    def current(cls) -> _Worker:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}/{pid}/{uuid.uuid4().hex[:8]}", host, _read("/proc/sys/kernel/random/boot_id"),
                   _pid_namespace(), pid)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "boot": self.boot, "pidns": self.pidns, "pid": self.pid}

    def process_gone(self, info: Any) -> bool:
        """True when `info` names a process of this very machine and pid namespace that no longer exists."""
        if not isinstance(info, dict) or self.boot is None or self.pidns is None:
            return False
        if (info.get("host"), info.get("boot"), info.get("pidns")) != (self.host, self.boot, self.pidns):
            return False
        pid = info.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return False
        if pid == self.pid:
            return False  # this process (another search in it may be running): only the heartbeat can tell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, owned by someone else
            return False
        return False


@dataclass
class _Known:
    """The first trial that evaluated one canonical arch: what a duplicate of it is told."""

    number: int
    values: list[float]
    metrics: list[float | None]


class _SharedStudy:
    """This worker's view of a study other processes may fill too: its heartbeat, and the trials seen so far."""

    def __init__(self, study: Any, recorder: Recorder, heartbeat_interval: float) -> None:
        self.study, self.recorder = study, recorder
        self.names = [f"g{i}" for i in range(recorder.problem.space.num_genes)]
        self.me = _Worker.current()
        self.heartbeat_interval = heartbeat_interval
        self.known: dict[bytes, _Known] = {}
        self.seen: set[int] = set()
        self._last_beat = -np.inf

    def beat(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_beat >= self.heartbeat_interval:
            self.study.set_user_attr(HEARTBEAT_PREFIX + self.me.id, now)
            self._last_beat = now

    def genes_of(self, trial: Any) -> np.ndarray | None:
        if any(n not in trial.params for n in self.names):
            return None
        return self.recorder.problem.evaluator.canonical(np.array([[int(trial.params[n]) for n in self.names]]))[0]

    def reserve(self, n: int, in_flight: list[Any]) -> None:
        """Ask for `n` trials, RUNNING (so other workers count them) and kept in `in_flight` (so a crash can
        give them back)."""
        for _ in range(n):
            trial = self.study.ask()
            in_flight.append(trial)
            trial.set_user_attr("worker", self.me.to_dict())
            self.beat()

    def suggest(self, in_flight: list[Any]) -> np.ndarray:
        """The genes of the reserved trials."""
        sizes = self.recorder.problem.space.gene_sizes
        genes = np.array([[t.suggest_int(nm, 0, int(k) - 1) for nm, k in zip(self.names, sizes)] for t in in_flight])
        self.beat()
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
            with _file_lock(lock):
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
        from optuna.trial import TrialState

        assert ctx.storage is not None
        db = ctx.storage.split(":///", 1)[-1] if ctx.storage.startswith("sqlite") else ""
        lock = Path(db + ".lock") if db and db != ":memory:" else None
        shared = _SharedStudy(self._open_study(recorder, ctx, lock), recorder, self.heartbeat_interval)
        free_cap = recorder.budget if self.max_free_duplicates is None else int(self.max_free_duplicates)
        in_flight: list[Any] = []
        try:
            shared.beat(force=True)
            shared.sync()
            waiting_since: float | None = None
            while True:
                # Under the lock, local workers never fail (and re-enqueue) one trial twice, and counting the
                # charged trials and asking for the rest is one step: two workers never both take the last ones.
                with _file_lock(lock):
                    self._fail_stale(shared.study, shared.me, shared.names)
                    trials = shared.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                    running = [t for t in trials if t.state == TrialState.RUNNING]
                    free_used = sum(1 for t in trials if "duplicate_of" in t.user_attrs)
                    n = min(self.batch_size, recorder.budget - (len(trials) - free_used))
                    if n > 0:
                        shared.reserve(n, in_flight)
                n = self._within_budget(shared, recorder.budget, in_flight)
                if n <= 0:
                    # Other workers' trials are still in flight: wait for them (or for them to go stale)
                    # so this history ends complete; bounded by the grace period.
                    now = time.monotonic()
                    waiting_since = now if waiting_since is None else waiting_since
                    if not running or now - waiting_since > self.grace_period + 2 * self.heartbeat_interval:
                        break
                    time.sleep(self.poll_interval)
                    shared.beat()
                    shared.sync()
                    continue
                waiting_since = None
                genes = shared.suggest(in_flight)
                self._evaluate_and_tell(shared.study, recorder, in_flight, genes, shared.known,
                                        free_cap - free_used, shared.names)
                shared.seen.update(t.number for t in in_flight)  # recorded already: `sync` must not add them again
                in_flight.clear()
                shared.beat()
                shared.sync()
        except BaseException:
            self._abandon(shared.study, in_flight, shared.names)
            raise

    def _within_budget(self, shared: _SharedStudy, budget: int, in_flight: list[Any]) -> int:
        """Keep the reserved trials that fall within the budget; fail the rest (not retried).

        Without a lock (a database server shared across machines) two workers can count at once and both
        ask. Trial numbers order the asks, so every worker agrees: the charged trials (COMPLETE and not a
        duplicate, or RUNNING) ranked past `budget` by number are the surplus, and their askers drop them.
        """
        from optuna.trial import TrialState

        if not in_flight:
            return 0
        trials = shared.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        charged = sorted(t.number for t in trials if "duplicate_of" not in t.user_attrs)
        allowed = set(charged[:budget])
        surplus = [t for t in in_flight if t.number not in allowed]
        for t in surplus:
            self._fail(shared.study, t, shared.names, retry=False)
        in_flight[:] = [t for t in in_flight if t.number in allowed]
        return len(in_flight)

    def _evaluate_and_tell(
        self,
        study: Any,
        recorder: Recorder,
        trials: list[Any],
        genes: np.ndarray,
        known: dict[bytes, _Known],
        free_left: int,
        names: list[str],
    ) -> None:
        """Evaluate the batch's new archs once; answer duplicates from the first trial that evaluated them."""
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
                self._fail(study, t, names, retry=False)
                continue
            metrics = [None if np.isnan(v) else float(v) for v in (float(ev.metrics[c][j]) for c in COLUMNS)]
            self._tell(study, t, ev.F[j].tolist(), ev.G[j].tolist(), {"metrics": metrics})
            known.setdefault(keys[i], _Known(t.number, ev.F[j].tolist(), metrics))
        for i, key in duplicate.items():
            k = known.get(key)
            if k is None:  # its first trial in this batch fell past the budget
                self._fail(study, trials[i], names, retry=False)
                continue
            m = {c: np.array([np.nan if v is None else v], dtype=np.float64) for c, v in zip(COLUMNS, k.metrics)}
            G = problem.violations(m)[0].tolist()
            self._tell(study, trials[i], k.values, G, {"metrics": k.metrics, "duplicate_of": k.number})
        if fresh:
            recorder.end_step()

    @staticmethod
    def _tell(study: Any, trial: Any, values: list[float], G: list[float], attrs: dict[str, Any]) -> None:
        """Tell a trial; if another worker failed it meanwhile (a heartbeat too late), add the result anew."""
        import optuna

        try:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            for j, g in enumerate(G):
                trial.set_constraint(f"c{j}", float(g))
            study.tell(trial, values)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            frozen = study.get_trials(deepcopy=False)[trial.number]
            if not frozen.state.is_finished():
                raise
            study.add_trial(
                optuna.trial.create_trial(
                    params=frozen.params, distributions=frozen.distributions, values=values,
                    user_attrs={**frozen.user_attrs, **attrs}, constraints={f"c{j}": float(g) for j, g in enumerate(G)},
                )
            )

    def _fail_stale(self, study: Any, me: _Worker, names: list[str]) -> None:
        """Fail the RUNNING trials whose owner is gone, and enqueue their params to be retried."""
        from optuna.trial import TrialState

        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        beats = {k[len(HEARTBEAT_PREFIX):]: v for k, v in study.user_attrs.items() if k.startswith(HEARTBEAT_PREFIX)}
        now = time.time()
        for t in running:
            owner = t.user_attrs.get("worker")
            owner_id = owner.get("id") if isinstance(owner, dict) else None
            if owner_id == me.id:
                continue
            last = beats.get(owner_id) if owner_id else None
            if not isinstance(last, (int, float)):
                start = t.datetime_start
                last = start.timestamp() if start is not None else now
            if me.process_gone(owner) or now - float(last) > self.grace_period:
                self._fail(study, t, names, retry=True)

    @staticmethod
    def _fail(study: Any, trial: Any, names: list[str], *, retry: bool) -> None:
        """Mark a trial FAIL; the one process that succeeds enqueues its params again (when `retry`)."""
        import optuna
        from optuna.trial import TrialState

        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            return  # finished or failed by someone else meanwhile
        params = dict(trial.params)
        if retry and all(n in params for n in names):
            study.enqueue_trial(params, user_attrs={"retry_of": trial.number})

    def _abandon(self, study: Any, trials: list[Any], names: list[str]) -> None:
        """An exception left trials in flight: fail them and enqueue their params (best effort)."""
        for t in trials:
            with contextlib.suppress(Exception):
                self._fail(study, t, names, retry=True)


@ENGINES.register("tpe", summary="optuna's TPE sampler (ask/tell; a shared study across workers)")
def tpe(options: EngineOptions) -> OptunaEngine:
    return OptunaEngine("tpe", batch_size=options.batch_size or 16)


@ENGINES.register("gp", summary="optuna's Gaussian-process sampler (sample-efficient, slower per trial)")
def gp(options: EngineOptions) -> OptunaEngine:
    return OptunaEngine("gp", batch_size=options.batch_size or 16)
