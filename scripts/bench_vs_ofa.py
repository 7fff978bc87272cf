"""Images/s of Once-for-All's reference training step and nasforge's, on identical work, alternating in one process.

The work of one step (OFA's progressive shrinking, `train_one_epoch` in
`ofa/imagenet_classification/elastic_nn/training/progressive_shrinking.py`): the full-size KD teacher's
forward, then `--subnets` random subnets of the OFA MobileNetV3 space (`mobilenetv3-ofa`), each
forward + CE (label smoothing 0.1) + KD loss + backward, gradients accumulated, one SGD step. Both sides
start from the same random weights (OFA's net with `nasforge.testing.ofa.randomize_`, mapped with
`nasforge.foreign.ofa.ofa_to_nasforge`), get the same batch at one resolution `--res`, and train the
same subnets: the ones OFA's own seeded sampler draws for that step.

- OFA's row runs OFA's own `train_one_epoch` on a one-batch loader (its tqdm bar silenced; on the CPU
  its `images.cuda()` is made a no-op), so it includes everything OFA does per step: its per-subnet
  accuracy `.item()`s, its teacher in train mode (OFA's code puts it there), its optimizer without
  weight decay on BN and biases (OFA's `no_decay_keys`), fp32 and NCHW tensors (OFA has neither mixed
  precision nor channels_last; `--ofa-channels-last` gives it nasforge's layout, for a stricter row).
- nasforge's row runs `TrainStep`, the step `Trainer.train_step` runs, on the `StepPlan` the progressive
  schedule would make for those subnets (labels + KD from the frozen teacher, kd_ratio 1).
- The sandwich row is nasforge's sandwich step (BigNAS: largest on labels + smallest + 2 random on
  in-place KD, no teacher) at the same resolution and batch; OFA has no such step.

The rows alternate step by step (OFA, nasforge, sandwich, OFA, ...) after `--warmup` rounds, so a
machine's load affects all of them alike; each row reports the median step. The last line is JSON with
`ratio` = nasforge / OFA images/s.

Not to be compared with `scripts/bench_train_step.py`, which measures nasforge alone on the sandwich
step at mixed resolutions (each subnet at its own sampled resolution) with no teacher.

    PYTHONPATH=. python scripts/bench_vs_ofa.py --device cpu --res 128 --batch 16 --steps 6 --threads 2
    PYTHONPATH=. python scripts/bench_vs_ofa.py --device cuda --res 224 --batch 128 --amp
    PYTHONPATH=. python scripts/bench_vs_ofa.py --device cuda --res 32 --batch 512 --amp --compile graphs

Needs the `bench` extra (`pip install -e .[bench]`: OFA's package, which also imports torchvision).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from nasforge.arch import ArchConfig
from nasforge.foreign.ofa import PUBLISHED, arch_from_ofa, ofa_to_nasforge
from nasforge.space import SearchSpace, load_space
from nasforge.supernet import build_supernet
from nasforge.testing.ofa import ofa_supernet, randomize_
from nasforge.train.config import TrainConfig, apply_overrides
from nasforge.train.device import resolve_device
from nasforge.train.schedules import Phase, StepPlan, SubnetTask, make_strategy
from nasforge.train.step import TrainStep, make_optimizer

LR = 0.01


# ------------------------------------------------------------------------------------------ OFA's side
class _OFARunConfig:
    """What OFA's `train_one_epoch` reads of a RunConfig: the loader and the LR schedule."""

    def __init__(self, loader: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.train_loader = loader

    def adjust_learning_rate(self, optimizer: torch.optim.Optimizer, epoch: int, batch: int = 0,
                             nBatch: int | None = None) -> float:  # noqa: N803 (OFA's signature)
        for group in optimizer.param_groups:
            group["lr"] = LR
        return LR


def _ofa_run_manager(net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     loader: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """A stand-in for OFA's RunManager holding exactly what `train_one_epoch` uses (its own metric methods)."""
    from ofa.imagenet_classification.run_manager import RunManager
    from ofa.utils import cross_entropy_with_label_smoothing

    class Manager:
        get_metric_dict = RunManager.get_metric_dict
        update_metric = RunManager.update_metric
        get_metric_vals = RunManager.get_metric_vals

    m = Manager()
    m.network = m.net = net  # type: ignore[attr-defined]
    m.optimizer = optimizer  # type: ignore[attr-defined]
    m.run_config = _OFARunConfig(loader)  # type: ignore[attr-defined]
    m.train_criterion = lambda pred, target: cross_entropy_with_label_smoothing(pred, target, 0.1)  # type: ignore[attr-defined]
    return m


def _ofa_optimizer(net: Any) -> torch.optim.Optimizer:
    """OFA's SGD for progressive shrinking, built as its RunManager builds it: Nesterov momentum 0.9,
    weight decay 3e-5 except on BN and biases (`no_decay_keys="bn#bias"`)."""
    from ofa.utils.pytorch_utils import build_optimizer

    keys = ["bn", "bias"]
    params = [list(net.get_parameters(keys, mode="exclude")), list(net.get_parameters(keys, mode="include"))]
    return build_optimizer(params, "sgd", {"momentum": 0.9, "nesterov": True}, LR, 3e-5, "bn#bias")  # type: ignore[no-any-return]


@contextlib.contextmanager
def _cuda_is_noop(device: torch.device) -> Iterator[None]:
    """OFA's step calls `images.cuda()`; on the CPU let that return the tensor itself."""
    if device.type == "cuda":
        yield
        return
    real = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = real  # type: ignore[method-assign]


def ofa_subnets(ofa_net: Any, step: int, n: int) -> list[dict[str, Any]]:
    """The subnets OFA's `train_one_epoch` samples at `step` (epoch=step, one batch per epoch): its own seeding."""
    out = []
    for j in range(n):
        random.seed(int(f"{step}{j:03d}{0:03d}"))  # OFA: int("%d%.3d%.3d" % (epoch * nBatch + i, _, 0))
        out.append(ofa_net.sample_active_subnet())
    return out


# ------------------------------------------------------------------------------------------ the bench
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def machine(device: torch.device, threads: int) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            cpu = f"{names[0]} ({len(names)} logical CPUs)"
    info = {"device": str(device), "cpu": cpu, "torch": torch.__version__, "threads": threads,
            "python": platform.python_version(), "command": " ".join(shlex.quote(a) for a in sys.argv)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def build(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Both supernets with the same random weights, both teachers, both optimizers, one batch."""
    name = next(n for n, net in PUBLISHED.items() if net.space == "mobilenetv3-ofa" and net.width == args.width)
    space = load_space("mobilenetv3-ofa", width_mult=args.width)
    gen = torch.Generator().manual_seed(args.seed)
    ofa_net = randomize_(ofa_supernet(name), gen)
    state = ofa_to_nasforge(ofa_net.state_dict(), space)
    ofa_net.set_max_net()
    ofa_teacher = ofa_net.get_active_subnet(preserve_weight=True)

    cfg = apply_overrides(TrainConfig(), {
        "space": "mobilenetv3-ofa", "width_mult": args.width, "amp": args.amp, "compile": args.compile,
        "channels_last": True, "optim.lr": LR, "optim.label_smoothing": 0.1, "optim.kd_temperature": 1.0,
        "optim.momentum": 0.9, "optim.nesterov": True, "optim.weight_decay": 3e-5,
        "schedule.name": "sandwich", "schedule.random_subnets": 2, "data.batch_size": args.batch,
    })
    net = build_supernet(space)
    net.load_state_dict(state)
    net = net.to(device).to(memory_format=torch.channels_last)
    teacher = net.extract(space.largest()).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net.parameters(), cfg.optim, device)
    step = TrainStep(net, optimizer, cfg, device)

    sandwich_net = build_supernet(space)
    sandwich_net.load_state_dict(state)
    sandwich_net = sandwich_net.to(device).to(memory_format=torch.channels_last)
    sandwich_opt = make_optimizer(sandwich_net.parameters(), cfg.optim, device)
    sandwich = TrainStep(sandwich_net, sandwich_opt, cfg, device)

    ofa_net, ofa_teacher = ofa_net.to(device), ofa_teacher.to(device)
    x = torch.randn(args.batch, 3, args.res, args.res, generator=gen).to(device)
    y = torch.randint(0, space.num_classes, (args.batch,), generator=gen).to(device)
    ofa_x = x
    if args.ofa_channels_last:  # not what OFA's code does; the stricter comparison
        ofa_net = ofa_net.to(memory_format=torch.channels_last)
        ofa_teacher = ofa_teacher.to(memory_format=torch.channels_last)
        ofa_x = x.contiguous(memory_format=torch.channels_last)
    ofa_manager = _ofa_run_manager(ofa_net, _ofa_optimizer(ofa_net), [(ofa_x, y)])
    ofa_args = SimpleNamespace(kd_ratio=1.0, kd_type="ce", teacher_model=ofa_teacher,
                               dynamic_batch_size=args.subnets)
    return {"space": space, "cfg": cfg, "ofa_net": ofa_net, "ofa_manager": ofa_manager, "ofa_args": ofa_args,
            "step": step, "teacher": teacher, "sandwich": sandwich, "x": x, "y": y}


@torch.no_grad()
def same_weights_gap(b: dict[str, Any], res: int) -> float:
    """Max |logit difference| of OFA's and nasforge's largest subnet on the batch (eval mode): the two sides
    really start from the same network. Both are back in train mode afterwards."""
    ofa_net, net, x = b["ofa_net"], b["step"].net, b["x"]
    ofa_net.set_max_net()
    ofa_net.eval()
    net.eval()
    with net.active(replace(net.space.largest(), resolution=res)):
        gap = float((ofa_net(x) - net(x.contiguous(memory_format=torch.channels_last))).abs().max())
    ofa_net.train()
    net.train()
    return gap


def teacher_plan(space: SearchSpace, archs: list[ArchConfig]) -> StepPlan:
    """What the progressive schedule plans for a KD phase with these subnets (kd_ratio 1, teacher KD)."""
    tasks = tuple(SubnetTask(a, 1.0, label_w=1.0, kd_w=1.0, kd_source="teacher") for a in archs)
    return StepPlan(Phase("bench", 0, 1), LR, tasks)


def at_resolution(plan: StepPlan, res: int) -> StepPlan:
    return replace(plan, lr=LR, tasks=tuple(replace(t, arch=replace(t.arch, resolution=res)) for t in plan.tasks))


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine(device, torch.get_num_threads())
    for k, v in info.items():
        print(f"# {k}: {v}")
    torch.manual_seed(args.seed)
    b = build(args, device)
    space, x, y = b["space"], b["x"], b["y"]
    from ofa.imagenet_classification.elastic_nn.training.progressive_shrinking import train_one_epoch

    gap = same_weights_gap(b, args.res)
    print(f"# same weights: max |logit gap| of the largest subnet, OFA vs nasforge = {gap:.2e}")
    sandwich_strategy = make_strategy(b["cfg"], space, steps_per_epoch=1000)
    times: dict[str, list[float]] = {"ofa": [], "nasforge": [], "sandwich": []}
    for i in range(args.warmup + args.steps):
        settings = ofa_subnets(b["ofa_net"], i, args.subnets)
        archs = [arch_from_ofa({**s, "image_size": args.res}, space) for s in settings]
        plan = teacher_plan(space, archs)
        sandwich_plan = at_resolution(sandwich_strategy.plan(i, np.random.default_rng([args.seed, 5, i])), args.res)

        def ofa_step(step: int = i) -> None:
            with _cuda_is_noop(device), contextlib.redirect_stderr(io.StringIO()):
                train_one_epoch(b["ofa_manager"], b["ofa_args"], step)

        rows = {
            "ofa": ofa_step,
            "nasforge": lambda p=plan: b["step"](p, x, y, b["teacher"]),
            "sandwich": lambda p=sandwich_plan: b["sandwich"](p, x, y),
        }
        for key, fn in rows.items():
            t = _timed(fn, device)
            if i >= args.warmup:
                times[key].append(t)
        if i >= args.warmup:
            print(f"step {i - args.warmup + 1}/{args.steps}: "
                  + "  ".join(f"{k} {args.batch / v[-1]:.2f} img/s" for k, v in times.items()), flush=True)

    amp = args.amp and device.type == "cuda"
    result: dict[str, Any] = {**info, "space": space.name, "width_mult": space.width_mult, "resolution": args.res,
                              "batch": args.batch, "subnets": args.subnets, "amp": args.amp,
                              "ofa_dtype": "fp32", "nasforge_dtype": "bf16 autocast" if amp else "fp32",
                              "ofa_layout": "channels_last" if args.ofa_channels_last else "NCHW (as OFA's code)",
                              "compile": args.compile, "steps": args.steps, "warmup": args.warmup,
                              "same_weights_logit_gap": gap}
    print(f"\n{'row':<36} {'median step s':>14} {'images/s':>10}")
    labels = {"ofa": f"OFA reference (teacher + {args.subnets} subnets)",
              "nasforge": f"nasforge TrainStep (teacher + {args.subnets})",
              "sandwich": "nasforge sandwich (L + S + 2 random)"}
    for key, ts in times.items():
        median = statistics.median(ts)
        result[f"{key}_step_s"] = round(median, 4)
        result[f"{key}_images_per_s"] = round(args.batch / median, 2)
        print(f"{labels[key]:<36} {median:>14.3f} {args.batch / median:>10.2f}")
    result["ratio"] = round(result["nasforge_images_per_s"] / result["ofa_images_per_s"], 3)
    result["sandwich_ratio"] = round(result["sandwich_images_per_s"] / result["ofa_images_per_s"], 3)
    print(json.dumps(result))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--res", type=int, default=128, help="the one input resolution of every subnet")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast for nasforge (CUDA only; OFA runs fp32)")
    ap.add_argument("--compile", default="off", choices=["off", "blocks", "graphs"], help="nasforge's train.compile")
    ap.add_argument("--steps", type=int, default=6, help="timed rounds (each: one step of every row)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--subnets", type=int, default=4, help="subnets per step besides the teacher")
    ap.add_argument("--width", type=float, default=1.0, choices=[1.0, 1.2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ofa-channels-last", action="store_true",
                    help="give OFA's net and batch the channels_last layout nasforge uses (OFA's code runs NCHW)")
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args()
    result = run(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
