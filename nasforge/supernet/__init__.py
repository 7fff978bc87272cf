"""Elastic supernets, their static extraction, and the ops they are made of."""

from __future__ import annotations

from nasforge.layers import build_layer
from nasforge.space import SearchSpace
from nasforge.supernet.base import ElasticSupernet, permute_optimizer_state, resize_to
from nasforge.supernet.static import StaticSubnet


def build_supernet(space: SearchSpace) -> ElasticSupernet:
    """The elastic supernet of a space (its family decides the network)."""
    return space.family.supernet(space)  # type: ignore[no-any-return]


__all__ = ["ElasticSupernet", "StaticSubnet", "build_layer", "build_supernet", "permute_optimizer_state", "resize_to"]
