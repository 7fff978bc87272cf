"""Fine-tune one extracted subnet, optionally distilling from the supernet's largest subnet.

The subnet starts from its supernet weights with BN recalibrated, trains on the run's training
split with the run's augmentation and a cosine LR, and is saved as a standalone checkpoint
(`nasforge.export.standalone`) that `export` and `evaluate` accept. Short jobs: no mid-run resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nasforge.arch import ArchConfig
from nasforge.data import epoch_order, steps_per_epoch, train_batch
from nasforge.errors import ConfigError
from nasforge.export.pipeline import prepare_from_run
from nasforge.export.standalone import save_standalone
from nasforge.supernet import resize_to
from nasforge.train.evaluate import accuracy
from nasforge.train.loop import soft_cross_entropy


@dataclass
class FinetuneResult:
    path: Path
    arch: ArchConfig
    before: dict[str, float]
    after: dict[str, float]


def finetune_subnet(
    run: Any,
    arch: ArchConfig,
    out: str | Path,
    *,
    epochs: int,
    lr: float | None = None,
    kd: bool = False,
    kd_ratio: float = 1.0,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    console: Console | None = None,
) -> FinetuneResult:
    """Train `arch` alone for `epochs` epochs from its supernet weights; save a standalone checkpoint to `out`."""
    if epochs <= 0:
        raise ConfigError(f"--epochs must be positive, got {epochs}")
    cfg = run.config
    device = run.device
    prepared = prepare_from_run(run, arch)
    arch, space = prepared.arch, prepared.space
    teacher = prepare_from_run(run, space.largest(arch.resolution)).subnet.to(device).eval() if kd else None
    model = prepared.subnet.to(device)
    data = run.data()
    res = arch.resolution
    before = {s: accuracy(model, data, s, res, amp=cfg.amp) for s in ("val", "test")}

    bs = batch_size or cfg.data.batch_size
    spe = steps_per_epoch(len(data.train), bs)
    total = epochs * spe
    base_lr = cfg.optim.lr * 0.1 if lr is None else lr  # fine-tuning starts from trained weights
    optimizer = torch.optim.SGD(model.parameters(), lr=base_lr, momentum=cfg.optim.momentum, nesterov=True,
                                weight_decay=cfg.optim.weight_decay)
    torch.manual_seed(seed)
    bar = Progress(TextColumn("finetune"), BarColumn(), TextColumn("loss {task.fields[loss]:.3f}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console or Console(), disable=not progress)
    with bar:
        task = bar.add_task("finetune", total=total, loss=float("nan"))
        model.train()
        for it in range(total):
            epoch, step = divmod(it, spe)
            if step == 0:
                order = epoch_order(len(data.train), seed, epoch)
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * base_lr * (1 + math.cos(math.pi * it / total))
            x, y = train_batch(data, order, step, bs, seed=seed, epoch=epoch, pad=cfg.data.pad, flip=cfg.data.flip)
            x = resize_to(x, res)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.optim.label_smoothing)
            if teacher is not None:
                with torch.no_grad():
                    target = F.softmax(teacher(x).float() / cfg.optim.kd_temperature, dim=1)
                loss = loss + kd_ratio * soft_cross_entropy(logits, target, cfg.optim.kd_temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(task, advance=1, loss=loss.item())
    model.eval()
    after = {s: accuracy(model, data, s, res, amp=cfg.amp) for s in ("val", "test")}
    extra = {"run": str(run.path), "supernet_sha256": run.checkpoint_sha256, "finetune_epochs": epochs,
             "kd": kd, "lr": base_lr, "before": before, "after": after, "seed": seed}
    out = Path(out)
    save_standalone(out, model.cpu(), space, extra)
    return FinetuneResult(out, arch, before, after)
