"""Helper launched by tests/test_train_speed.py under torchrun (gloo, 2 ranks): the bucketed, overlapped
gradient all-reduce equals a per-parameter mean, and every rank's RNG state is gathered in rank order."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_speed import _plans, _setup, _sync_reference, plain_step  # noqa: E402

from nasforge.train import checkpoint as ckpt  # noqa: E402
from nasforge.train.distributed import GradientReducer, gather_objects, init_distributed, shutdown  # noqa: E402

torch.set_num_threads(1)
out = Path(sys.argv[1])
ctx = init_distributed("cpu")
cfg, space, step, ref, ref_opt, teacher, x, y = _setup(batch=8)
gen = torch.Generator().manual_seed(100 + ctx.rank)  # each rank its own shard
x, y = torch.randn(x.shape, generator=gen), torch.randint(0, space.num_classes, y.shape, generator=gen)
step.ctx = ctx
step.reducer = GradientReducer(step.net, ctx, bucket_mb=0.002)  # many small buckets: order and overlap matter
assert len(step.reducer.buckets) > 5
early = []  # buckets already out when the last backward returns: the all-reduce overlapped it
real_finish = step.reducer.finish
step.reducer.finish = lambda: (early.append(len(step.reducer._launched)), real_finish())[1]
worst = 0.0
for name in ("sandwich", "teacher-kd"):
    plan = _plans(space)[name]
    _sync_reference(step, ref, ref_opt)
    step(plan, x, y, teacher)
    # the reference: plain backward on this rank's shard, then one all-reduce per parameter (the old way)
    ref_opt.step = lambda: None  # take the optimizer step by hand, after averaging
    plain_step(ref, ref_opt, cfg, plan, x, y, teacher)
    for p in ref.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(ctx.world_size)
    del ref_opt.step
    ref_opt.step()
    for p, q in zip(step.net.parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            worst = max(worst, float((p.grad - q.grad).abs().max()))
    for p, q in zip(step.net.parameters(), ref.parameters()):
        worst = max(worst, float((p.detach() - q.detach()).abs().max()))

torch.manual_seed(1000 + ctx.rank)
states = gather_objects(ckpt.rng_state(), ctx)
own = torch.equal(states[ctx.rank]["torch"], torch.get_rng_state())
other = torch.equal(states[1 - ctx.rank]["torch"], torch.get_rng_state())
payload = {"rng": states[0], "rng_per_rank": states}
picked = torch.equal(ckpt.rng_for_rank(payload, ctx.rank, ctx.world_size)["torch"], torch.get_rng_state())
old_style = torch.equal(ckpt.rng_for_rank({"rng": states[0]}, ctx.rank, ctx.world_size)["torch"], states[0]["torch"])
overlapped = all(0 < n < len(step.reducer.buckets) for n in early)
(out / f"rank{ctx.rank}.txt").write_text(f"{worst} {own} {other} {picked} {old_style} {overlapped}\n")
shutdown()
