"""The one activation table: each name the spaces use, as a function (elastic forwards and functional block
bodies) and as a module (static subnets, so they export to ONNX as the standard op)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.errors import SpaceError


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


TABLE: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[], nn.Module]]] = {
    "relu": (F.relu, lambda: nn.ReLU(inplace=True)),
    "relu6": (F.relu6, lambda: nn.ReLU6(inplace=True)),
    "hswish": (F.hardswish, lambda: nn.Hardswish(inplace=True)),
    "gelu": (F.gelu, nn.GELU),
    "none": (_identity, nn.Identity),
}


def _entry(name: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[], nn.Module]]:
    try:
        return TABLE[name]
    except KeyError:
        raise SpaceError(f"unknown activation {name!r}; expected one of {', '.join(TABLE)}") from None


def apply(name: str, x: torch.Tensor) -> torch.Tensor:
    """`x` through the activation `name` (out of place: autograd may need the input)."""
    return _entry(name)[0](x)


def module(name: str) -> nn.Module:
    """A fresh module of the activation `name`."""
    return _entry(name)[1]()
