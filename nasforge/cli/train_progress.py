"""The training progress bar: a `TrainCallback` that draws with rich (imported only when training runs)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nasforge.train.callbacks import TrainCallback

if TYPE_CHECKING:
    from nasforge.train.trainer import Trainer


class TrainProgress(TrainCallback):
    """A bar over the run's steps (loss, accuracy, images/s read from the device at most every `refresh_s`)
    and one summary line per epoch."""

    def __init__(self, console: Console, *, refresh_s: float = 2.0) -> None:
        self.console = console
        self.refresh_s = refresh_s
        self._progress: Progress | None = None
        self._task: Any = None
        self._last = 0.0

    def on_train_start(self, trainer: Trainer, *, resume: bool) -> None:
        if not trainer.ctx.is_main:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.1f}%  {task.fields[ips]:.0f} img/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=trainer.total, completed=trainer.state.iteration,
                                             loss=float("nan"), acc=float("nan"), ips=0.0,
                                             phase=trainer.state.phase or "")
        self._last = time.perf_counter()

    def on_step_end(self, trainer: Trainer) -> None:
        if self._progress is None:
            return
        fields: dict[str, Any] = {"phase": trainer.state.phase or ""}
        now = time.perf_counter()
        if now - self._last >= self.refresh_s:  # reading the meter syncs the device: not every step
            m = trainer.meter.read()
            fields.update(loss=m["loss"], acc=m["acc"], ips=m["images_per_s"])
            self._last = now
        self._progress.update(self._task, completed=trainer.state.iteration, **fields)

    def on_epoch_end(self, trainer: Trainer, *, record: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, loss=record["train_loss"], acc=record["train_acc"],
                                  ips=record["images_per_s"])
            self._progress.console.print(epoch_line(record, trainer.cfg.epochs), markup=False, highlight=False)

    def on_train_end(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """`epoch 3/12 [full] loss 0.412 acc 88.1% 512 img/s | largest 93.0% smallest 84.2% random 88.0% ...`."""
    ev = record.get("eval", {})
    rnd = [v for k, v in ev.items() if k.startswith("random")]
    parts = [f"epoch {record['epoch']}/{epochs} [{record['phase']}] loss {record['train_loss']:.3f} "
             f"acc {record['train_acc']:.1f}% {record['images_per_s']:.0f} img/s |"]
    for k in ("largest", "smallest"):
        if k in ev:
            parts.append(f"{k} {ev[k]:.1f}%")
    if rnd:
        parts.append(f"random {np.mean(rnd):.1f}% (min {min(rnd):.1f}, max {max(rnd):.1f})")
    for k, v in ev.items():
        if k not in ("largest", "smallest") and not k.startswith("random"):
            parts.append(f"{k} {v:.1f}%")
    if record.get("skipped_images"):
        parts.append(f"({record['skipped_images']} unreadable images skipped)")
    return " ".join(parts)
