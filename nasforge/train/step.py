"""One training step: every subnet of a plan forward and backward, gradients averaged over ranks, one SGD step.

`TrainStep` is what `Trainer.train_step` runs (and what `scripts/bench_vs_ofa.py` times). Per step it
sets the learning rate, then for each task adapts the batch to the task's resolution gene (images resized,
token sequences cropped or padded: `nasforge.data.inputs`), computes the
loss (labels and/or KD, scaled by the task's weight) and back-propagates; gradients accumulate over
the step's subnets, are averaged over ranks, and the optimizer steps once. Compared with computing
each subnet on its own (Once-for-All's reference step), it does less work for the same losses and
gradients:

- adapted inputs and the frozen teacher's soft targets are computed once per resolution per step;
- inside `net.shared_step()` the elastic ops compute derived weights (OFA's 7->5->3 kernel transformation)
  once per step from the current weights and share them across the step's subnets (their gradients
  are summed and back-propagated through the transformation once, when the step's subnets are done),
  and accumulate sliced weights' gradients into the full `.grad` in place (no zero-filled full-size
  tensor per slice per subnet);
- SGD runs as one foreach (CPU) or fused (CUDA) update, with the learning rate a plain float;
- nothing reads a device value back: loss and accuracy of task 0 are returned as device tensors;
- under torchrun, gradients are all-reduced in flat buckets, each launched as soon as the last subnet's
  backward has finished its parameters (`GradientReducer`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from nasforge.data.inputs import adapt
from nasforge.errors import ConfigError
from nasforge.supernet import ElasticSupernet, StaticSubnet
from nasforge.train.compile import StepCompiler
from nasforge.train.device import autocast_for
from nasforge.train.distributed import DistContext, GradientReducer
from nasforge.train.losses import soft_cross_entropy
from nasforge.train.schedules import StepPlan, SubnetTask

if TYPE_CHECKING:
    from nasforge.train.config import OptimConfig, TrainConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], optim: OptimConfig, device: torch.device
                   ) -> torch.optim.SGD:
    """SGD with (Nesterov) momentum and weight decay, as one multi-tensor update per step.

    fused on CUDA (one kernel for all parameters), foreach on the CPU; either computes exactly what the
    per-parameter loop computes (elementwise arithmetic, same order).
    """
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(
        params,
        lr=optim.lr,
        momentum=optim.momentum,
        nesterov=optim.nesterov and optim.momentum > 0,
        weight_decay=optim.weight_decay,
        **fast,
    )


def restore_fast_update(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """After `load_state_dict` (which takes the saved groups' flags): foreach/fused again, as `make_optimizer`."""
    for group in optimizer.param_groups:
        if device.type == "cuda":
            group["fused"], group["foreach"] = True, False
        else:
            group["fused"], group["foreach"] = False, True


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """A host float in every group: the update kernels take it as a scalar argument, no device copy."""
    for group in optimizer.param_groups:
        group["lr"] = lr


class TrainStep:
    """The training step of one supernet and optimizer; see the module docstring.

    `teacher` (a frozen `StaticSubnet`) is only needed for tasks with `kd_source="teacher"`.
    """

    def __init__(
        self,
        net: ElasticSupernet,
        optimizer: torch.optim.Optimizer,
        cfg: TrainConfig,
        device: torch.device,
        ctx: DistContext | None = None,
    ) -> None:
        self.net, self.optimizer, self.cfg, self.device = net, optimizer, cfg, device
        self.ctx = ctx or DistContext()
        self.reducer = GradientReducer(net, self.ctx)
        self._nan = torch.full((), float("nan"), device=device)
        self.compiler = StepCompiler(cfg.compile, net, device)

    def __call__(self, plan: StepPlan, x: Any, y: torch.Tensor, teacher: StaticSubnet | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Accumulate every task's gradients, average over ranks, one optimizer step.

        Returns task 0's label loss and accuracy as device tensors (no host sync).
        """
        set_lr(self.optimizer, plan.lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.compiler.begin_step()
        live = [j for j, task in enumerate(plan.tasks) if task.weight != 0.0]
        inputs: dict[int, Any] = {}  # the batch adapted to each resolution of the step (`data.inputs.adapt`)
        targets: dict[int, torch.Tensor] = {}  # the teacher's soft targets at each resolution
        soft: torch.Tensor | None = None
        loss0 = acc0 = self._nan
        with self.net.shared_step():  # on exit: the shared derived weights' gradients reach their sources
            for j in live:
                task = plan.tasks[j]
                r = task.arch.resolution
                if r not in inputs:
                    inputs[r] = adapt(x, r, channels_last=self.cfg.channels_last)
                out = self._task(j, task, inputs[r], y, soft, teacher, targets, last=j == live[-1])
                if out is not None:
                    soft, loss0, acc0 = out
        self.reducer.finish()
        self.optimizer.step()
        return loss0, acc0

    def _task(
        self, j: int, task: SubnetTask, xi: Any, y: torch.Tensor, soft: torch.Tensor | None,
        teacher: StaticSubnet | None, targets: dict[int, torch.Tensor], *, last: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """One subnet forward and backward; for task 0 also its soft predictions, label loss and accuracy."""
        cfg = self.cfg
        self.net.set_active(task.arch)
        with self._autocast():
            logits = self.compiler.forward(task.arch, xi)
        # the label loss: trained on with weight label_w, and reported for task 0 whatever its weight
        ce = F.cross_entropy(logits.float(), y, label_smoothing=cfg.optim.label_smoothing) \
            if task.label_w or j == 0 else None
        loss = task.label_w * ce if task.label_w and ce is not None else None
        if task.kd_w:
            target = self._kd_target(task.kd_source, soft, xi, task.arch.resolution, teacher, targets)
            kd = task.kd_w * soft_cross_entropy(logits, target, cfg.optim.kd_temperature)
            loss = kd if loss is None else loss + kd
        if loss is None:
            raise ConfigError(f"task {j} of the step has neither a label nor a KD loss")
        loss = task.weight * loss
        if last:  # gradient buckets can go out while this backward still runs
            self.reducer.arm(loss, self.net.step_context().sources())
        loss.backward()
        if j != 0 or ce is None:
            return None
        detached = logits.detach()
        return (F.softmax(detached.float() / cfg.optim.kd_temperature, dim=1), ce.detach(),
                (detached.argmax(1) == y).float().mean())

    def _autocast(self) -> Any:
        if self.compiler.autocast_cache or not (self.cfg.amp and self.device.type == "cuda"):
            return autocast_for(self.device, self.cfg.amp)
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=False)

    def _kd_target(self, source: str, soft: torch.Tensor | None, xi: Any, r: int, teacher: StaticSubnet | None,
                   targets: dict[int, torch.Tensor]) -> torch.Tensor:
        if source == "teacher":
            if teacher is None:
                raise ConfigError("a KD-from-teacher step ran before the teacher was frozen")
            if r not in targets:
                with torch.no_grad(), self._autocast():
                    logits = self.compiler.teacher(teacher, xi)
                    targets[r] = F.softmax(logits.float() / self.cfg.optim.kd_temperature, dim=1)
            return targets[r]
        if soft is None:
            raise ConfigError("in-place KD needs the largest subnet as the step's first task")
        return soft
