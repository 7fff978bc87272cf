"""A 2-process torchrun (gloo) run trains, and both ranks end with identical weights."""

from __future__ import annotations

import torch
from _torchrun import run_two_ranks  # tests/_torchrun.py (pytest puts tests/ on sys.path)


def test_torchrun_two_ranks_hold_equal_weights(tmp_path):
    run_two_ranks("_ddp_train.py", tmp_path)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    init = None
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # training happened (rank 0 wrote the run; weights moved away from a fresh init)
    assert (tmp_path / "run" / "supernet.pt").exists()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    from nasforge.supernet import build_supernet
    from nasforge.testing import tiny_space

    torch.manual_seed(0)
    init = build_supernet(tiny_space()).state_dict()
    key = next(k for k in init if k.endswith("weight") and init[k].ndim == 4)
    assert not torch.equal(init[key], a[key])


def test_process_group_is_released_at_exit(tmp_path):
    """`shutdown()` leaves no backend thread behind: a gloo thread alive at interpreter exit aborts the process
    ("terminate called without an active exception") about one time in three, failing a finished job."""
    run_two_ranks("_ddp_release.py", tmp_path)
    for rank in (0, 1):
        total, before, after = (tmp_path / f"rank{rank}.txt").read_text().splitlines()
        assert float(total) == 3.0  # the group really ran a collective
        assert any("gloo" in name for name in before.split())  # and its threads were alive: the check can fail
        assert not [name for name in after.split() if "gloo" in name], after
