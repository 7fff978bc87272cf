"""Images/s of one supernet training step: largest on labels + smallest + 2 random on in-place KD (BigNAS
sandwich, 4 subnets), gradients accumulated, one SGD step; random data, so only compute is measured.

The issue's reference setting is `mobilenetv3-ofa`, batch 128, 224 px, fp32 and bf16:

    PYTHONPATH=. python scripts/bench_train_step.py --space mobilenetv3-ofa --batch 128 --device cuda
    PYTHONPATH=. python scripts/bench_train_step.py --space mobilenetv3-ofa --batch 16 --steps 3 --device cpu

It runs the trainer's own step (`nasforge.train.step.TrainStep`, what `Trainer.train_step` runs) on the
subnets the sandwich strategy plans: each at its own sampled resolution (the batch resized to it), no
teacher. For nasforge against Once-for-All's reference code on identical work (teacher + 4 subnets at one
resolution), see `scripts/bench_vs_ofa.py`; the two measure different work, so compare neither to the other.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from nasforge.space import load_space
from nasforge.supernet import build_supernet
from nasforge.testing import TINY_SPACES_DIR, tiny_space
from nasforge.train.config import TrainConfig, apply_overrides, validate
from nasforge.train.device import resolve_device
from nasforge.train.schedules import make_strategy
from nasforge.train.step import TrainStep, make_optimizer


def measure(space_name: str, batch: int, steps: int, warmup: int, device: torch.device, amp: bool,
            channels_last: bool, compile_mode: str = "off") -> dict:
    tiny = space_name.startswith("tiny")
    space = tiny_space(space_name) if tiny else load_space(space_name)
    cfg = validate(apply_overrides(TrainConfig(), {
        "space": str(TINY_SPACES_DIR / f"{space_name}.yaml") if tiny else space_name,
        "schedule.name": "sandwich", "schedule.random_subnets": 2, "data.batch_size": batch,
        "amp": amp, "channels_last": channels_last, "compile": compile_mode, "optim.lr": 0.01}))
    torch.manual_seed(0)
    net = build_supernet(space).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    step = TrainStep(net, make_optimizer(net.parameters(), cfg.optim, device), cfg, device)
    strategy = make_strategy(cfg, space, steps_per_epoch=1000)
    res = max(space.resolutions)
    x = torch.randn(batch, 3, res, res, device=device)
    y = torch.randint(0, space.num_classes, (batch,), device=device)
    times = []
    for it in range(warmup + steps):
        plan = strategy.plan(it, np.random.default_rng([0, it]))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(plan, x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if it >= warmup:
            times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    return {"space": space.name, "batch": batch, "resolution": res, "subnets_per_step": len(plan.tasks),
            "device": str(device), "dtype": "bf16" if amp and device.type == "cuda" else "fp32",
            "channels_last": channels_last, "compile": compile_mode, "step_s": round(step_s, 4),
            "images_per_s": round(batch / step_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mobilenetv3-ofa")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", default="off", choices=["off", "blocks", "graphs"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    rows = []
    # bf16 autocast applies on CUDA only (the trainer's rule); on CPU both rows would be fp32.
    for amp in (False, True) if device.type == "cuda" else (False,):
        rows.append(measure(args.space, args.batch, args.steps, args.warmup, device, amp, channels_last=True,
                            compile_mode=args.compile))
        print(json.dumps(rows[-1]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
