"""The speed reference: the one block and the one subnet of a space that every timing group is measured beside.

A shared CPU's speed wanders as a whole: on the 2-vCPU AMD EPYC VM, twenty whole subnets timed
round-robin came out 4-7% slower or faster from one pass to the next, and up to 30% for seconds
within a pass, while their ratios to each other moved by 1.5% (median). So every group of blocks
(or whole subnets) is timed with a fixed reference model among them (`ort_timing.time_models`), and a
table reads each timing at one speed (`ort_timing.at_reference_speed`). The references are chosen
from the space alone (no timings), so a bundle, a resumed table and a later check pick the same ones.
"""

from __future__ import annotations

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.latency.enumerate import distinct_layers
from nasforge.layers import LayerSpec, layer_macs
from nasforge.space import SearchSpace

BLOCK_QUANTILE = 0.9  # a large block: long enough that its own timing noise is small, short beside a group
SUBNET_POOL = 101  # random subnets (fixed seed) among which the one of median MACs is the reference


def reference_block(space: SearchSpace) -> LayerSpec:
    """The distinct block at the 90th percentile of MACs (ties broken by key: stable across runs)."""
    specs = sorted(distinct_layers(space), key=lambda s: (layer_macs(s), s.key))
    return specs[min(len(specs) - 1, int(BLOCK_QUANTILE * len(specs)))]


def reference_subnet(space: SearchSpace) -> ArchConfig:
    """The subnet of median MACs among `SUBNET_POOL` drawn with seed 0: a typical member of the space."""
    pool = space.sample_many(np.random.default_rng(0), SUBNET_POOL)
    return sorted(pool, key=lambda a: (space.macs(a), a.key))[len(pool) // 2]
