"""What happens around training steps, as callbacks of `Trainer`: the metrics log, checkpoints, progress.

A callback subclasses `TrainCallback` and overrides the hooks it needs; each hook gets the trainer
(its `state`, `meter`, `cfg`, `ctx`, ...). The trainer runs the callbacks `TRAIN_CALLBACKS` builds from its
config, in registration order: `MetricsLog`, `TensorBoardLog` (when `logging.tensorboard` names a folder),
then `CheckpointWriter` (last: an epoch's logs are on disk before the checkpoint that covers it, so a kill
between the two never leaves a hole), then the caller's callbacks (the CLI's progress bar).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nasforge.errors import MissingDependencyError
from nasforge.io import atomic_write_text, finite_json
from nasforge.registry import Registry
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
    strategy: Any  # its ShrinkStrategy (`epsilon(iteration)` where the schedule has one)
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


class ConfigCallback(Protocol):
    """A registered callback class: `from_config` builds it for a run, or returns None where the run asks none."""

    @classmethod
    def from_config(cls, cfg: Any) -> TrainCallback | None: ...


TRAIN_CALLBACKS: Registry[type[ConfigCallback]] = Registry("train callback")


def config_callbacks(cfg: Any) -> list[TrainCallback]:
    """The callbacks `cfg` asks for, in registration order (the checkpoint writer last)."""
    made = (TRAIN_CALLBACKS.get(name).from_config(cfg) for name in TRAIN_CALLBACKS.names())
    return [c for c in made if c is not None]


@TRAIN_CALLBACKS.register("metrics")
class MetricsLog(TrainCallback):
    """`metrics.jsonl`: one JSON line per epoch (standard JSON: non-finite numbers are written as null)."""

    @classmethod
    def from_config(cls, cfg: Any) -> MetricsLog:
        return cls()

    def on_train_start(self, trainer: Trainer, *, resume: bool) -> None:
        if resume and trainer.ctx.is_main:
            truncate_metrics(trainer.run_dir / METRICS_FILE, trainer.state.iteration)

    def on_epoch_end(self, trainer: Trainer, *, record: dict[str, Any]) -> None:
        if trainer.ctx.is_main:
            append_line(trainer.run_dir / METRICS_FILE, json.dumps(finite_json(record), allow_nan=False))


@TRAIN_CALLBACKS.register("tensorboard")
class TensorBoardLog(TrainCallback):
    """TensorBoard event files in `logging.tensorboard`: per step the loss, accuracy, LR and ε (delayed schedule);
    per epoch the evaluated subnets' accuracies, images/s and the phase changes.

    The step's loss is read off the meter's device sums without a sync; the host reads them every `flush_every`
    steps, at each checkpoint and at the epoch's end. A resumed run purges what was logged after its checkpoint
    (TensorBoard's `purge_step`), so no step appears twice.
    """

    def __init__(self, log_dir: str | Path, *, flush_every: int = 50) -> None:
        self.log_dir = Path(log_dir)
        self.flush_every = flush_every
        self._writer: Any = None
        self._pending: list[tuple[int, float, Any]] = []
        self._prev: Any = None
        self._phase: str | None = None
        self._epsilon: Any = None

    @classmethod
    def from_config(cls, cfg: Any) -> TensorBoardLog | None:
        if cfg.logging.tensorboard is None:
            return None
        summary_writer_class()  # a missing package fails before any training
        return cls(cfg.logging.tensorboard)

    def on_train_start(self, trainer: Trainer, *, resume: bool) -> None:
        if not trainer.ctx.is_main:
            return
        start = trainer.state.iteration
        self._writer = summary_writer_class()(str(self.log_dir), purge_step=start + 1 if resume else None)
        self._prev = trainer.meter.totals()
        self._phase = trainer.state.phase
        self._epsilon = getattr(trainer.strategy, "epsilon", None)

    def on_step_end(self, trainer: Trainer) -> None:
        if self._writer is None:
            return
        it = trainer.state.iteration
        totals = trainer.meter.totals()
        self._pending.append((it, trainer.state.lr, totals - self._prev))  # on the device: no sync
        self._prev = totals
        if trainer.state.phase != self._phase:
            self._phase = trainer.state.phase
            index = [p.name for p in trainer.strategy.phases].index(self._phase)
            self._writer.add_scalar("train/phase_index", index, it)
            self._writer.add_text("phase", f"phase {self._phase} starts at iteration {it - 1}", it)
        every = trainer.cfg.checkpoint_every_steps
        if len(self._pending) >= self.flush_every or (every and it % every == 0):
            self._flush()

    def on_epoch_end(self, trainer: Trainer, *, record: dict[str, Any]) -> None:
        if self._writer is None:
            return
        self._flush()
        step = int(record["iteration"])
        for name, acc in record.get("eval", {}).items():
            self._writer.add_scalar(f"eval/{name}", acc, step)
        for key in ("train_loss", "train_acc", "images_per_s"):
            self._writer.add_scalar(f"epoch/{key}", record[key], step)
        self._writer.flush()
        self._prev = self._prev * 0  # the trainer resets its meter after this hook

    def on_train_end(self, trainer: Trainer) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None

    def _flush(self) -> None:
        if not self._pending:
            return
        import torch

        deltas = torch.stack([d for _, _, d in self._pending]).cpu().tolist()  # the one host sync
        for (it, lr, _), (loss, correct) in zip(self._pending, deltas):
            self._writer.add_scalar("train/loss", loss, it)
            self._writer.add_scalar("train/acc", correct * 100.0, it)
            self._writer.add_scalar("train/lr", lr, it)
            if self._epsilon is not None:
                self._writer.add_scalar("train/epsilon", self._epsilon(it - 1), it)
        self._pending.clear()
        self._writer.flush()


def summary_writer_class() -> Any:
    """torch's `SummaryWriter`, or one line saying how to install the package it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MissingDependencyError(
            "logging to TensorBoard (--tensorboard / logging.tensorboard) needs the tensorboard package: "
            "pip install 'nasforge[tensorboard]'"
        ) from None
    return SummaryWriter


@TRAIN_CALLBACKS.register("checkpoints")
class CheckpointWriter(TrainCallback):
    """`checkpoints/last.pt` at every epoch end (and every `checkpoint_every_steps`), `phase-NAME.pt` per phase."""

    @classmethod
    def from_config(cls, cfg: Any) -> CheckpointWriter:
        return cls()

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


__all__ = [
    "METRICS_FILE", "TRAIN_CALLBACKS", "CheckpointWriter", "MetricsLog", "TensorBoardLog", "TrainCallback",
    "config_callbacks", "read_metrics", "truncate_metrics",
]
