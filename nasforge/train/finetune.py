"""Fine-tune one extracted subnet, optionally distilling from the supernet's largest subnet.

The subnet starts from its supernet weights with BN recalibrated, trains on the run's training
split with the run's augmentation (its data source) and a cosine LR, and is saved as a standalone
checkpoint (`nasforge.supernet.standalone`) that `export` and `evaluate` accept. Short jobs: no
mid-run resume. Progress goes to an optional `on_step(done, total, loss)` callback.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nasforge.arch import ArchConfig
from nasforge.data.inputs import adapt
from nasforge.errors import ConfigError
from nasforge.supernet.standalone import save_standalone
from nasforge.train.evaluate import accuracy
from nasforge.train.losses import soft_cross_entropy
from nasforge.train.runs import Run, extract_recalibrated

StepCallback = Callable[[int, int, float], None]


@dataclass
class FinetuneResult:
    path: Path
    arch: ArchConfig
    before: dict[str, float]
    after: dict[str, float]


def check_options(*, epochs: int, lr: float | None, batch_size: int | None, seed: int) -> None:
    """One line for each impossible setting (NaN learning rates included), before any work."""
    if isinstance(epochs, bool) or epochs <= 0:
        raise ConfigError(f"--epochs must be a positive integer, got {epochs}")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"--lr must be a positive finite number, got {lr}")
    if batch_size is not None and batch_size <= 0:
        raise ConfigError(f"--batch-size must be a positive integer, got {batch_size}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")


def finetune_subnet(
    run: Run,
    arch: ArchConfig,
    out: str | Path,
    *,
    epochs: int,
    lr: float | None = None,
    kd: bool = False,
    kd_ratio: float = 1.0,
    batch_size: int | None = None,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> FinetuneResult:
    """Train `arch` alone for `epochs` epochs from its supernet weights; save a standalone checkpoint to `out`."""
    check_options(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    cfg, device, data = run.config, run.device, run.data()
    arch = run.space.validate(arch)
    model = extract_recalibrated(run, arch).to(device)
    teacher = extract_recalibrated(run, run.space.largest(arch.resolution)).to(device).eval() if kd else None
    res = arch.resolution
    before = {s: accuracy(model, data, s, res, amp=cfg.amp) for s in ("val", "test")}

    bs = batch_size or cfg.data.batch_size
    spe = data.steps_per_epoch(bs)
    total = epochs * spe
    base_lr = cfg.optim.lr * 0.1 if lr is None else lr  # fine-tuning starts from trained weights
    optimizer = torch.optim.SGD(model.parameters(), lr=base_lr, momentum=cfg.optim.momentum, nesterov=True,
                                weight_decay=cfg.optim.weight_decay)
    model.train()
    it = 0
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # dropout draws; the process's global RNG is restored afterwards
        for epoch in range(epochs):
            for x, y in data.train_batches(epoch, batch_size=bs, seed=seed):
                for group in optimizer.param_groups:
                    group["lr"] = 0.5 * base_lr * (1 + math.cos(math.pi * it / total))
                x = adapt(x, res)
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.optim.label_smoothing)
                if teacher is not None:
                    with torch.no_grad():
                        target = F.softmax(teacher(x).float() / cfg.optim.kd_temperature, dim=1)
                    loss = loss + kd_ratio * soft_cross_entropy(logits, target, cfg.optim.kd_temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                it += 1
                if on_step is not None:
                    on_step(it, total, float(loss))
    model.eval()
    after = {s: accuracy(model, data, s, res, amp=cfg.amp) for s in ("val", "test")}
    extra = {"run": str(run.path), "supernet_sha256": run.checkpoint_sha256, "finetune_epochs": epochs,
             "kd": kd, "lr": base_lr, "before": before, "after": after, "seed": seed}
    out = Path(out)
    save_standalone(out, model.cpu(), run.space, extra)
    return FinetuneResult(out, arch, before, after)
