"""What happens around training steps, as callbacks of `Trainer`: the metrics log, checkpoints, progress.

A callback subclasses `TrainCallback` and overrides the hooks it needs; each hook gets the trainer
(its `state`, `meter`, `cfg`, `ctx`, ...). The trainer always runs `MetricsLog` then `CheckpointWriter`
(in that order: an epoch's metrics line is on disk before the checkpoint that covers it, so a kill
between the two never leaves a hole), then the caller's callbacks (the CLI's progress bar).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nasforge.io import atomic_write_text
from nasforge.train import checkpoint as ckpt
from nasforge.train.distributed import average_buffers

if TYPE_CHECKING:
    from nasforge.train.schedules import Phase

METRICS_FILE = "metrics.jsonl"


class Trainer(Protocol):
    """What a callback may read of the `nasforge.train.trainer.Trainer` that calls it."""

    cfg: Any  # the run's TrainConfig
    ctx: Any  # its DistContext (rank, world size)
    state: Any  # its TrainState (iteration, phase, lr, teacher)
    meter: Any  # its StepMeter (loss and accuracy on the device; `read()` syncs)
    net: Any
    run_dir: Path
    ckpt_dir: Path
    steps_per_epoch: int
    total: int

    def checkpoint_payload(self) -> dict[str, Any]: ...


class TrainCallback:
    """No-op hooks; override what you need."""

    def on_train_start(self, trainer: Trainer, *, resume: bool) -> None:
        """After set-up (and after loading the checkpoint when resuming), before the first step."""

    def on_step_end(self, trainer: Trainer) -> None:
        """After each optimizer step (`trainer.state.iteration` counts it); do not sync the device here."""

    def on_epoch_end(self, trainer: Trainer, *, record: dict[str, Any]) -> None:
        """After an epoch's evaluation; `record` is its metrics line."""

    def on_phase_end(self, trainer: Trainer, *, phase: Phase) -> None:
        """When a phase that keeps its output (`Phase.save_output`) ends."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the final supernet is written."""


class MetricsLog(TrainCallback):
    """`metrics.jsonl`: one JSON line per epoch (standard JSON: non-finite numbers are written as null)."""

    def on_train_start(self, trainer: Trainer, *, resume: bool) -> None:
        if resume and trainer.ctx.is_main:
            truncate_metrics(trainer.run_dir / METRICS_FILE, trainer.state.iteration)

    def on_epoch_end(self, trainer: Trainer, *, record: dict[str, Any]) -> None:
        if trainer.ctx.is_main:
            append_line(trainer.run_dir / METRICS_FILE, json.dumps(_finite(record), allow_nan=False))


class CheckpointWriter(TrainCallback):
    """`checkpoints/last.pt` at every epoch end (and every `checkpoint_every_steps`), `phase-NAME.pt` per phase."""

    def on_step_end(self, trainer: Trainer) -> None:
        every = trainer.cfg.checkpoint_every_steps
        done = trainer.state.iteration
        if every and done % every == 0 and done % trainer.steps_per_epoch:
            average_buffers(trainer.net, trainer.ctx)
            if trainer.ctx.is_main:
                ckpt.save_checkpoint(trainer.ckpt_dir, trainer.checkpoint_payload())

    def on_epoch_end(self, trainer: Trainer, *, record: dict[str, Any]) -> None:
        if trainer.ctx.is_main:
            ckpt.save_checkpoint(trainer.ckpt_dir, trainer.checkpoint_payload())

    def on_phase_end(self, trainer: Trainer, *, phase: Phase) -> None:
        if trainer.ctx.is_main:
            ckpt.save_checkpoint(trainer.ckpt_dir, trainer.checkpoint_payload(), name=f"phase-{phase.name}.pt")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def append_line(path: Path, line: str) -> None:
    """Append one line durably (write, flush, fsync); a torn line from a crash is dropped on the next resume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The metric records of a run; a torn or corrupt line (a kill mid-append) is skipped with a warning."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}: line {number} is torn or corrupt (a kill mid-write?); dropped", stacklevel=2)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_metrics(path: Path, iteration: int) -> None:
    """Keep the metric lines up to the checkpoint we resume from (later epochs will be logged again)."""
    if not path.exists():
        return
    keep = [r for r in read_metrics(path) if int(r.get("iteration", 0)) <= iteration]
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in keep))


__all__ = ["METRICS_FILE", "CheckpointWriter", "MetricsLog", "TrainCallback", "read_metrics", "truncate_metrics"]
