"""`nasforge.search.optuna_workers` on its own: heartbeats, stale trials failed and retried, the budget across
workers. Studies are in memory and clocks are injected, so nothing here waits or races."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from nasforge.search.optuna_workers import HEARTBEAT_PREFIX, StudyWorkers, Worker, lock_path  # noqa: E402

NAMES = ["g0", "g1"]


def _worker(name: str, host: str = "elsewhere") -> Worker:
    return Worker(f"{host}/{name}", host, None, None, 1)


def _pool(study, name: str, **kw) -> StudyWorkers:
    return StudyWorkers(study, NAMES, me=_worker(name), **kw)


def _study():
    return optuna.create_study(directions=["minimize"])


def _suggest(trial, a: int = 1, b: int = 2) -> None:
    for name, value in zip(NAMES, (a, b)):
        trial.suggest_int(name, value, value)


def _owned_trial(study, owner: Worker, params=(1, 2)):
    t = study.ask()
    _suggest(t, *params)
    t.set_user_attr("worker", owner.to_dict())
    return t


def _states(study) -> dict[int, TrialState]:
    return {t.number: t.state for t in study.get_trials()}


def test_heartbeat_is_written_at_most_once_per_interval_unless_forced():
    study, now = _study(), [1000.0]
    pool = _pool(study, "a", heartbeat_interval=10.0, wall=lambda: now[0])
    key = HEARTBEAT_PREFIX + pool.me.id
    pool.beat()
    assert study.user_attrs[key] == 1000.0
    now[0] = 1005.0
    pool.beat()
    assert study.user_attrs[key] == 1000.0
    pool.beat(force=True)
    assert study.user_attrs[key] == 1005.0
    now[0] = 1015.0
    pool.beat()
    assert study.user_attrs[key] == 1015.0


def test_stale_trials_are_failed_and_retried_live_silent_and_own_ones_kept():
    study = _study()
    now = time.time()
    dead, live, silent = _worker("dead"), _worker("live"), _worker("silent")
    pool = _pool(study, "me", grace_period=120.0, wall=lambda: now)
    study.set_user_attr(HEARTBEAT_PREFIX + dead.id, now - 1000)
    study.set_user_attr(HEARTBEAT_PREFIX + live.id, now - 1)
    study.set_user_attr(HEARTBEAT_PREFIX + pool.me.id, now - 1000)  # its own trials are never stale to itself
    trials = {w: _owned_trial(study, o, (i, 3 - i)) for i, (w, o) in
              enumerate((("dead", dead), ("live", live), ("silent", silent), ("me", pool.me)))}
    pool.fail_stale()
    states = _states(study)
    assert states[trials["dead"].number] == TrialState.FAIL
    assert [states[trials[w].number] for w in ("live", "silent", "me")] == [TrialState.RUNNING] * 3
    (retry,) = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert retry.user_attrs["retry_of"] == trials["dead"].number
    assert study.get_trials()[trials["dead"].number].params == {"g0": 0, "g1": 3}
    # the silent owner (no heartbeat ever) is judged by its trial's start: stale once that is past the grace
    later = StudyWorkers(study, NAMES, me=_worker("other"), grace_period=120.0, wall=lambda: now + 1000)
    study.set_user_attr(HEARTBEAT_PREFIX + live.id, now + 999)
    later.fail_stale()
    states = _states(study)
    assert states[trials["silent"].number] == TrialState.FAIL and states[trials["live"].number] == TrialState.RUNNING


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_process_on_this_machine_is_gone_at_once_whatever_its_heartbeat():
    me = Worker.current()
    if me.boot is None or me.pidns is None:
        pytest.skip("no /proc boot id or pid namespace here")
    same = {"host": me.host, "boot": me.boot, "pidns": me.pidns}
    assert me.process_gone({**same, "pid": _exited_pid()})
    assert not me.process_gone({**same, "pid": os.getppid()})  # alive
    assert not me.process_gone({**same, "pid": me.pid})  # this process: only its heartbeat can tell
    assert not me.process_gone({**same, "host": "elsewhere", "pid": _exited_pid()})
    assert not me.process_gone({**same, "boot": "another-boot", "pid": _exited_pid()})
    assert not me.process_gone({**same, "pid": "12"}) and not me.process_gone(None)
    # through fail_stale: its trial is failed and retried though its heartbeat is fresh
    study = _study()
    pool = StudyWorkers(study, NAMES, me=me)
    gone = {**same, "id": "gone", "pid": _exited_pid()}
    t = study.ask()
    _suggest(t)
    t.set_user_attr("worker", gone)
    study.set_user_attr(HEARTBEAT_PREFIX + "gone", time.time())
    pool.fail_stale()
    assert _states(study)[t.number] == TrialState.FAIL


def test_reservations_across_workers_never_pass_the_budget_and_told_duplicates_are_free():
    study = _study()
    a, b = _pool(study, "a"), _pool(study, "b")
    got = a.reserve(3, budget=5)
    assert (got.kept, got.running, got.free_used) == (3, [], 0)
    got = b.reserve(3, budget=5)
    assert got.kept == 2 and sorted(t.number for t in got.running) == [0, 1, 2]
    assert [t.number for t in b.in_flight] == [3, 4]
    for i, t in enumerate(a.in_flight):
        _suggest(t, i, i)
        a.tell(t, [0.1 * i], [], {"metrics": [i]} if i < 2 else {"metrics": [0], "duplicate_of": 0})
    a.in_flight.clear()
    got = a.reserve(3, budget=5)  # charged: 2 complete (one is a duplicate) + 2 running of b
    assert (got.kept, got.free_used) == (1, 1) and [t.number for t in a.in_flight] == [5]
    assert a.reserve(3, budget=5).kept == 1  # nothing more asked: the one it holds
    assert len(study.get_trials()) == 6


def test_without_a_lock_the_surplus_of_two_asks_is_failed_by_its_asker_not_retried():
    study = _study()
    a, b = _pool(study, "a"), _pool(study, "b")
    a.reserve(3, budget=100)  # as if both counted before either asked (no lock on a database server)
    b.reserve(3, budget=100)
    assert a.keep_within_budget(4) == 3
    assert b.keep_within_budget(4) == 1 and [t.number for t in b.in_flight] == [3]
    states = _states(study)
    assert [states[n] for n in range(6)] == [TrialState.RUNNING] * 4 + [TrialState.FAIL] * 2
    assert not [t for t in study.get_trials() if t.state == TrialState.WAITING]


def test_a_result_told_after_another_worker_failed_the_trial_is_added_anew():
    study = _study()
    a, b = _pool(study, "a"), _pool(study, "b")
    a.reserve(1, budget=10)
    (t,) = a.in_flight
    _suggest(t, 2, 3)
    b.fail(t, retry=True)  # b judged a stale (its heartbeat came too late)
    a.tell(t, [0.25], [-1.0], {"metrics": [7]})
    trials = study.get_trials()
    assert trials[t.number].state == TrialState.FAIL
    (added,) = [x for x in trials if x.state == TrialState.COMPLETE]
    assert added.values == [0.25] and added.params == {"g0": 2, "g1": 3}
    assert added.user_attrs["metrics"] == [7] and added.user_attrs["worker"]["id"] == a.me.id
    assert added.system_attrs["constraints:c0"] == -1.0  # optuna 5 keeps `set_constraint` values here


def test_abandon_fails_and_requeues_what_is_in_flight():
    study = _study()
    a = _pool(study, "a")
    a.reserve(2, budget=10)
    for i, t in enumerate(a.in_flight):
        _suggest(t, i, 3)
    a.abandon()
    trials = study.get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL] * 2 and a.in_flight == []
    assert sorted(t.user_attrs["retry_of"] for t in trials if t.state == TrialState.WAITING) == [0, 1]


def test_waiting_for_other_workers_is_bounded_and_restarts_after_a_reservation():
    study, now = _study(), [0.0]
    a = _pool(study, "a", grace_period=5.0, heartbeat_interval=1.0, poll_interval=0.0, clock=lambda: now[0])
    assert not a.wait_for([])  # nothing running: never waits
    running = ["someone's trial"]
    assert a.wait_for(running)
    now[0] = 7.0
    assert a.wait_for(running)  # grace + 2 heartbeats
    now[0] = 7.5
    assert not a.wait_for(running)
    assert a.reserve(1, budget=10).kept == 1  # progress: the wait starts over
    now[0] = 100.0
    assert a.wait_for(running)


def test_lock_path_is_next_to_a_sqlite_file_only(tmp_path):
    assert lock_path(f"sqlite:///{tmp_path / 'study.db'}") == Path(f"{tmp_path / 'study.db'}.lock")
    assert lock_path("sqlite:///:memory:") is None
    assert lock_path("postgresql://user@host/db") is None and lock_path("memory") is None
