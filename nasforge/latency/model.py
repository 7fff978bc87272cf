"""Predicting a subnet's latency: the sum of its blocks' costs, then a calibration.

Block costs come from a measured lookup table (`source = "measured"`) or, for a target with
no table for this space, from a roofline on the target's published specs
(`source = "estimated"`; a warning names the command that measures the real table).

Speed: block costs are gathered from per-block tables (`nasforge.blocksum.BlockSum`), so
`predict` on ~10k archs takes milliseconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.blocksum import BlockSum
from nasforge.errors import LatencyError
from nasforge.latency import calibration as cal
from nasforge.latency.lut import LatencyTable, find_table
from nasforge.latency.targets import Target, load_target
from nasforge.layers import LayerSpec, activation_bytes, layer_macs
from nasforge.space import SearchSpace


class LatencyModel(Protocol):
    target: str
    source: str  # "measured" (LUT measured on hardware) or "estimated" (roofline)

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray: ...


def roofline_ms(spec: LayerSpec, target: Target) -> float:
    """max(FLOPs / (peak * eff), bytes / (bandwidth * eff)) + per-layer overhead, in ms, for the target's batch."""
    flops = 2.0 * layer_macs(spec) * target.batch
    nbytes = float(activation_bytes(spec)) * target.batch
    compute = flops / (target.peak_flops * target.efficiency)
    memory = nbytes / (target.bandwidth * target.efficiency)
    return max(compute, memory) * 1e3 + target.per_layer_overhead_ms


class TableLatencyModel:
    """Latency from a measured lookup table plus its calibration (if the table carries one)."""

    source = "measured"

    def __init__(self, table: LatencyTable, space: SearchSpace, *, calibrated: bool = True) -> None:
        fp = table.metadata.get("space_fingerprint")
        if fp and fp != space.fingerprint:
            raise LatencyError(
                f"latency table {table.path} was built for space {table.metadata.get('space')!r} "
                f"(fingerprint {fp}), not {space.name!r} ({space.fingerprint})"
            )
        self.table = table
        self.target = table.target
        self.space = space
        self.calibration = table.metadata.get("calibration") if calibrated else None
        self.block_sum = BlockSum(space, lambda spec: table.ms(spec.key))

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        sums, blocks = self.block_sum(archs)
        return cal.apply(self.calibration, sums, blocks)


class RooflineLatencyModel:
    """Latency estimated from the target's published specs; never a measurement."""

    source = "estimated"

    def __init__(self, target: Target, space: SearchSpace) -> None:
        self.target = target.name
        self.spec = target
        self.space = space
        self.block_sum = BlockSum(space, lambda spec: roofline_ms(spec, target))

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        return self.block_sum(archs)[0]


def profile_command(target: str, space: SearchSpace) -> str:
    """The command that measures the real table for (target, space)."""
    from nasforge.space import SPACES_DIR

    name = space.name if Path(space.source).resolve().parent == SPACES_DIR else space.source
    return f"nasforge profile --target {target} --space {name}"


def load_latency_model(target: str, space: SearchSpace, lut_path: str | Path | None = None) -> LatencyModel:
    """`lut_path`, else a shipped table for (target, space fingerprint), else the roofline estimate (with a warning)."""
    if lut_path is not None:
        return TableLatencyModel(LatencyTable.load(lut_path), space)
    spec = load_target(target)
    found = find_table(spec.name, space.fingerprint)
    if found is not None:
        table = LatencyTable.load(found)
        if spec.name == "cpu":  # `cpu` means "this machine": a table from another CPU is measured, but not here
            from nasforge.latency.ort_timing import device_string

            here = device_string()
            if table.metadata.get("device") != here:
                warnings.warn(
                    f"the shipped cpu table {found.name} was measured on {table.metadata.get('device')!r}, "
                    f"this machine is {here!r}; measure yours with `{profile_command('cpu', space)} --out FILE` "
                    "and pass it as lut_path / --lut",
                    stacklevel=2,
                )
        return TableLatencyModel(table, space)
    warnings.warn(
        f"no measured latency table for target {spec.name!r} and space {space.name!r}: latencies are "
        f"ESTIMATED from datasheet specs; measure the real table with `{profile_command(spec.name, space)}`",
        stacklevel=2,
    )
    return RooflineLatencyModel(spec, space)


__all__ = [
    "BlockSum",
    "LatencyModel",
    "RooflineLatencyModel",
    "TableLatencyModel",
    "load_latency_model",
    "roofline_ms",
]

