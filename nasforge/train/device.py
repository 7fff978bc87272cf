"""Which device a run uses, and the mixed precision it runs under there."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from nasforge.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def autocast_for(device: torch.device, enabled: bool = True) -> Any:
    """bf16 autocast on CUDA; a no-op elsewhere."""
    if device.type == "cuda" and enabled:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()
