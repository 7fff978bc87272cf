"""Faults injected into real processes: SIGKILL during training, torn and missing metric lines.

The measurement-store and optuna-worker faults are in `test_hardening.py`; two optuna workers on one
study in `test_search_resume.py`.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasforge.testing.train import tiny_train_config
from nasforge.train import train_supernet
from nasforge.train.callbacks import METRICS_FILE

torch.set_num_threads(1)

CONFIG = dict(schedule__name="delayed", epochs=3, schedule__shrink_fraction=0.4, schedule__eps_window_epochs=0.5,
              checkpoint_every_steps=2)
WORKER = Path(__file__).with_name("_fault_worker.py")
HOLD_TIMEOUT_S = 300  # generous: only a broken worker gets near it; the kills never depend on it


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "supernet.pt", weights_only=True)["model"]


def _iteration(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["iteration"])


def _epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / METRICS_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "reference"
    train_supernet(tiny_train_config(**CONFIG), run)
    return run


def _start(run: Path, hold: str) -> subprocess.Popen[str]:
    """The worker on `run` (resuming it once it has checkpoints), holding still at `hold`."""
    resume = ["resume"] if (run / "checkpoints").exists() else []
    err = open(run.parent / f"{run.name}-{hold.replace(':', '-')}.err", "w")  # noqa: SIM115 - the child owns it
    with err:
        return subprocess.Popen([sys.executable, str(WORKER), str(run), json.dumps(CONFIG), hold, *resume],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)


def _held(proc: subprocess.Popen[str], hold: str, run: Path) -> None:
    """Wait until the worker reports that it holds at `hold` (it never moves on from there)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], HOLD_TIMEOUT_S)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != f"held {hold}":
        proc.kill()
        proc.wait()
        err = (run.parent / f"{run.name}-{hold.replace(':', '-')}.err").read_text()
        pytest.fail(f"the worker never reached {hold} (said {line!r}, rc {proc.returncode}):\n{err[-3000:]}")


def _sigkill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a worker that is alive right now, and check that the kill is what ended it."""
    assert proc.poll() is None, "the worker ended before the kill"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    for pipe in (proc.stdin, proc.stdout):
        assert pipe is not None
        pipe.close()


@pytest.mark.slow
def test_sigkill_at_observed_moments_resumes_bit_exact(uninterrupted, tmp_path):
    """One run SIGKILLed four times (mid-step, mid-checkpoint-write, between a metrics line and its checkpoint,
    mid-evaluation), resumed after each: the final weights equal an uninterrupted run's exactly, and
    metrics.jsonl has every epoch once. Each kill lands while the worker holds at the named moment."""
    run = tmp_path / "run"
    spe = 8  # 128 images / batch 16; checkpoints every 2 steps and at every epoch end

    proc = _start(run, "step:2")  # the third step's update applied, not yet counted
    _held(proc, "step:2", run)
    assert _iteration(run / "checkpoints" / "last.pt") == 2 and not (run / METRICS_FILE).exists()
    _sigkill(proc)

    proc = _start(run, f"write:{spe}")  # epoch 1's checkpoint: old last.pt moved to prev.pt, new one in a temp file
    _held(proc, f"write:{spe}", run)
    assert not (run / "checkpoints" / "last.pt").exists()
    assert _iteration(run / "checkpoints" / "prev.pt") == spe - 2
    assert len(list((run / "checkpoints").glob(".last.pt.*.tmp"))) == 1
    assert _epochs(run) == [1]
    _sigkill(proc)
    assert list((run / "checkpoints").glob(".last.pt.*.tmp")), "the killed write left its temp file"

    proc = _start(run, "metrics:2")  # resumes from prev.pt; epoch 2's line written, its checkpoint not
    _held(proc, "metrics:2", run)
    assert _epochs(run) == [1, 2]
    assert _iteration(run / "checkpoints" / "last.pt") == 2 * spe - 2
    _sigkill(proc)

    proc = _start(run, "eval:3")  # resumes from iteration 14: epoch 2's line dropped, then logged again
    _held(proc, "eval:3", run)
    assert _epochs(run) == [1, 2]
    assert _iteration(run / "checkpoints" / "last.pt") == 3 * spe - 2
    _sigkill(proc)
    assert not (run / "supernet.pt").exists()

    proc = _start(run, "none")
    assert proc.wait(timeout=HOLD_TIMEOUT_S) == 0, (run.parent / "run-none.err").read_text()[-3000:]
    proc.communicate()
    reference, got = _state(uninterrupted), _state(run)
    assert got.keys() == reference.keys()
    assert [k for k in reference if not torch.equal(got[k], reference[k])] == []
    assert _epochs(run) == [1, 2, 3]  # no hole, no duplicate
    assert not list((run / "checkpoints").glob(".*.tmp")), "a killed write's temp file was never removed"


def test_torn_metrics_line_is_dropped_on_resume(tmp_path):
    cfg = tiny_train_config(**CONFIG)
    run = tmp_path / "run"
    train_supernet(cfg, run, until_epoch=1)
    with open(run / METRICS_FILE, "a") as fh:
        fh.write('{"epoch": 2, "iteration": 16, "train_lo')  # a kill mid-append
    with pytest.warns(UserWarning, match="torn or corrupt"):
        result = train_supernet(cfg, run, resume=True)
    assert result.finished
    records = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]


def test_metrics_line_written_before_its_checkpoint(tmp_path, monkeypatch):
    """A kill between an epoch's metrics line and its checkpoint must not leave a hole in metrics.jsonl."""
    from nasforge.train import checkpoint as ckpt

    cfg = tiny_train_config(**{**CONFIG, "checkpoint_every_steps": 0})
    run = tmp_path / "run"
    real = ckpt.save_checkpoint
    calls = {"n": 0}

    def dies_at_the_second_epoch_checkpoint(directory, payload, name="last.pt"):  # type: ignore[no-untyped-def]
        calls["n"] += name == "last.pt"  # (phase-NAME.pt outputs are written too)
        if name == "last.pt" and calls["n"] == 2:
            raise KeyboardInterrupt  # the process dies right after epoch 2's metrics line
        return real(directory, payload, name)

    monkeypatch.setattr(ckpt, "save_checkpoint", dies_at_the_second_epoch_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_supernet(cfg, run)
    monkeypatch.setattr(ckpt, "save_checkpoint", real)
    assert len((run / METRICS_FILE).read_text().splitlines()) == 2  # written before the checkpoint
    train_supernet(cfg, run, resume=True)
    records = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
