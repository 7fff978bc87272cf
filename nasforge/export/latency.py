"""The sidecar's latency: what the target's latency model predicts, and, where it is cheap, a timing of the model.

A latency table predicts a subnet from its blocks; nobody timed that subnet. So the prediction is labelled
"predicted from a table measured on <CPU>" (or "estimated (roofline)"), never "measured". When the table
is this machine's and the target is this CPU, the exported ONNX model is timed here with the table's own
protocol (`nasforge.latency.ort_timing`, a modest schedule): both numbers are then shown, each with its CPU.

Sidecar fields (`latency`): target, ms (the prediction: what older readers read), predicted_ms, source,
[table, device (the table's CPU), calibrated], and after a timing measured_ms (plain median now), cpu (where),
measured_at_table_speed_ms (the same timing read at the table's reference speed, when it has one) and
measurement (the schedule and the timing's spread); or not_measured, saying why no timing was made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasforge.arch import ArchConfig
from nasforge.space import SearchSpace

if TYPE_CHECKING:
    from nasforge.latency.lut import LatencyTable
    from nasforge.latency.model import LatencyModel
    from nasforge.latency.targets import Target

# a modest schedule (the protocol's whole-subnet timing, one group: the model beside the reference subnet)
WARMUP = 10
REPEATS = 50
RETRIES = 1


@dataclass(frozen=True)
class LatencyEntry:
    """One subnet's latency on a target: the prediction and its basis, and a timing of the model if one was made."""

    target: str
    predicted_ms: float
    source: str  # prediction_label: "predicted from a table measured on <CPU>" or "estimated (roofline)"
    table: str | None = None
    device: str | None = None  # the CPU (or board) the table was measured on
    calibrated: bool | None = None
    measured_ms: float | None = None  # the exported model timed here, plain median
    cpu: str | None = None  # where measured_ms was timed
    measured_at_table_speed_ms: float | None = None
    measurement: dict[str, Any] | None = None
    not_measured: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The sidecar form: `ms` keeps the prediction for readers of older sidecars; absent fields are left out."""
        out: dict[str, Any] = {"target": self.target, "ms": self.predicted_ms}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and f.name != "target":
                out[f.name] = value
        return out


def latency_entry(
    space: SearchSpace, arch: ArchConfig, target: str | None, model: LatencyModel | None = None
) -> LatencyEntry | None:
    """`arch`'s predicted latency on `target` with its basis, or None without a target.

    `model`: the target's latency model when the caller resolved it already (else it is loaded here).
    """
    if not target:
        return None
    from nasforge.latency import load_latency_model
    from nasforge.latency.model import prediction_label, table_machine_name

    model = load_latency_model(target, space) if model is None else model
    predicted = float(model.predict([arch])[0])
    table = model.table
    if table is None:
        return LatencyEntry(target, predicted, prediction_label(model))
    return LatencyEntry(target, predicted, prediction_label(model), table=table.path,
                        device=table_machine_name(table), calibrated=model.calibrated)


def why_not_timed(entry: LatencyEntry, model: LatencyModel | None = None) -> str | None:
    """None when the exported model can be timed here against `entry`'s table, else why not."""
    return _timing_basis(entry, model)[0]


def _timing_basis(entry: LatencyEntry, model: LatencyModel | None) -> tuple[str | None, LatencyTable | None]:
    """(why the model cannot be timed here or None, the table to time against). `model` (the one `entry` came
    from) gives the resolved target and table; without it they are read from `entry`'s names."""
    from nasforge.errors import LatencyError

    if entry.table is None:
        return "no measured table for this target: nothing here to time against", None
    try:
        spec, table = _target_and_table(entry, model)
    except LatencyError as exc:
        return str(exc), None
    return _why_not(entry, spec, table), table


def _target_and_table(entry: LatencyEntry, model: LatencyModel | None) -> tuple[Target, LatencyTable]:
    from nasforge.latency.lut import LatencyTable
    from nasforge.latency.targets import load_target

    if model is not None and model.spec is not None and model.table is not None:
        return model.spec, model.table
    return load_target(entry.target), LatencyTable.load(str(entry.table))


def _why_not(entry: LatencyEntry, spec: Target, table: LatencyTable) -> str | None:
    from nasforge.latency.lut import machine_differences

    if not spec.local:
        return f"target {entry.target!r} is another device"
    if machine_differences(table.machine):
        return f"the table was measured on another machine ({entry.device})"
    if (table.metadata.get("backend") or "ort") != "ort" or int(table.metadata.get("batch") or 1) != 1:
        return "the table was not timed with ONNX Runtime at batch 1"
    return None


def time_exported(
    entry: LatencyEntry, model_path: str | Path, space: SearchSpace, model: LatencyModel | None = None
) -> LatencyEntry:
    """`entry` with the exported ONNX model timed here (`why_not_timed` decides), or with why not.

    `model`: the latency model `entry` came from, when the caller has it (its target and table are not read again).
    """
    reason, table = _timing_basis(entry, model)
    if reason is not None or table is None:
        return dataclasses.replace(entry, not_measured=reason)
    from nasforge.latency import ort_timing

    threads = int(table.metadata.get("threads") or 1)
    provider = str(table.metadata.get("provider") or "CPUExecutionProvider")
    speed = (table.metadata.get("speed_reference") or {}).get("subnet_ms")
    reference = _reference_model(space) if speed else None

    def once() -> dict[str, Any]:
        return ort_timing.time_models([str(model_path)], provider, threads, WARMUP, REPEATS, reference,
                                      ort_timing.SUBNET_MIN_TIMED_MS)[0]

    with ort_timing.pinned(threads):
        timing = ort_timing.time_stable(once, retries=RETRIES)
    keep = ("runs", "clean", "uncertainty", "rounds_spread", "preempted", "attempts", "stable", "reference_ms")
    return dataclasses.replace(
        entry,
        measured_ms=round(float(timing["median_ms"]), 6),
        cpu=ort_timing.device_string(),
        measured_at_table_speed_ms=None if not speed else round(ort_timing.at_reference_speed(timing, speed), 6),
        measurement={"protocol": ort_timing.PROTOCOL_VERSION, "threads": threads, "provider": provider,
                     "warmup": WARMUP, "repeats": REPEATS, **{k: timing[k] for k in keep if k in timing}},
    )


def _reference_model(space: SearchSpace) -> bytes:
    """The space's speed-reference subnet as ONNX (timed beside the model, as the table's subnets were)."""
    from nasforge.latency.backends import export_subnet
    from nasforge.latency.reference import reference_subnet

    return export_subnet(space, reference_subnet(space))
