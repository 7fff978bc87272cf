"""Predicting a subnet's latency: the sum of its blocks' costs, then a calibration.

Block costs come from a measured lookup table (`source = "measured"`) or, for a target with
no table for this space, from a roofline on the target's published specs
(`source = "estimated"`; a warning names the command that measures the real table).

Speed: for MobileNetV3-family spaces every block cost is looked up once per
(resolution, stage, first-or-later block, kernel, expansion) when the model is built, so
`predict` is a short Python loop over the arch's depths (~10k archs in well under a
second). Other families sum `space.layers(arch)` per arch, memoised.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import LatencyError
from nasforge.layers import LayerSpec, activation_bytes, layer_macs
from nasforge.latency import calibration as cal
from nasforge.latency.enumerate import probe_archs
from nasforge.latency.lut import LatencyTable, find_table
from nasforge.latency.targets import Target, load_target
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


class BlockSum:
    """Sum of per-block costs over an arch's layers, with a fast path for MobileNetV3 spaces."""

    def __init__(self, space: SearchSpace, cost: Callable[[LayerSpec], float]) -> None:
        self.space = space
        self.cost = cost
        self._memo: dict[ArchConfig, tuple[float, int]] = {}
        self._fast = self._build_fast() if space.family == "mobilenetv3" and not space.width_choices else None

    def _build_fast(self) -> dict[tuple[int, int, int, int, float], float]:
        space = self.space
        starts, offset = [], 2  # stem and first block come first
        for stage in space.stages:
            starts.append(offset)
            offset += stage.max_depth
        table: dict[tuple[int, int, int, int, float], float] = {}
        self._fixed: dict[int, float] = {}
        for arch in probe_archs(space):
            specs = space.layers(arch)
            if len(specs) != offset + 1:  # layout not as expected: use the generic path
                return {}
            r = arch.resolution
            self._fixed[r] = self.cost(specs[0]) + self.cost(specs[1]) + self.cost(specs[-1])
            for s, stage in enumerate(space.stages):
                for later in range(min(2, stage.max_depth)):
                    spec = specs[starts[s] + later]
                    table[(r, s, later, spec.kernel_size, self._expand_of(arch, s))] = self.cost(spec)
        k_base, e_base, kb, eb = [], [], 0, 0
        for stage in space.stages:
            k_el, e_el = len(stage.kernel_sizes) > 1, len(stage.expand_ratios) > 1
            k_base.append(kb if k_el else -1)
            e_base.append(eb if e_el else -1)
            kb += stage.max_depth if k_el else 0
            eb += stage.max_depth if e_el else 0
        self._k_base, self._e_base = k_base, e_base
        return table

    def _expand_of(self, arch: ArchConfig, s: int) -> float:
        stage = self.space.stages[s]
        if len(stage.expand_ratios) == 1:
            return stage.expand_ratios[0]
        first = next(j for j, slot in enumerate(self.space.expand_slots) if slot.stage == s)
        return arch.expand_ratios[first]

    def _fast_one(self, a: ArchConfig) -> tuple[float, int]:
        table, stages = self._fast, self.space.stages
        total = self._fixed[a.resolution]
        n = 3
        for s, d in enumerate(a.depths):
            kb, eb, stage = self._k_base[s], self._e_base[s], stages[s]
            for p in range(d):
                k = a.kernel_sizes[kb + p] if kb >= 0 else stage.kernel_sizes[0]
                e = a.expand_ratios[eb + p] if eb >= 0 else stage.expand_ratios[0]
                total += table[(a.resolution, s, 1 if p else 0, k, e)]
            n += d
        return total, n

    def one(self, arch: ArchConfig) -> tuple[float, int]:
        if self._fast:
            try:
                return self._fast_one(arch)
            except (KeyError, IndexError):
                pass  # not a canonical arch of this space: the generic path validates and says why
        hit = self._memo.get(arch)
        if hit is None:
            specs = self.space.layers(arch)
            hit = (float(sum(self.cost(s) for s in specs)), len(specs))
            if len(self._memo) < 200_000:
                self._memo[arch] = hit
        return hit

    def __call__(self, archs: Sequence[ArchConfig] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sum of block costs in ms, number of blocks) per arch; archs may also be a batch of encodings."""
        if isinstance(archs, np.ndarray):
            archs = self.space.decode_batch(archs)
        pairs = [self.one(a) for a in archs]
        if not pairs:
            return np.zeros(0), np.zeros(0)
        sums, blocks = zip(*pairs)
        return np.array(sums, dtype=np.float64), np.array(blocks, dtype=np.float64)


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

