"""Predicting a subnet's latency: per-arch features summed over its blocks, then a calibration.

Block costs come from a measured lookup table or, for a target with no table for this space,
from a roofline on the target's published specs (`source = "estimated"`; a warning names the
command that measures the real table). A table says where it was measured: `source` is
"measured" for a table of the machine at hand (or of the device a remote target names) and
"measured on <CPU>" for a `local` target's table from another machine.

Where tables are looked up (`load_latency_model`): an explicit path, then the user folder
(`$NASFORGE_HOME/latency`: a table of this machine first, then one of another machine), then the
shipped examples (this machine first), then the roofline estimate.

Speed: features are gathered from per-block tables (`nasforge.blocksum.BlockSum`), so
`predict` on ~10k archs takes milliseconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.blocksum import BlockSum
from nasforge.errors import LatencyError, NasforgeError
from nasforge.latency import calibration as cal
from nasforge.latency.lut import (
    LatencyTable,
    find_tables,
    machine_differences,
    machine_notes,
    user_tables_dir,
)
from nasforge.latency.targets import Target, load_target
from nasforge.layers import LayerSpec, activation_bytes, layer_macs, layer_params
from nasforge.space import SearchSpace


class LatencyModel(Protocol):
    target: str
    spec: Target | None  # the resolved target (None: a table's target that no longer resolves)
    source: str  # "measured", "measured on <CPU>" (a table of another machine) or "estimated" (roofline)
    table: LatencyTable | None  # the measured table the numbers come from; None for the roofline estimate
    calibrated: bool  # whether a fitted calibration maps block sums to whole-subnet times

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray: ...


def roofline_ms(spec: LayerSpec, target: Target) -> float:
    """max(FLOPs / (peak * eff), bytes / (bandwidth * eff)) + per-layer overhead, in ms, for the target's batch."""
    flops = 2.0 * layer_macs(spec) * target.batch
    nbytes = float(activation_bytes(spec)) * target.batch
    compute = flops / (target.peak_flops * target.efficiency)
    memory = nbytes / (target.bandwidth * target.efficiency)
    return max(compute, memory) * 1e3 + target.per_layer_overhead_ms


def layer_features(spec: LayerSpec, ms: float, overhead_ms: float, batch: int = 1) -> list[float]:
    """Per-block values whose sums are the calibration features (see `nasforge.latency.calibration`)."""
    weights = layer_params(spec) * 4e-6
    activations = (activation_bytes(spec) - 4 * layer_params(spec)) * 1e-6 * batch
    return [ms, max(ms - overhead_ms, 0.0), weights, activations]


class BlockFeatures:
    """`features(archs) -> {sum_ms, net_ms, weight_mb, act_mb, blocks, one}`, vectorised over archs.

    ms: a block's time (a table's median, or a roofline estimate); overhead_ms: the per-run cost in it.
    """

    def __init__(
        self, space: SearchSpace, ms: Callable[[LayerSpec], float], overhead_ms: float = 0.0, batch: int = 1
    ) -> None:
        self.summer = BlockSum(space, lambda spec: layer_features(spec, ms(spec), overhead_ms, batch))

    def __call__(self, archs: Sequence[ArchConfig] | np.ndarray) -> dict[str, np.ndarray]:
        sums, blocks = self.summer(archs)
        sums = np.asarray(sums, float).reshape(len(blocks), -1)
        return {
            "sum_ms": sums[:, 0],
            "net_ms": sums[:, 1],
            "weight_mb": sums[:, 2],
            "act_mb": sums[:, 3],
            "blocks": blocks,
            "one": np.ones(len(blocks)),
        }


class TableFeatures(BlockFeatures):
    """The features of a measured table (its block medians, less its `run_overhead_ms`)."""

    def __init__(self, table: LatencyTable, space: SearchSpace) -> None:
        overhead = float(table.metadata.get("run_overhead_ms") or 0.0)
        super().__init__(space, lambda spec: table.ms(spec.key), overhead, int(table.metadata.get("batch") or 1))


def source_label(table: LatencyTable, target: Target | None, here: dict[str, Any] | None = None) -> str:
    """"measured", or "measured on <CPU>" when a `local` target's table comes from another machine."""
    if target is not None and not target.local:
        return "measured"
    if not machine_differences(table.machine, here):
        return "measured"
    return f"measured on {table.machine.get('cpu') or 'an unnamed machine'}"


def table_machine_name(table: LatencyTable) -> str:
    """The CPU (or board) a table was measured on, as its metadata names it."""
    return str(table.machine.get("cpu") or table.metadata.get("device") or "an unnamed machine")


def prediction_label(model: LatencyModel) -> str:
    """What a latency model's number is, for people: "predicted from a table measured on <CPU>" or
    "estimated (roofline)". Never "measured": no model times the subnet it is asked about."""
    table = model.table
    if table is None:
        return "estimated (roofline)"
    return f"predicted from a table measured on {table_machine_name(table)}"


def table_target(table: LatencyTable) -> Target | None:
    """The target a table names, resolved; None when that name no longer resolves (a renamed or private target)."""
    try:
        return load_target(table.target)
    except NasforgeError:
        return None


class TableLatencyModel:
    """Latency from a measured lookup table plus its calibration (if the table carries one)."""

    def __init__(
        self, table: LatencyTable, space: SearchSpace, *, calibrated: bool = True, target: Target | None = None
    ) -> None:
        fp = table.metadata.get("space_fingerprint")
        if fp and fp != space.fingerprint:
            raise LatencyError(
                f"latency table {table.path} was built for space {table.metadata.get('space')!r} "
                f"(fingerprint {fp}), not {space.name!r} ({space.fingerprint})"
            )
        self.table = table
        self.target = table.target
        self.space = space
        self.calibration = table.calibration if calibrated else None
        self.features = TableFeatures(table, space)
        self.spec = table_target(table) if target is None else target
        self.source = source_label(table, self.spec)
        self.measured_here = self.source == "measured"

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration)

    @property
    def block_sum(self) -> BlockSum:
        return self.features.summer

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        return cal.apply(self.calibration, self.features(archs))


class RooflineLatencyModel:
    """Latency estimated from the target's published specs; never a measurement."""

    source = "estimated"
    measured_here = False
    table: LatencyTable | None = None
    calibrated = False

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


def find_best_table(target: Target, space: SearchSpace) -> tuple[LatencyTable | None, list[str]]:
    """The table `load_latency_model` would use for (target, space) without a path, and why others lost.

    Order: the user folder before the shipped examples; within each, for a `local` target, a table
    measured on this machine before one from another machine; then the newest.
    """
    user = user_tables_dir().resolve()
    candidates = []
    for path in find_tables(target.name, space.fingerprint):
        try:
            table = LatencyTable.load(path)
        except LatencyError:
            continue
        in_user = Path(path).resolve().is_relative_to(user)
        here = not target.local or not machine_differences(table.machine)
        candidates.append((0 if here else 1, 0 if in_user else 1, str(table.metadata.get("date", "")), table))
    if not candidates:
        return None, []
    candidates.sort(key=lambda c: c[2], reverse=True)  # newest first ...
    candidates.sort(key=lambda c: (c[1], c[0]))  # ... within (user folder first, then this machine first)
    return candidates[0][3], [c[3].path for c in candidates[1:]]


def load_latency_model(
    target: Target | str, space: SearchSpace, lut_path: str | Path | None = None
) -> LatencyModel:
    """`lut_path`, else the best table found (`find_best_table`), else the roofline estimate (with a warning).

    A `Target` already resolved by the caller is used as is; a name is resolved here, once.
    """
    if lut_path is not None:
        table = LatencyTable.load(lut_path)
        try:
            spec: Target | None = target if isinstance(target, Target) else load_target(target)
        except LatencyError:
            spec = None
        if spec is not None and spec.name != table.target:
            spec = None  # the table's own target decides how it is labelled
        model = TableLatencyModel(table, space, target=spec)
        _warn_if_foreign(model, space)
        return model
    spec = target if isinstance(target, Target) else load_target(target)
    return latency_model_for(spec, space, find_best_table(spec, space)[0])


def latency_model_for(spec: Target, space: SearchSpace, table: LatencyTable | None) -> LatencyModel:
    """The model of `table` (found for `spec` by `find_best_table`), or the roofline estimate when there is none
    (with a warning naming the command that measures the real table)."""
    if table is not None:
        model = TableLatencyModel(table, space, target=spec)
        _warn_if_foreign(model, space)
        return model
    warnings.warn(
        f"no measured latency table for target {spec.name!r} and space {space.name!r}: latencies are "
        f"ESTIMATED from datasheet specs; measure the real table with `{profile_command(spec.name, space)}`",
        stacklevel=3,
    )
    return RooflineLatencyModel(spec, space)


def _warn_if_foreign(model: TableLatencyModel, space: SearchSpace) -> None:
    table = model.table
    if model.source != "measured":
        warnings.warn(
            f"latency table {Path(table.path).name} was {model.source}, not on this machine "
            f"({machine_here()}); its numbers are labelled so. Measure this machine with "
            f"`{profile_command(table.target, space)}`",
            stacklevel=3,
        )
    elif model.source == "measured" and model.spec is not None and model.spec.local:
        notes = machine_notes(table.machine)
        if notes:
            warnings.warn(f"latency table {Path(table.path).name}: same CPU, but {'; '.join(notes)}", stacklevel=3)


def machine_here() -> str:
    from nasforge.latency.ort_timing import device_string

    return device_string()


__all__ = [
    "BlockFeatures",
    "BlockSum",
    "LatencyModel",
    "RooflineLatencyModel",
    "TableFeatures",
    "TableLatencyModel",
    "find_best_table",
    "latency_model_for",
    "load_latency_model",
    "prediction_label",
    "roofline_ms",
    "source_label",
    "table_target",
]
