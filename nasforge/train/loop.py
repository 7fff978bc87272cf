"""The one training loop: every schedule runs through `train_supernet`.

Per step the strategy names the subnets; for each, the images are resized to its resolution,
the loss (labels and/or KD) is scaled by the task's weight and back-propagated, gradients
accumulate over the step's subnets (and are averaged over ranks), then one SGD step. All
per-step randomness (batch order, crops, flips, sampled subnets) derives from (seed, epoch,
step), so a run resumed from any checkpoint replays the remaining steps exactly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nasforge.arch import ArchConfig
from nasforge.data import DataSplits, epoch_order, load_dataset, steps_per_epoch, train_batch
from nasforge.errors import ConfigError
from nasforge.io import atomic_write_text
from nasforge.space import SearchSpace, load_space
from nasforge.supernet import ElasticSupernet, StaticSubnet, build_supernet, permute_optimizer_state, resize_to
from nasforge.train import checkpoint as ckpt
from nasforge.train.config import TrainConfig, save_config
from nasforge.train.distributed import (
    DistContext,
    average_buffers,
    average_gradients,
    barrier,
    broadcast_module,
    init_distributed,
)
from nasforge.train.evaluate import autocast_for, evaluate_archs
from nasforge.train.schedules import ShrinkStrategy, StepPlan, make_strategy


@dataclass
class TrainResult:
    run_dir: Path
    supernet: ElasticSupernet
    metrics: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False  # False when stopped early by `until_epoch`


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KD loss: cross-entropy to soft targets at temperature T, scaled by T^2 (Hinton et al.)."""
    logp = F.log_softmax(logits.float() / temperature, dim=1)
    return -(target_probs * logp).sum(1).mean() * temperature**2


def load_training_data(cfg: TrainConfig, space: SearchSpace) -> DataSplits:
    d = cfg.data
    return load_dataset(d.dataset, max(space.resolutions), data_dir=d.data_dir, val_fraction=d.val_fraction,
                        split_seed=d.split_seed, train_limit=d.train_limit)


def space_for(cfg: TrainConfig, num_classes: int) -> SearchSpace:
    space = load_space(cfg.space, width_mult=cfg.width_mult)
    return space if space.num_classes == num_classes else space.with_options(num_classes=num_classes)


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


def train_supernet(
    cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, until_epoch: int | None = None,
    progress: bool = True, console: Console | None = None,
) -> TrainResult:
    """Train `cfg`'s supernet into `run_dir` (or continue it with `resume`); see the module docstring.

    `until_epoch` stops after that many epochs in total (a time box; `--resume` continues later).
    Under torchrun every rank calls this; only rank 0 writes files.
    """
    run_dir = Path(run_dir)
    console = console or Console()
    device = resolve_device(cfg.device)
    ctx = init_distributed(device.type)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    ckpt_dir = run_dir / "checkpoints"
    if not resume and ((ckpt_dir / "last.pt").exists() or (run_dir / "supernet.pt").exists()):
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")

    probe = load_space(cfg.space, width_mult=cfg.width_mult)  # fail fast on a bad space before loading data
    data = load_training_data(cfg, probe)
    space = space_for(cfg, data.num_classes)
    data = data.to(device)
    channels_last = cfg.channels_last
    amp = cfg.amp

    torch.manual_seed(cfg.seed)  # weight init and dropout; restored from checkpoints on resume
    net = build_supernet(space).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    broadcast_module(net, ctx)
    o = cfg.optim
    optimizer = torch.optim.SGD(net.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                                weight_decay=o.weight_decay)
    spe = steps_per_epoch(len(data.train), cfg.data.batch_size)
    strategy = make_strategy(cfg, space, spe)
    total = cfg.epochs * spe
    archs = eval_archs_for(strategy, space, cfg)

    start, phase_name, teacher = 0, None, None
    if resume:
        state, _ = ckpt.load_latest(ckpt_dir, device, space.fingerprint)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, phase_name = int(state["iteration"]), str(state["phase"])
        ckpt.set_rng_state(state["rng"])
        if state.get("teacher") is not None:
            teacher = _teacher_shell(space, device)
            teacher.load_state_dict(state["teacher"])
        if ctx.is_main:
            _truncate_metrics(run_dir / "metrics.jsonl", start)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        atomic_write_text(run_dir / "space.yaml", yaml.safe_dump(space.definition, sort_keys=False))

    def payload(iteration: int, lr: float) -> dict[str, Any]:
        return {
            "model": net.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": {"iteration": iteration, "lr": lr, "total": total},
            "phase": phase_name, "epoch": iteration // spe, "step": iteration % spe, "iteration": iteration,
            "rng": ckpt.rng_state(), "teacher": teacher.state_dict() if teacher is not None else None,
            "space_fingerprint": space.fingerprint, "num_classes": space.num_classes,
            "width_mult": space.width_mult, "config": cfg.to_dict(),
        }

    result = TrainResult(run_dir, net)
    bar = _progress_bar(console, enabled=progress and ctx.is_main)
    task_id = bar.add_task("train", total=total, completed=start, loss=float("nan"), acc=float("nan"), ips=0.0,
                           phase=phase_name or "")
    order: torch.Tensor | None = None
    meter = _Meter()
    lr = 0.0
    with bar:
        net.train()
        for it in range(start, total):
            epoch, step = divmod(it, spe)
            if order is None or step == 0:
                order = epoch_order(len(data.train), cfg.seed, epoch)
            plan = strategy.plan(it, np.random.default_rng([cfg.seed, 5, it]))
            if plan.phase.name != phase_name:
                if phase_name is not None and len(strategy.phases) > 1:
                    average_buffers(net, ctx)
                if phase_name is not None and ctx.is_main and len(strategy.phases) > 1:
                    ckpt.save_checkpoint(ckpt_dir, payload(it, lr), name=f"phase-{phase_name}.pt")
                teacher = _enter_phase(plan, net, optimizer, space, teacher)
                phase_name = plan.phase.name
            lr = plan.lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = train_batch(data, order, step, cfg.data.batch_size, seed=cfg.seed, epoch=epoch,
                               pad=cfg.data.pad, flip=cfg.data.flip)
            x, y = ctx.shard(x), ctx.shard(y)
            loss0, acc0 = _step(net, teacher, plan, x, y, cfg, device, amp, channels_last, optimizer, ctx)
            meter.add(loss0, acc0, int(x.shape[0]) * ctx.world_size)
            bar.update(task_id, advance=1, loss=meter.loss, acc=meter.acc, ips=meter.ips, phase=phase_name)
            done = it + 1
            if cfg.checkpoint_every_steps and done % cfg.checkpoint_every_steps == 0 and done % spe:
                average_buffers(net, ctx)
                if ctx.is_main:
                    ckpt.save_checkpoint(ckpt_dir, payload(done, lr))
            if done % spe == 0:
                average_buffers(net, ctx)
                record = {"epoch": epoch + 1, "iteration": done, "phase": phase_name, "lr": lr,
                          "train_loss": meter.loss, "train_acc": meter.acc, "images_per_s": meter.ips,
                          "train_seconds": meter.seconds}
                if ctx.is_main:
                    accs = evaluate_archs(net, data, list(archs.values()), cfg.eval.split,
                                          calib_images=cfg.eval.calib_images,
                                          calib_batch_size=cfg.eval.calib_batch_size, batch_size=cfg.eval.batch_size,
                                          limit=cfg.eval.max_images, amp=amp, channels_last=channels_last)
                    record["eval"] = {k: float(a) for k, a in zip(archs, accs)}
                    ckpt.save_checkpoint(ckpt_dir, payload(done, lr))
                    with open(run_dir / "metrics.jsonl", "a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    if progress:
                        bar.console.print(_epoch_line(record, cfg.epochs), markup=False, highlight=False)
                result.metrics.append(record)
                net.train()
                meter = _Meter()
                barrier(ctx)
                if until_epoch is not None and epoch + 1 >= until_epoch and done < total:
                    return result
    if ctx.is_main:
        if len(strategy.phases) > 1 and phase_name is not None:
            ckpt.save_checkpoint(ckpt_dir, payload(total, lr), name=f"phase-{phase_name}.pt")
        save_supernet(run_dir / "supernet.pt", net, space, cfg)
    barrier(ctx)
    result.finished = True
    return result


def _teacher_shell(space: SearchSpace, device: torch.device) -> StaticSubnet:
    largest = space.largest()
    shell = StaticSubnet(space.layers(largest), largest).to(device).eval().requires_grad_(False)
    return shell.to(memory_format=torch.channels_last)  # as `_enter_phase` makes it


def _enter_phase(plan: StepPlan, net: ElasticSupernet, optimizer: torch.optim.Optimizer, space: SearchSpace,
                 teacher: StaticSubnet | None) -> StaticSubnet | None:
    """The one-off actions a phase asks for when it begins."""
    phase = plan.phase
    if phase.reset_optimizer:
        optimizer.state.clear()
    if phase.reorder_channels:
        permute_optimizer_state(optimizer, net.reorder_channels())
    if phase.freeze_teacher:
        teacher = net.extract(space.largest()).eval().requires_grad_(False)
        teacher = teacher.to(memory_format=torch.channels_last)
    return teacher


def _step(net: ElasticSupernet, teacher: StaticSubnet | None, plan: StepPlan, x: torch.Tensor, y: torch.Tensor,
          cfg: TrainConfig, device: torch.device, amp: bool, channels_last: bool,
          optimizer: torch.optim.Optimizer, ctx: DistContext) -> tuple[float, float]:
    """Accumulate every task's gradients, average over ranks, one optimizer step. Returns task 0's CE and acc."""
    temp = cfg.optim.kd_temperature
    optimizer.zero_grad(set_to_none=True)
    soft: torch.Tensor | None = None
    loss0 = acc0 = float("nan")
    for j, task in enumerate(plan.tasks):
        if task.weight == 0.0:
            continue
        net.set_active(task.arch)
        xi = resize_to(x, task.arch.resolution)
        if channels_last:
            xi = xi.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, amp):
            logits = net(xi)
        ce = F.cross_entropy(logits.float(), y, label_smoothing=cfg.optim.label_smoothing)
        loss = task.label_w * ce if task.label_w else torch.zeros((), device=device)
        if task.kd_w:
            if task.kd_source == "teacher":
                if teacher is None:
                    raise ConfigError("a KD-from-teacher step ran before the teacher was frozen")
                with torch.no_grad(), autocast_for(device, amp):
                    target = F.softmax(teacher(xi).float() / temp, dim=1)
            else:
                if soft is None:
                    raise ConfigError("in-place KD needs the largest subnet as the step's first task")
                target = soft
            loss = loss + task.kd_w * soft_cross_entropy(logits, target, temp)
        (task.weight * loss).backward()
        if j == 0:
            soft = F.softmax(logits.detach().float() / temp, dim=1)
            loss0 = float(ce.detach())
            acc0 = float((logits.detach().argmax(1) == y).float().mean()) * 100.0
    average_gradients(net, ctx)
    optimizer.step()
    return loss0, acc0


def save_supernet(path: Path, net: ElasticSupernet, space: SearchSpace, cfg: TrainConfig) -> None:
    """The final artifact other stages load: weights + the space identity they belong to."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    ckpt_bytes = ckpt.to_bytes({
        "format": ckpt.SUPERNET_FORMAT, "model": state, "space_fingerprint": space.fingerprint,
        "space_name": space.name, "space_source": space.source, "num_classes": space.num_classes,
        "width_mult": space.width_mult, "config": cfg.to_dict(),
    })
    from nasforge.io import atomic_write_bytes

    atomic_write_bytes(path, ckpt_bytes)


def _truncate_metrics(path: Path, iteration: int) -> None:
    """Drop metric lines logged after the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("iteration", 0) <= iteration]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


class _Meter:
    def __init__(self) -> None:
        self.n = 0
        self.loss_sum = self.acc_sum = 0.0
        self.images = 0
        self.t0 = time.perf_counter()

    def add(self, loss: float, acc: float, images: int) -> None:
        self.n += 1
        self.loss_sum += loss
        self.acc_sum += acc
        self.images += images

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.n)

    @property
    def acc(self) -> float:
        return self.acc_sum / max(1, self.n)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def ips(self) -> float:
        return self.images / max(1e-9, self.seconds)


def _progress_bar(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.1f}%  {task.fields[ips]:.0f} img/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not enabled, transient=False,
    )


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
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
    return " ".join(parts)
