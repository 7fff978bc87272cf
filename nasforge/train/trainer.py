"""The one training loop: every schedule runs through `Trainer.fit`.

Per step the schedule names the subnets; for each, the images are resized to its resolution,
the loss (labels and/or KD) is scaled by the task's weight and back-propagated, gradients
accumulate over the step's subnets (and are averaged over ranks), then one SGD step. All
per-step randomness (batch order, crops, flips, sampled subnets) derives from (seed, epoch,
step), so a run resumed from any checkpoint replays the remaining steps exactly.

The trainer holds its state explicitly (`TrainState`) and reports through callbacks
(`nasforge.train.callbacks`): the metrics log and the checkpoints are callbacks, and so is the
CLI's progress bar; the library draws nothing itself. Loss and accuracy stay on the device
(`StepMeter`) and are read once per epoch, or when a callback asks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nasforge.arch import ArchConfig
from nasforge.data.inputs import batch_size
from nasforge.errors import CheckpointError, ConfigError
from nasforge.io import atomic_write_json, atomic_write_text
from nasforge.space import SearchSpace, load_space
from nasforge.supernet import ElasticSupernet, StaticSubnet, build_supernet, permute_optimizer_state
from nasforge.train import checkpoint as ckpt
from nasforge.train.callbacks import TrainCallback, config_callbacks
from nasforge.train.config import TrainConfig, save_config
from nasforge.train.device import resolve_device
from nasforge.train.distributed import (
    DistContext,
    average_buffers,
    barrier,
    broadcast_module,
    gather_objects,
    init_distributed,
)
from nasforge.train.evaluate import evaluate_archs, metric_of
from nasforge.train.runs import open_training_data, space_for
from nasforge.train.schedules import Phase, ShrinkStrategy, StepPlan, make_strategy
from nasforge.train.step import TrainStep, make_optimizer, restore_fast_update


@dataclass
class TrainState:
    """Everything that changes while training, besides the weights and the optimizer."""

    iteration: int = 0
    phase: str | None = None
    lr: float = 0.0
    teacher: StaticSubnet | None = None


@dataclass
class TrainResult:
    run_dir: Path
    supernet: ElasticSupernet
    metrics: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False  # False when stopped early by `until_epoch`


class StepMeter:
    """Task-0 loss and accuracy summed on the device; `read()` is the only host sync."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self._sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        self.steps = 0
        self.images = 0
        self.skipped = 0  # unreadable images skipped earlier in this epoch, before a resume
        self.t0 = time.perf_counter()

    def state_dict(self, skipped: int = 0) -> dict[str, Any]:
        """The epoch so far, for a mid-epoch checkpoint: a resumed epoch then logs what an uninterrupted one does."""
        return {"sums": self._sums.to("cpu", copy=True), "steps": self.steps, "images": self.images,
                "seconds": time.perf_counter() - self.t0, "skipped": self.skipped + skipped}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._sums = state["sums"].to(self.device, torch.float64)
        self.steps, self.images, self.skipped = int(state["steps"]), int(state["images"]), int(state["skipped"])
        self.t0 = time.perf_counter() - float(state["seconds"])

    def add(self, loss: torch.Tensor, correct_fraction: torch.Tensor, images: int) -> None:
        self._sums += torch.stack([loss.detach().double(), correct_fraction.detach().double()])
        self.steps += 1
        self.images += images

    def totals(self) -> torch.Tensor:
        """The running (loss, accuracy) sums, still on the device (a callback's per-step differences)."""
        return self._sums.clone()

    def read(self) -> dict[str, float]:
        loss, acc = (self._sums / max(1, self.steps)).tolist()
        seconds = time.perf_counter() - self.t0
        return {"loss": loss, "acc": acc * 100.0, "images_per_s": self.images / max(seconds, 1e-9), "seconds": seconds}


def eval_archs_for(strategy: ShrinkStrategy, space: SearchSpace, cfg: TrainConfig) -> dict[str, ArchConfig]:
    """Largest, smallest and a fixed set of random subnets (or the strategy's own list)."""
    own = getattr(strategy, "eval_archs", None)
    if own is not None:
        return dict(own)
    rng = np.random.default_rng([cfg.seed, 77])
    out = {"largest": space.largest(), "smallest": space.smallest()}
    for i, a in enumerate(space.sample_many(rng, cfg.eval.random_subnets)):
        out[f"random{i}"] = a
    return out


class Trainer:
    """Trains `cfg`'s supernet into `run_dir`. Under torchrun every rank builds one; only rank 0 writes."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path,
        *,
        callbacks: Sequence[TrainCallback] = (),
        ctx: DistContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = resolve_device(cfg.device)
        self.ctx = ctx or init_distributed(self.device.type)
        if self.ctx.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.ctx.local_rank)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.callbacks: list[TrainCallback] = [*config_callbacks(cfg), *callbacks]
        self.state = TrainState()
        self.metrics: list[dict[str, Any]] = []
        self._rank_rng: list[dict[str, Any]] | None = None  # every rank's RNG state, while a checkpoint may be written
        self._batches: Any = None  # the running epoch's pass (it counts the images it skipped)

    # ------------------------------------------------------------------ set-up
    def _setup(self, *, init: bool = True) -> None:
        cfg = self.cfg
        probe = load_space(cfg.space, width_mult=cfg.width_mult)  # fail fast on a bad space before loading data
        source = None
        if init and cfg.init:
            from nasforge.train.transfer import read_init

            source = read_init(cfg.init)  # fail fast on a bad --init too
        self.data = open_training_data(cfg, probe, self.device)
        self.space = space_for(cfg, self.data.num_classes)
        self.net = build_supernet(self.space).to(self.device)
        if source is not None:
            from nasforge.train.transfer import init_supernet_

            init_supernet_(self.net, source)  # every weight but the classifier, before the first step
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        broadcast_module(self.net, self.ctx)
        self.optimizer = make_optimizer(self.net.parameters(), cfg.optim, self.device)
        self.stepper = TrainStep(self.net, self.optimizer, cfg, self.device, self.ctx)
        self.steps_per_epoch = self.data.steps_per_epoch(cfg.data.batch_size)
        self.strategy = make_strategy(cfg, self.space, self.steps_per_epoch)
        self.total = cfg.epochs * self.steps_per_epoch
        self.eval_archs = eval_archs_for(self.strategy, self.space, cfg)
        self.meter = StepMeter(self.device)

    def _resume(self) -> None:
        try:
            payload, _ = ckpt.load_latest(self.ckpt_dir, self.device, self.space.fingerprint)
        except ckpt.NoCheckpointError as exc:
            if exc.refused:
                raise
            raise CheckpointError(f"{self.run_dir}: nothing to resume, no checkpoint was saved yet (stopped before "
                                  "its first one); run the same command without --resume to start it") from None
        self.net.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        restore_fast_update(self.optimizer, self.device)  # older checkpoints saved the per-parameter loop
        self.state.iteration, self.state.phase = int(payload["iteration"]), str(payload["phase"])
        self.state.lr = float(payload["scheduler"]["lr"])
        if self.state.iteration % self.steps_per_epoch and payload.get("meter") is not None:
            self.meter.load_state_dict(payload["meter"])  # older checkpoints: the epoch's metrics restart here
        ckpt.set_rng_state(ckpt.rng_for_rank(payload, self.ctx.rank, self.ctx.world_size))
        if payload.get("teacher") is not None:
            largest = self.space.largest()
            teacher = StaticSubnet(self.space.layers(largest), largest, bn_eps=self.space.bn_eps)
            teacher = teacher.to(self.device).eval().requires_grad_(False)
            teacher = teacher.to(memory_format=torch.channels_last)  # as `_enter_phase` makes it
            teacher.load_state_dict(payload["teacher"])
            self.state.teacher = teacher

    def _write_run_files(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / "config.yaml")
        atomic_write_text(self.run_dir / "space.yaml", yaml.safe_dump(self.space.definition, sort_keys=False))
        atomic_write_json(self.run_dir / "data.json", self.data.describe())

    def checkpoint_payload(self) -> dict[str, Any]:
        """What a checkpoint holds (tensors and plain values only: `weights_only=True` loads it)."""
        s = self.state
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"iteration": s.iteration, "lr": s.lr, "total": self.total},
            "phase": s.phase,
            "epoch": s.iteration // self.steps_per_epoch,
            "step": s.iteration % self.steps_per_epoch,
            "iteration": s.iteration,
            "rng": ckpt.rng_state(),
            **({"rng_per_rank": self._rank_rng} if self._rank_rng is not None else {}),
            "teacher": s.teacher.state_dict() if s.teacher is not None else None,
            "meter": self.meter.state_dict(self._skipped()) if s.iteration % self.steps_per_epoch else None,
            "space_fingerprint": self.space.fingerprint,
            "num_classes": self.space.num_classes,
            "width_mult": self.space.width_mult,
            "config": self.cfg.to_dict(),
        }

    # ------------------------------------------------------------------ the loop
    def fit(self, *, resume: bool = False, until_epoch: int | None = None) -> TrainResult:
        """Train to the end of the budget (or `until_epoch` epochs in total, a time box `--resume` continues)."""
        if not resume and ((self.ckpt_dir / "last.pt").exists() or (self.run_dir / "supernet.pt").exists()):
            raise ConfigError(
                f"{self.run_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        with _owned_global_rng(self.cfg.seed, self.device):
            self._setup(init=not resume)
            if resume:
                self._resume()
            if self.ctx.is_main:
                self._write_run_files()
            self._emit("on_train_start", resume=resume)
            finished = self._run_epochs(until_epoch)
            if finished:
                self._finish()
        return TrainResult(self.run_dir, self.net, self.metrics, finished)

    def _run_epochs(self, until_epoch: int | None) -> bool:
        spe = self.steps_per_epoch
        while self.state.iteration < self.total:
            epoch, step = divmod(self.state.iteration, spe)
            batches = self.data.train_batches(
                epoch,
                batch_size=self.cfg.data.batch_size,
                seed=self.cfg.seed,
                rank=self.ctx.rank,
                world_size=self.ctx.world_size,
                start_step=step,
            )
            self.net.train()
            self._batches = batches
            for x, y in batches:
                self._train_one(x, y)
            self._end_epoch(epoch, self._skipped())
            self._batches = None
            if until_epoch is not None and epoch + 1 >= until_epoch and self.state.iteration < self.total:
                return False
        return True

    def _skipped(self) -> int:
        """Unreadable images the epoch's pass has skipped so far (`skip_bad`)."""
        return int(getattr(self._batches, "skipped_count", 0))

    def _train_one(self, x: Any, y: torch.Tensor) -> None:
        it = self.state.iteration
        plan = self.strategy.plan(it, np.random.default_rng([self.cfg.seed, 5, it]))
        if plan.phase.name != self.state.phase:
            self._enter_phase(plan.phase)
        self.state.lr = plan.lr
        loss0, acc0 = self.train_step(plan, x, y)
        self.meter.add(loss0, acc0, batch_size(x) * self.ctx.world_size)
        self.state.iteration += 1
        self._emit("on_step_end")

    def _enter_phase(self, phase: Phase) -> None:
        """Close the running phase (its output checkpoint), then the one-off actions the new phase asks for."""
        previous = next((p for p in self.strategy.phases if p.name == self.state.phase), None)
        if previous is not None and previous.save_output:
            average_buffers(self.net, self.ctx)
            self._emit("on_phase_end", phase=previous)
        if phase.reset_optimizer:
            self.optimizer.state.clear()
        if phase.reorder_channels:
            permute_optimizer_state(self.optimizer, self.net.reorder_channels())
        if phase.freeze_teacher:
            teacher = self.net.extract(self.space.largest()).eval().requires_grad_(False)
            self.state.teacher = teacher.to(memory_format=torch.channels_last)
        self.state.phase = phase.name

    def train_step(self, plan: StepPlan, x: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every task's gradients accumulated, averaged over ranks, one optimizer step at `plan.lr` (`TrainStep`).

        Returns task 0's label loss and accuracy as device tensors (no host sync).
        """
        return self.stepper(plan, x, y, self.state.teacher)

    def _end_epoch(self, epoch: int, skipped: int) -> None:
        average_buffers(self.net, self.ctx)
        m = self.meter.read()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "iteration": self.state.iteration,
            "phase": self.state.phase,
            "lr": self.state.lr,
            "train_loss": m["loss"],
            "train_acc": m["acc"],
            "images_per_s": m["images_per_s"],
            "train_seconds": m["seconds"],
        }
        skipped += self.meter.skipped  # skipped before a mid-epoch resume
        if skipped:
            record["skipped_images"] = skipped
        if self.ctx.is_main:
            record["eval"] = self.evaluate()
            record["eval_metric"] = metric_of(self.data)  # what the eval numbers are (images: top1)
        self.metrics.append(record)
        self._emit("on_epoch_end", record=record)
        self.net.train()
        self.meter.reset()
        barrier(self.ctx)

    def evaluate(self) -> dict[str, float]:
        """The task's metric (top-1 for images) of the fixed evaluation subnets, BN recalibrated for each; training
        state untouched."""
        e = self.cfg.eval
        accs = evaluate_archs(
            self.net,
            self.data,
            list(self.eval_archs.values()),
            e.split,
            calib_images=e.calib_images,
            calib_batch_size=e.calib_batch_size,
            batch_size=e.batch_size,
            limit=e.max_images,
            amp=self.cfg.amp,
            channels_last=self.cfg.channels_last,
        )
        return {k: float(a) for k, a in zip(self.eval_archs, accs)}

    def _finish(self) -> None:
        last = next((p for p in self.strategy.phases if p.name == self.state.phase), None)
        if last is not None and last.save_output:
            self._emit("on_phase_end", phase=last)
        if self.ctx.is_main:
            save_supernet(self.run_dir / "supernet.pt", self.net, self.space, self.cfg)
        barrier(self.ctx)
        self._emit("on_train_end")

    def _emit(self, hook: str, **kwargs: Any) -> None:
        if self.ctx.enabled and self._may_checkpoint(hook):
            # a collective, so every rank's generator state can go into rank 0's checkpoint
            self._rank_rng = gather_objects(ckpt.rng_state(), self.ctx)
        try:
            for callback in self.callbacks:
                getattr(callback, hook)(self, **kwargs)
        finally:
            self._rank_rng = None

    def _may_checkpoint(self, hook: str) -> bool:
        """Whether `CheckpointWriter` may write during `hook` (the same decision on every rank)."""
        if hook == "on_step_end":
            every = self.cfg.checkpoint_every_steps
            return bool(every) and self.state.iteration % every == 0
        return hook in ("on_epoch_end", "on_phase_end")


@contextmanager
def _owned_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Weight init and dropout draw from torch's global RNG: seed it for the run, restore it afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def train_supernet(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    until_epoch: int | None = None,
    callbacks: Sequence[TrainCallback] = (),
) -> TrainResult:
    """Train `cfg`'s supernet into `run_dir` (or continue it with `resume`); see `Trainer`."""
    return Trainer(cfg, run_dir, callbacks=callbacks).fit(resume=resume, until_epoch=until_epoch)


def save_supernet(path: Path, net: ElasticSupernet | Mapping[str, torch.Tensor], space: SearchSpace,
                  cfg: TrainConfig) -> None:
    """The final artifact other stages load: weights (a supernet, or its state dict) + the space they belong to."""
    from nasforge.io import atomic_write_bytes

    source = net.state_dict() if isinstance(net, torch.nn.Module) else net
    state = {k: v.detach().cpu() for k, v in source.items()}
    atomic_write_bytes(
        path,
        ckpt.to_bytes(
            {
                "format": ckpt.SUPERNET_FORMAT,
                "model": state,
                "space_fingerprint": space.fingerprint,
                "space_name": space.name,
                "space_source": space.source,
                "num_classes": space.num_classes,
                "width_mult": space.width_mult,
                "config": cfg.to_dict(),
            }
        ),
    )
