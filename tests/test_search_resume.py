"""Killed searches resume; several processes share one optuna study on SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nasforge.errors import CheckpointError
from nasforge.search import Evaluator, SearchProblem, make_engine, parse_constraint, run_search
from nasforge.testing import tiny_space
from nasforge.testing.search import SyntheticAccuracy, TableLatency

ROOT = Path(__file__).resolve().parent.parent


def problem(constraints=("latency<=8ms",)):
    space = tiny_space("tiny-mbv3")
    ev = Evaluator(space, SyntheticAccuracy(space), TableLatency(space))
    return SearchProblem(space, ev, ("accuracy", "latency"), tuple(parse_constraint(c) for c in constraints))


class Killed(Exception):
    pass


def _kill_after(step):
    def on_step(s, n, hv):
        if s == step:
            raise Killed

    return on_step


@pytest.mark.parametrize("engine", ["nsga2", "nsga3", "evolution", "random", "linas"])
def test_killed_search_resumes_where_it_stopped(tmp_path, engine):
    space = tiny_space("tiny-mbv3")
    truth = SyntheticAccuracy(space, seed=3)
    kw = {"measure": lambda archs: truth.predict(space.features(list(archs)))} if engine == "linas" else {}
    budget = 60 if engine == "linas" else 800
    full = run_search(problem(), make_engine(engine, **kw), budget=budget, seed=3)
    with pytest.raises(Killed):
        run_search(
            problem(), make_engine(engine, **kw), budget=budget, seed=3, out_dir=tmp_path, on_step=_kill_after(2)
        )
    assert (tmp_path / f"checkpoint-{engine}.npz").exists()
    steps = []
    resumed = run_search(
        problem(),
        make_engine(engine, **kw),
        budget=budget,
        seed=3,
        out_dir=tmp_path,
        on_step=lambda s, n, hv: steps.append(s),
    )
    assert steps[0] == 2  # picks up at the step it was killed in (steps 0 and 1 were saved)
    assert len(resumed.history) == len(full.history)
    assert np.array_equal(resumed.history.genes, full.history.genes)  # same result as uninterrupted
    assert resumed.front_rows() == full.front_rows()
    assert [round(v, 12) for _, _, v in resumed.hv] == [round(v, 12) for _, _, v in full.hv]


def test_checkpoint_of_another_search_is_refused(tmp_path):
    run_search(problem(), make_engine("nsga2"), budget=200, seed=0, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="different search"):
        run_search(problem(("latency<=7ms",)), make_engine("nsga2"), budget=300, seed=0, out_dir=tmp_path)
    # --no-resume starts over
    r = run_search(problem(("latency<=7ms",)), make_engine("nsga2"), budget=300, seed=0, out_dir=tmp_path, resume=False)
    assert len(r.history) == 300


def test_killed_process_resumes(tmp_path):
    """A real SIGKILL mid-search (not an exception): the next process continues from the checkpoint."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, os, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_search_resume import problem
        from nasforge.search import make_engine, run_search
        kill = sys.argv[1] == "kill"
        def on_step(s, n, hv):
            if kill and s == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        first = []
        r = run_search(problem(), make_engine("nsga2"), budget=1000, seed=5, out_dir=Path({str(tmp_path)!r}),
                       on_step=lambda s, n, hv: (first.append(s), on_step(s, n, hv)))
        print(json.dumps({{"first_step": first[0], "n": len(r.history)}}))
    """)
    )
    killed = subprocess.run([sys.executable, str(script), "kill"], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9
    done = subprocess.run([sys.executable, str(script), "resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info == {"first_step": 3, "n": 1000}


def test_two_processes_share_one_sqlite_study(tmp_path):
    db = tmp_path / "study.db"
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_search_resume import problem
        from nasforge.search import make_engine, run_search
        worker = int(sys.argv[1])
        p = problem()
        r = run_search(p, make_engine("tpe", batch_size=4), budget=48, seed=0,
                       storage="sqlite:///{db}", worker=worker)
        print(json.dumps({{"own": p.evaluator.evaluations, "seen": len(r.history), "study": r.meta["study_name"]}}))
    """)
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(w)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for w in (0, 1)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    infos = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert infos[0]["study"] == infos[1]["study"]
    import optuna

    study = optuna.load_study(study_name=infos[0]["study"], storage=f"sqlite:///{db}")
    # A trial that re-proposes an evaluated arch is answered from the earlier trial, free of budget.
    n_trials = sum(1 for t in study.trials if "duplicate_of" not in t.user_attrs)
    assert 48 <= n_trials <= 48 + 4  # one study filled to the budget (a batch may overlap the end)
    assert sum(i["own"] for i in infos) == n_trials  # the work was split, not duplicated
    assert all(i["own"] > 0 for i in infos)
    assert max(i["seen"] for i in infos) == n_trials  # the last to finish sees the other's trials too


def test_optuna_search_resumes_from_its_study(tmp_path):
    p1 = problem()
    first = run_search(p1, make_engine("tpe", batch_size=5), budget=20, seed=0, out_dir=tmp_path)
    assert (tmp_path / "study.db").exists() and len(first.history) == 20
    p2 = problem()
    second = run_search(p2, make_engine("tpe", batch_size=5), budget=35, seed=0, out_dir=tmp_path)
    assert len(second.history) == 35
    assert p2.evaluator.evaluations == 15  # only the missing trials were run
    assert np.array_equal(second.history.genes[:20], first.history.genes)
