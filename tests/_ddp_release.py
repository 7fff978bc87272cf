"""Helper launched by tests/test_train_ddp.py under torchrun: after `shutdown()` no backend thread is left.

The optimizer is made after the group exists, as the Trainer does (it imports torch.distributed.nn.functional
lazily, which used to keep the group alive past destroy_process_group).
"""

import os
import sys
from pathlib import Path

import torch

from nasforge.testing.train import tiny_train_config
from nasforge.train.distributed import init_distributed, shutdown
from nasforge.train.step import make_optimizer

torch.set_num_threads(1)
ctx = init_distributed("cpu")
optimizer = make_optimizer([torch.nn.Parameter(torch.ones(3))], tiny_train_config().optim, torch.device("cpu"))
total = torch.tensor([float(ctx.rank + 1)])
torch.distributed.all_reduce(total)


def thread_names() -> str:
    tasks = os.listdir("/proc/self/task")
    return " ".join(sorted(Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in tasks))


live_before = thread_names()
shutdown()
Path(sys.argv[1], f"rank{ctx.rank}.txt").write_text(f"{total.item()}\n{live_before}\n{thread_names()}\n")
