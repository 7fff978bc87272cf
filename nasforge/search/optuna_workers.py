"""Several processes filling one optuna study: who owns each trial, whether its owner still runs, and how
many trials each may ask for. The `tpe`/`gp` engine adapter decides *which* trials; this decides *who*.

Liveness: a worker records which process owns each trial it asks (user attr `worker`) and a heartbeat
in the study (user attr `heartbeat:<worker>`), refreshed from its main loop. A RUNNING trial whose
owner is gone (a dead process on this machine, or no heartbeat for `grace_period` seconds) is failed
and its params are enqueued again, so a killed worker's in-flight trials are retried, never counted.
optuna's own heartbeat is meant for `Study.optimize` (it warns under ask/tell), hence this one.

Budget: a trial is charged unless it is COMPLETE with `duplicate_of` (answered from an earlier trial).
Under the lock file of a SQLite study, counting the charged trials and asking for the rest is one step,
so two workers never both take the last ones. Without a lock (a database server shared across machines)
two workers can count at once and both ask; trial numbers order the asks, so every worker agrees which
trials are the surplus, and their askers fail them (not retried).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_PREFIX = "heartbeat:"


@contextlib.contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive `flock` on `path` (created); no lock at all for None."""
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


def lock_path(storage: str) -> Path | None:
    """The lock file next to a SQLite study (`<db>.lock`); None for other storages, which cannot share one."""
    db = storage.split(":///", 1)[-1] if storage.startswith("sqlite") else ""
    return Path(db + ".lock") if db and db != ":memory:" else None


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
class Worker:
    """Who owns a trial: enough to tell, from another process, whether the owner still runs."""

    id: str
    host: str
    boot: str | None  # kernel boot id: the same machine since the same boot
    pidns: str | None  # pid namespace: pids are comparable only inside one
    pid: int

    @classmethod
    def current(cls) -> Worker:
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


def charged(trial: Any) -> bool:
    """Whether a COMPLETE or RUNNING trial counts against the budget (a told duplicate does not)."""
    return "duplicate_of" not in trial.user_attrs


@dataclass
class Reservation:
    """What one `StudyWorkers.reserve` found: how many trials it kept, and the state of the study then."""

    kept: int
    running: list[Any]  # RUNNING trials of the study (any worker's) before this reservation
    free_used: int  # duplicates told for free so far


class StudyWorkers:
    """This process's part in a study other workers fill too: its heartbeat, and the trials it holds.

    `in_flight` are the trials this worker asked and has not told yet; `abandon` gives them back.
    `clock` (monotonic, for waiting) and `wall` (epoch seconds, for heartbeats) are injectable for tests.
    """

    def __init__(
        self,
        study: Any,
        names: list[str],
        *,
        heartbeat_interval: float = 10.0,
        grace_period: float = 120.0,
        poll_interval: float = 0.5,
        lock: Path | None = None,
        me: Worker | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.study, self.names, self.lock = study, names, lock
        self.me = me or Worker.current()
        self.heartbeat_interval, self.grace_period, self.poll_interval = heartbeat_interval, grace_period, poll_interval
        self.clock, self.wall = clock, wall
        self.in_flight: list[Any] = []
        self._last_beat = -float("inf")
        self._waiting_since: float | None = None

    def beat(self, force: bool = False) -> None:
        """Refresh this worker's heartbeat in the study, at most once per `heartbeat_interval` unless forced."""
        now = self.wall()
        if force or now - self._last_beat >= self.heartbeat_interval:
            self.study.set_user_attr(HEARTBEAT_PREFIX + self.me.id, now)
            self._last_beat = now

    def reserve(self, batch_size: int, budget: int) -> Reservation:
        """Fail stale trials, then ask for up to `batch_size` trials while the study holds fewer than `budget`
        charged ones, under the lock: local workers never fail (and re-enqueue) one trial twice, and two never
        both take the last ones. Reserved trials are RUNNING (others count them) and kept in `in_flight`."""
        from optuna.trial import TrialState

        with file_lock(self.lock):
            self.fail_stale()
            trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            running = [t for t in trials if t.state == TrialState.RUNNING]
            free_used = sum(1 for t in trials if not charged(t))
            for _ in range(min(batch_size, budget - (len(trials) - free_used))):
                trial = self.study.ask()
                self.in_flight.append(trial)
                trial.set_user_attr("worker", self.me.to_dict())
                self.beat()
        kept = self.keep_within_budget(budget)
        if kept > 0:
            self._waiting_since = None
        return Reservation(kept, running, free_used)

    def keep_within_budget(self, budget: int) -> int:
        """Keep the in-flight trials that fall within the budget; fail the rest (not retried).

        The charged trials (COMPLETE and not a duplicate, or RUNNING) ranked past `budget` by number are the
        surplus: every worker computes the same ranking, so exactly one asker drops each surplus trial.
        """
        from optuna.trial import TrialState

        if not self.in_flight:
            return 0
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        allowed = set(sorted(t.number for t in trials if charged(t))[:budget])
        for t in self.in_flight:
            if t.number not in allowed:
                self.fail(t, retry=False)
        self.in_flight[:] = [t for t in self.in_flight if t.number in allowed]
        return len(self.in_flight)

    def wait_for(self, running: list[Any]) -> bool:
        """Whether to wait (one poll, then beat) for other workers' in-flight trials so the history ends complete.

        Never waits with nothing running, and never longer in a row than a stale trial takes to be failed.
        """
        now = self.clock()
        self._waiting_since = now if self._waiting_since is None else self._waiting_since
        if not running or now - self._waiting_since > self.grace_period + 2 * self.heartbeat_interval:
            return False
        time.sleep(self.poll_interval)
        self.beat()
        return True

    def fail_stale(self) -> None:
        """Fail the RUNNING trials whose owner is gone, and enqueue their params to be retried."""
        from optuna.trial import TrialState

        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        beats = {k[len(HEARTBEAT_PREFIX):]: v for k, v in self.study.user_attrs.items()
                 if k.startswith(HEARTBEAT_PREFIX)}
        now = self.wall()
        for t in running:
            owner = t.user_attrs.get("worker")
            owner_id = owner.get("id") if isinstance(owner, dict) else None
            if owner_id == self.me.id:
                continue
            last = beats.get(owner_id) if owner_id else None
            if not isinstance(last, (int, float)):
                start = t.datetime_start
                last = start.timestamp() if start is not None else now
            if self.me.process_gone(owner) or now - float(last) > self.grace_period:
                self.fail(t, retry=True)

    def fail(self, trial: Any, *, retry: bool) -> None:
        """Mark a trial FAIL; the one process that succeeds enqueues its params again (when `retry`)."""
        import optuna
        from optuna.trial import TrialState

        try:
            self.study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            return  # finished or failed by someone else meanwhile
        params = dict(trial.params)
        if retry and all(n in params for n in self.names):
            self.study.enqueue_trial(params, user_attrs={"retry_of": trial.number})

    def tell(self, trial: Any, values: list[float], G: list[float], attrs: dict[str, Any]) -> None:
        """Tell a trial; if another worker failed it meanwhile (a heartbeat too late), add the result anew."""
        import optuna

        try:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            for j, g in enumerate(G):
                trial.set_constraint(f"c{j}", float(g))
            self.study.tell(trial, values)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            frozen = self.study.get_trials(deepcopy=False)[trial.number]
            if not frozen.state.is_finished():
                raise
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=frozen.params, distributions=frozen.distributions, values=values,
                    user_attrs={**frozen.user_attrs, **attrs}, constraints={f"c{j}": float(g) for j, g in enumerate(G)},
                )
            )

    def abandon(self) -> None:
        """An exception left trials in flight: fail them and enqueue their params (best effort)."""
        for t in self.in_flight:
            with contextlib.suppress(Exception):
                self.fail(t, retry=True)
        self.in_flight.clear()


__all__ = ["HEARTBEAT_PREFIX", "Reservation", "StudyWorkers", "Worker", "charged", "file_lock", "lock_path"]
