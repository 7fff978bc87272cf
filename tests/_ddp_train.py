"""Helper launched by tests/test_train_ddp.py under torchrun: train, then every rank dumps its weights."""

import sys
from pathlib import Path

import torch

from nasforge.testing.train import tiny_train_config
from nasforge.train import train_supernet
from nasforge.train.distributed import shutdown

torch.set_num_threads(1)
out = Path(sys.argv[1])
cfg = tiny_train_config(schedule__name="sandwich", epochs=1, data__train_limit=64, data__batch_size=16)
result = train_supernet(cfg, out / "run")
rank = torch.distributed.get_rank()
torch.save({k: v.clone() for k, v in result.supernet.state_dict().items()}, out / f"rank{rank}.pt")
shutdown()
