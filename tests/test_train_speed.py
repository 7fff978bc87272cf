"""The fast training step computes what the plain eager step computes, makes no host sync, and resumes exactly.

The reference (`plain_step`) is the step as nasforge ran it before issue #16, which is how Once-for-All's
reference code runs each subnet: every subnet sliced and transformed on its own by plain autograd, the
teacher run for every KD task, a per-parameter SGD loop. `TrainStep` shares the kernel transformation
across a step's subnets, adds sliced gradients into `.grad` in place, runs the teacher once per
resolution, and updates with foreach SGD; each must leave losses, gradients and weights unchanged.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _torchrun import run_two_ranks  # tests/_torchrun.py (pytest puts tests/ on sys.path)

from nasforge.space import load_space
from nasforge.supernet import build_supernet, resize_to
from nasforge.testing import TINY_SPACES_DIR, tiny_space
from nasforge.testing.train import tiny_train_config
from nasforge.train.compile import StepCompiler
from nasforge.train.losses import soft_cross_entropy
from nasforge.train.schedules import Phase, StepPlan, SubnetTask
from nasforge.train.schedules.base import kd_tasks
from nasforge.train.step import TrainStep, make_optimizer

torch.set_num_threads(1)
TOL = 1e-5


def plain_step(net, optimizer, cfg, plan, x, y, teacher=None):
    """The reference: nasforge's step before #16, line for line (plain autograd, teacher per task)."""
    temp = cfg.optim.kd_temperature
    for group in optimizer.param_groups:
        group["lr"] = plan.lr
    optimizer.zero_grad(set_to_none=True)
    soft = None
    loss0 = acc0 = torch.full((), float("nan"), device=x.device)
    for j, task in enumerate(plan.tasks):
        if task.weight == 0.0:
            continue
        net.set_active(task.arch)
        xi = resize_to(x, task.arch.resolution)
        if cfg.channels_last:
            xi = xi.contiguous(memory_format=torch.channels_last)
        logits = net(xi)
        ce = F.cross_entropy(logits.float(), y, label_smoothing=cfg.optim.label_smoothing)
        loss = task.label_w * ce if task.label_w else torch.zeros((), device=x.device)
        if task.kd_w:
            if task.kd_source == "teacher":
                with torch.no_grad():
                    target = F.softmax(teacher(xi).float() / temp, dim=1)
            else:
                target = soft
            loss = loss + task.kd_w * soft_cross_entropy(logits, target, temp)
        (task.weight * loss).backward()
        if j == 0:
            soft = F.softmax(logits.detach().float() / temp, dim=1)
            loss0 = ce.detach()
            acc0 = (logits.detach().argmax(1) == y).float().mean()
    optimizer.step()
    return loss0, acc0


MICRO_SPACE = """
name: micro-mbv3
family: mobilenetv3
description: one elastic stage with two block signatures (kernel 3 and 5), cheap to compile
num_classes: 4
resolutions: [8, 12]
width_mult: [1.0]
stem: {channels: 8, stride: 1, act: hswish}
first_block: {channels: 8, stride: 1, act: relu}
defaults: {depths: [1, 2], kernel_sizes: [3, 5], expand_ratios: [2, 3]}
stages:
  - {channels: 8, stride: 1, act: hswish, se: true}
head: {final_expand: 16, feature_mix: 16, act: hswish}
"""


def _setup(compile_mode="off", seed=0, batch=8, space_path=None, backend="inductor", device="cpu"):
    space_path = space_path or TINY_SPACES_DIR / "tiny-mbv3.yaml"
    cfg = tiny_train_config(compile=compile_mode, optim__label_smoothing=0.1, optim__weight_decay=1e-3,
                            optim__lr=0.1, space=str(space_path), device=device, amp=False)
    space = load_space(space_path)
    device = torch.device(device)
    torch.manual_seed(seed)
    net = build_supernet(space).to(device).to(memory_format=torch.channels_last)
    with torch.no_grad():  # transforms away from identity, so a wrong transformation shows
        for name, p in net.named_parameters():
            if "kernel_transforms" in name:
                p.add_(0.1 * torch.randn_like(p))
    teacher = copy.deepcopy(net).extract(space.largest()).eval().requires_grad_(False)
    teacher = teacher.to(memory_format=torch.channels_last)
    ref = copy.deepcopy(net)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                              nesterov=cfg.optim.nesterov, weight_decay=cfg.optim.weight_decay, foreach=False)
    step = TrainStep(net, make_optimizer(net.parameters(), cfg.optim, device), cfg, device)
    if compile_mode != "off":
        step.compiler = StepCompiler(compile_mode, net, device, backend=backend)
    gen = torch.Generator().manual_seed(seed + 1)
    r = max(space.resolutions)
    x = torch.randn(batch, 3, r, r, generator=gen).to(device)
    y = torch.randint(0, space.num_classes, (batch,), generator=gen).to(device)
    return cfg, space, step, ref, ref_opt, teacher, x, y


def _plans(space):
    rng = np.random.default_rng(3)
    largest, smallest = space.largest(), space.smallest()
    randoms = space.sample_many(rng, 3)
    phase = Phase("p", 0, 10)
    teacher_tasks = tuple(SubnetTask(a, 1.0, label_w=1.0, kd_w=1.0, kd_source="teacher")
                          for a in (largest, smallest, *randoms, replace(randoms[0], resolution=smallest.resolution)))
    return {
        "largest": StepPlan(phase, 0.1, (SubnetTask(largest),)),
        "smallest": StepPlan(phase, 0.1, (SubnetTask(smallest),)),
        "random": StepPlan(phase, 0.1, (SubnetTask(randoms[1]),)),
        "sandwich": StepPlan(phase, 0.1, (SubnetTask(largest), *kd_tasks([smallest, *randoms[:2]], 1.0))),
        "teacher-kd": StepPlan(phase, 0.05, teacher_tasks),
    }


def _assert_same(step, ref, got, want, tol=TOL):
    for a, b in zip(got, want):
        assert float((a - b).abs()) <= tol
    net = step.net
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert float((p.grad - q.grad).abs().max()) <= tol, name
        assert float((p.detach() - q.detach()).abs().max()) <= tol, name
    for (name, b), c in zip(net.named_buffers(), ref.buffers()):
        assert float((b.double() - c.double()).abs().max()) <= tol, name


@pytest.mark.parametrize("family", ["tiny-mbv3", "tiny-resnet"])
@pytest.mark.parametrize("plan_name", ["largest", "smallest", "random", "sandwich", "teacher-kd"])
def test_step_equals_plain_eager_step(plan_name, family):
    """Two steps (the second with momentum): same losses, gradients, updated weights and BN statistics.

    Each step starts both from the same state: a tiny net at a high LR is chaotic, so a 1e-7 rounding
    difference in one step (the CPU depthwise weight gradient sums in another order) would grow to 1e-4
    two steps later, in the reference itself just the same.
    """
    cfg, space, step, ref, ref_opt, teacher, x, y = _setup(space_path=TINY_SPACES_DIR / f"{family}.yaml")
    plan = _plans(space)[plan_name]
    for _ in range(2):
        _sync_reference(step, ref, ref_opt)
        got = step(plan, x, y, teacher)
        want = plain_step(ref, ref_opt, cfg, plan, x, y, teacher)
        _assert_same(step, ref, got, want)


@torch.no_grad()
def _sync_reference(step, ref, ref_opt):
    ref.load_state_dict(step.net.state_dict())
    for p, q in zip(step.net.parameters(), ref.parameters()):
        buf = step.optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            ref_opt.state[q]["momentum_buffer"] = buf.clone()


def test_shared_kernels_follow_the_weights_and_are_in_the_graph():
    """The step's shared transformed kernel is recomputed after an in-place weight change (never stale), and
    its gradient reaches the depthwise weight and the transform matrix by the end of the step."""
    space = tiny_space()
    torch.manual_seed(0)
    net = build_supernet(space)
    block = net.stages[0][0]
    dw = block.depthwise
    k = min(dw.kernel_sizes)
    x = torch.randn(2, dw.weight.shape[0], 8, 8)
    with net.shared_step():
        first = dw.weight_for(4, k)
        assert dw.weight_for(4, k).data_ptr() == first.data_ptr()  # shared within the step
        with torch.no_grad():
            dw.weight.mul_(2.0)  # an in-place update (as an optimizer step would make)
        again = dw.weight_for(4, k)
        torch.testing.assert_close(again.detach(), dw.active_weight(4, k).detach())
        F.conv2d(x[:, :4], again, None, 1, k // 2, 1, 4).square().sum().backward()
        assert dw.weight.grad is None  # not yet: summed over the step's subnets, carried through once at the end
    transform = next(iter(dw.kernel_transforms.values()))
    assert dw.weight.grad is not None and transform.grad is not None
    assert float(dw.weight.grad.abs().sum()) > 0 and float(transform.grad.abs().sum()) > 0


def test_sliced_gradients_are_added_in_place_without_full_size_temporaries():
    """Inside a step a sliced conv weight's gradient lands in `.grad[:cout, :cin]`; the rest stays zero, and
    autograd never hands AccumulateGrad a full-size gradient for it."""
    space = tiny_space()
    torch.manual_seed(0)
    net = build_supernet(space)
    conv = net.stages[1][0].expand_conv
    x = torch.randn(2, 4, 6, 6)
    seen = []
    conv.weight.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.clone()))
    with net.shared_step():
        out = conv(x, 8)
        out.sum().backward()
    full = conv.weight.grad
    assert full is not None and full.shape == conv.weight.shape and len(seen) == 1
    assert float(full[8:].abs().sum()) == 0 and float(full[:, 4:].abs().sum()) == 0
    plain = torch.autograd.grad(F.conv2d(x, conv.weight[:8, :4]).sum(), conv.weight)[0]
    torch.testing.assert_close(full, plain)


def test_compiled_blocks_equal_the_eager_step(tmp_path):
    """compile: blocks (inductor, one compiled body per block signature) on a space with two signatures.

    One step from equal weights: the same losses and gradients (inductor's fused kernels round differently,
    well inside 1e-5; over many steps at a high LR a tiny net amplifies any rounding, eager included).
    """
    (tmp_path / "micro.yaml").write_text(MICRO_SPACE)
    cfg, space, step, ref, ref_opt, teacher, x, y = _setup("blocks", space_path=tmp_path / "micro.yaml")
    plan = _plans(space)["sandwich"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would hide what we test
        got = step(plan, x, y, teacher)
    want = plain_step(ref, ref_opt, cfg, plan, x, y, teacher)
    _assert_same(step, ref, got, want)
    blocks = step.compiler.blocks
    assert blocks.signatures == 2 and 2 <= blocks.compiles() <= 2 * (blocks.max_compiles + 1)


def _proxyless_like(tmp_path):
    """tiny-mbv3 with ProxylessNAS's relu6 everywhere and its BN eps (the functional body must honour both)."""
    text = (TINY_SPACES_DIR / "tiny-mbv3.yaml").read_text()
    text = text.replace("name: tiny-mbv3", "name: tiny-proxyless").replace("act: hswish", "act: relu6")
    text = text.replace("act: relu", "act: relu6").replace("relu66", "relu6") + "bn_eps: 0.001\n"
    path = tmp_path / "tiny-proxyless.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("family", ["tiny-mbv3", "tiny-resnet", "tiny-proxyless"])
def test_failed_compilation_warns_once_and_runs_eagerly(family, tmp_path):
    """Also proves the functional block bodies (what `blocks` compiles) compute what the modules compute."""
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    space_path = _proxyless_like(tmp_path) if family == "tiny-proxyless" else TINY_SPACES_DIR / f"{family}.yaml"
    cfg, space, step, ref, ref_opt, teacher, x, y = _setup("blocks", backend=broken, space_path=space_path)
    plan = _plans(space)["sandwich"]
    with pytest.warns(RuntimeWarning, match="running it eagerly") as caught:
        got = step(plan, x, y, teacher)
        got2 = step(plan, x, y, teacher)
    assert len([w for w in caught if "eagerly" in str(w.message)]) == 1
    want = plain_step(ref, ref_opt, cfg, plan, x, y, teacher)
    want2 = plain_step(ref, ref_opt, cfg, plan, x, y, teacher)
    _assert_same(step, ref, got2, want2)
    assert float((got[0] - want[0]).abs()) == 0


def test_graphs_without_cuda_compile_blocks_only():
    with pytest.warns(RuntimeWarning, match="graphs needs CUDA"):
        cfg, space, step, *_ = _setup("graphs", backend="aot_eager")
    assert step.compiler.graphs is None and step.compiler.blocks is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_equal_the_eager_step():
    """compile: graphs on CUDA: the sandwich's fixed members (largest at the top resolution, smallest at the
    bottom) and the teacher replay captured graphs; losses, gradients and weights stay the eager step's
    (blocks through aot_eager here, so only the graphs differ; TF32 off on both sides)."""
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        cfg, space, step, ref, ref_opt, teacher, x, y = _setup("graphs", backend="aot_eager", device="cuda")
        assert step.compiler.graphs is not None
        for name in ("sandwich", "teacher-kd", "sandwich"):  # the second sandwich replays the captured graphs
            plan = _plans(space)[name]
            _sync_reference(step, ref, ref_opt)
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
                got = step(plan, x, y, teacher)
            want = plain_step(ref, ref_opt, cfg, plan, x, y, teacher)
            _assert_same(step, ref, got, want, tol=1e-4)
        assert step.compiler.graphs._members and not step.compiler.graphs.failed
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


_SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


def _raise_on_sync(monkeypatch):
    def refuse(name):
        def method(self, *args, **kwargs):
            raise AssertionError(f"host sync inside the training step: Tensor.{name}()")
        return method

    for name in _SYNCS:
        monkeypatch.setattr(torch.Tensor, name, refuse(name))


def test_a_training_step_makes_no_host_sync(monkeypatch):
    """Batch assembly (memory source) and `Trainer`'s step: no `.item()`, `float()`, `.tolist()`, `.cpu()` ..."""
    from nasforge.train.trainer import Trainer

    cfg = tiny_train_config(schedule__name="sandwich", epochs=1, data__train_limit=32, data__batch_size=8)
    trainer = Trainer(cfg, "unused-run-dir")
    trainer._setup()
    trainer.net.train()
    batches = trainer.data.train_batches(0, batch_size=8, seed=0)
    trainer._train_one(*next(batches))  # the first step's one-off set-up (phase entry) may read the host
    with monkeypatch.context() as m:
        _raise_on_sync(m)
        with pytest.raises(AssertionError, match="host sync"):
            float(torch.ones(()))  # the trap is armed
        for _ in range(2):
            x, y = next(batches)
            trainer._train_one(x, y)
    assert trainer.state.iteration == 3
    assert np.isfinite(trainer.meter.read()["loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_training_step_makes_no_host_sync():
    from nasforge.train.trainer import Trainer

    cfg = tiny_train_config(schedule__name="sandwich", epochs=1, data__train_limit=32, data__batch_size=8,
                            device="cuda")
    trainer = Trainer(cfg, "unused-run-dir")
    trainer._setup()
    trainer.net.train()
    batches = trainer.data.train_batches(0, batch_size=8, seed=0)
    trainer._train_one(*next(batches))
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            trainer._train_one(*next(batches))
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert np.isfinite(trainer.meter.read()["loss"])


def test_bucketed_overlapped_all_reduce_equals_per_parameter_mean(tmp_path):
    """Under torchrun (gloo, 2 ranks): `TrainStep`'s gradients equal a plain backward + per-parameter mean, and
    each rank's RNG state is gathered for the checkpoint and picked back by rank (rank 0's for old checkpoints)."""
    run_two_ranks("_ddp_speed.py", tmp_path)
    for rank in (0, 1):
        worst, own, other, picked, old_style, overlapped = (tmp_path / f"rank{rank}.txt").read_text().split()
        assert float(worst) <= TOL
        assert (own, other, picked, old_style, overlapped) == ("True", "False", "True", "True", "True")
