"""Latency lookup tables on disk: per-block median/p90 timings plus the metadata that made them.

File format (JSON, `format: nasforge-lut/1`):
  metadata: target, device, machine (CPU model and id, ISA flags, core count, caches, ORT version,
            provider, threads), ort_version, provider, threads, batch, date, protocol, space,
            space_fingerprint, build_seconds, run_overhead_ms, stability, speed_reference, [validation],
            [calibration], [validation_rejected], [note]
  entries:  {LayerSpec.key: {median_ms, p90_ms, spread, rounds_spread, preempted, reference_ms, ...}}
            (reference_ms: the speed reference's median in the block's group; `ms` reads every block
            at the table's reference speed, metadata.speed_reference.block_ms)
  verify:   [{key, role, arch, predicted_ms, median_ms, p90_ms, ...}]  (whole subnets timed on the device)

Where tables live: the user folder (`user_dir("latency")`, i.e. `$NASFORGE_HOME/latency`) holds what
`nasforge profile` and `lut import` write, one file per target x space x machine; the shipped folder
holds read-only examples measured on the machine their metadata names. A table knows its machine:
`machine_differences` says whether it was measured on the machine at hand.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.errors import LatencyError, MixedSpeedError
from nasforge.io import atomic_write_json
from nasforge.latency import calibration as cal
from nasforge.latency.ort_timing import LUT_FORMAT, at_reference_speed, machine_info
from nasforge.latency.records import Validation
from nasforge.resources import shipped_dir, user_dir

SHIPPED_DIR = shipped_dir("predictors", "latency")
MAX_MS = 1e6  # no block or subnet takes 1000 s: a larger time is a corrupt table (1e308 would sum to inf)
# p90 may sit a rounding error below the median when both were rounded separately
_P90_SLACK = 1e-9


@dataclass
class LatencyTable:
    """A measured lookup table; `ms(key)` raises naming the key when an entry is missing."""

    metadata: dict[str, Any]
    entries: dict[str, dict[str, float]]
    verify: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""

    def ms(self, key: str) -> float:
        """The block's median read at the table's reference speed (`ort_timing.at_reference_speed`)."""
        try:
            return at_reference_speed(self.entries[key], self.block_speed_ms)
        except KeyError:
            raise LatencyError(
                f"latency table {self.path or '<memory>'} has no entry {key!r} "
                f"(built for space {self.metadata.get('space')!r}); re-run `nasforge profile` to measure it"
            ) from None

    @property
    def block_speed_ms(self) -> float | None:
        """The reference block's median over all groups (None for tables timed without a reference)."""
        ref = self.metadata.get("speed_reference")
        value = ref.get("block_ms") if isinstance(ref, dict) else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The stored calibration (`nasforge.latency.calibration`), None for plain block sums."""
        return self.metadata.get("calibration") or None

    @property
    def validation(self) -> Validation | None:
        """The trusted whole-subnet validation the calibration was fitted on, if any."""
        return self._validation("validation")

    @property
    def validation_rejected(self) -> Validation | None:
        """The last validation refused as too noisy (its would-be calibration and samples under `extra`)."""
        return self._validation("validation_rejected")

    @property
    def validation_under_load(self) -> bool:
        """Whether a validation measured under load was discarded (some older shipped tables say so)."""
        return bool(self.metadata.get("validation_under_load"))

    def _validation(self, key: str) -> Validation | None:
        value = self.metadata.get(key)
        return Validation.from_dict(value, f"latency table {self.path or '<memory>'}: {key}") if value else None

    def check_one_speed(self) -> None:
        """Refuse a table whose blocks cannot all be read at one speed (`at_one_speed`)."""
        at_one_speed(self.entries.values(), self.block_speed_ms, f"latency table {self.path or '<memory>'} blocks")

    @property
    def target(self) -> str:
        return str(self.metadata.get("target", "?"))

    @property
    def machine(self) -> dict[str, Any]:
        """The machine it was measured on (tables older than `metadata.machine` name only the CPU)."""
        machine = self.metadata.get("machine")
        if isinstance(machine, dict):
            return machine
        return {"cpu": self.metadata.get("device"), "ort_version": self.metadata.get("ort_version")}

    def to_dict(self) -> dict[str, Any]:
        return {"format": LUT_FORMAT, "metadata": self.metadata, "entries": self.entries, "verify": self.verify}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())
        self.path = str(path)

    @classmethod
    def peek(cls, path: str | Path) -> LatencyTable:
        """Only a table file's metadata (entries left empty, nothing else checked): listings name every table
        they find, even one whose entries would not load."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError):
            raise LatencyError(f"{path}: not a readable JSON latency table") from None
        meta = data.get("metadata") if isinstance(data, dict) else None
        if not isinstance(meta, dict):
            raise LatencyError(f"{path}: latency table lacks 'metadata'")
        return cls(meta, {}, [], str(path))

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise LatencyError(f"{path}: cannot read latency table ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise LatencyError(f"{path}: not a JSON latency table ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict) or data.get("format") != LUT_FORMAT:
            raise LatencyError(f"{path}: not a nasforge latency table (expected format {LUT_FORMAT!r})")
        entries = data.get("entries")
        meta = data.get("metadata")
        if not isinstance(entries, dict) or not isinstance(meta, dict):
            raise LatencyError(f"{path}: latency table lacks 'metadata' or 'entries'")
        for key, value in entries.items():
            _check_timing(value, f"{path}: entry {key!r}")
        verify = data.get("verify", [])
        if not isinstance(verify, list):
            raise LatencyError(f"{path}: 'verify' must be a list of whole-subnet timings")
        for i, value in enumerate(verify):
            name = value.get("key", i) if isinstance(value, dict) else i
            _check_timing(value, f"{path}: verify entry {name!r}")
        cal.check(meta.get("calibration"), str(path))
        table = cls(meta, entries, list(verify), str(path))
        table.check_one_speed()
        return table


def at_one_speed(timings: Iterable[dict[str, Any]], speed_ms: float | None, what: str) -> np.ndarray:
    """Every timing read at the reference speed `speed_ms` (`ort_timing.at_reference_speed`), or every one raw
    when `speed_ms` is None (tables timed before the speed reference).

    A timing without `reference_ms` among ones read at a reference speed would enter a fit or a comparison at
    the machine's speed of its own moment: refused (`MixedSpeedError`), naming how many lack the reference.
    """
    timings = list(timings)
    if speed_ms:
        raw = sum(1 for t in timings if not t.get("reference_ms"))
        if raw:
            raise MixedSpeedError(
                f"{what}: {raw} of {len(timings)} timings carry no speed reference while the others are read at "
                f"the reference speed; they cannot be combined (time them again together with `nasforge profile`)"
            )
    return np.array([at_reference_speed(t, speed_ms) for t in timings], dtype=np.float64)


def _check_timing(value: object, where: str) -> None:
    """A timing must hold a plausible median (finite, > 0, <= MAX_MS) and, if given, p90 >= median."""
    if not isinstance(value, dict):
        raise LatencyError(f"{where} is not a mapping with median_ms")
    median = value.get("median_ms")
    if isinstance(median, bool) or not isinstance(median, (int, float)):
        raise LatencyError(f"{where} has no numeric median_ms")
    if not (math.isfinite(median) and 0 < median <= MAX_MS):
        raise LatencyError(f"{where}: median_ms {median!r} is not a valid time (expected 0 < ms <= {MAX_MS:g})")
    for name in ("reference_ms", "reference_ratio"):  # the speed reference's timing and this one's ratio to it
        number = value.get(name)
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, (int, float))
            or not (math.isfinite(number) and 0 < number <= MAX_MS)
        ):
            raise LatencyError(f"{where}: {name} {number!r} is not a valid positive number (0 < x <= {MAX_MS:g})")
    p90 = value.get("p90_ms")
    if p90 is None:
        return
    if isinstance(p90, bool) or not isinstance(p90, (int, float)) or not math.isfinite(p90):
        raise LatencyError(f"{where}: p90_ms {p90!r} is not a finite number")
    if p90 < median * (1 - _P90_SLACK) or p90 > MAX_MS:
        raise LatencyError(f"{where}: p90_ms {p90!r} is below its median_ms {median!r} or implausible")


def shipped_tables(directory: Path = SHIPPED_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def user_tables_dir() -> Path:
    """Where `nasforge profile` and `lut import` write: `$NASFORGE_HOME/latency` (read at call time)."""
    return user_dir("latency")


def table_dirs() -> list[Path]:
    """Where tables are looked up, in order: the user folder, then the shipped examples."""
    return [user_tables_dir(), SHIPPED_DIR]


@functools.lru_cache(maxsize=1)
def this_machine() -> dict[str, Any]:
    """`machine_info()` of the machine at hand (read once per process)."""
    return machine_info()


# what in a CPU model name is not a model number: the clock, a version or revision, an ISA or core count
_NOT_A_MODEL_NUMBER = re.compile(
    r"@\s*[\d.]+\s*[GM]Hz|\b(?:version|rev)\s*[\w.+]+|\bARMv\d\w*|\(v\d\w*\)|\baarch64\b|\bx86[_-]64\b"
    r"|\bi[3-6]86\b|\b\d+-Core\b",
    re.IGNORECASE,
)
IDENTITY_FIELDS = ("cpu", "cpu_id", "isa")
GENERIC_IDENTITY_FIELDS = (*IDENTITY_FIELDS, "cache_kb")


def generic_cpu_name(name: str | None) -> bool:
    """True for a model name without a model number ("Intel(R) Xeon(R) Processor", "AMD EPYC", "Common KVM
    processor", "QEMU Virtual CPU version 2.5+"): hypervisors report these for whole families of CPUs."""
    return not any(ch.isdigit() for ch in _NOT_A_MODEL_NUMBER.sub(" ", name or ""))


def identity_fields(machine: dict[str, Any]) -> tuple[str, ...]:
    """The fields that identify `machine`: a generic model name needs its caches as well."""
    return GENERIC_IDENTITY_FIELDS if generic_cpu_name(machine.get("cpu")) else IDENTITY_FIELDS


def machine_key(machine: dict[str, Any]) -> str:
    """Eight hex digits naming a machine by its identifying fields (a file-name tag)."""
    fields = identity_fields(machine)
    text = json.dumps([machine.get(f) for f in fields], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _recorded(value: object) -> bool:
    return value is not None and value != [] and value != {} and value != ""


def machine_differences(theirs: dict[str, Any], here: dict[str, Any] | None = None) -> list[str]:
    """The identifying fields in which a table's machine differs from `here`, or that it does not record.

    Empty: the same machine. A field the table lacks is unknown, not equal (tables older than
    `metadata.machine` record the CPU model only, so they never count as this machine). A generic model
    name (`generic_cpu_name`) identifies nothing alone: the CPU id (family/model/stepping), ISA flags and
    caches must be recorded on both sides and match. A field this machine cannot read (no CPU id off x86)
    is no evidence either way for a specific model name.
    """
    here = this_machine() if here is None else here
    generic = generic_cpu_name(theirs.get("cpu")) or generic_cpu_name(here.get("cpu"))
    diffs = []
    for field_ in GENERIC_IDENTITY_FIELDS if generic else IDENTITY_FIELDS:
        a, b = theirs.get(field_), here.get(field_)
        if not _recorded(b) and not generic and field_ != "cpu":
            continue
        if not _recorded(a) or a != b:
            diffs.append(field_)
    return diffs


def machine_notes(theirs: dict[str, Any], here: dict[str, Any] | None = None) -> list[str]:
    """Softer differences on the same CPU that still move timings (ORT version, usable cores)."""
    here = this_machine() if here is None else here
    notes = []
    for field_, what in (("ort_version", "onnxruntime"), ("logical_cpus", "logical CPUs")):
        a, b = theirs.get(field_), here.get(field_)
        if a is not None and b is not None and a != b:
            notes.append(f"{what} {a} there, {b} here")
    return notes


def find_tables(target: str, fingerprint: str, directories: list[Path] | None = None) -> list[Path]:
    """Every table for (target, space fingerprint) in `directories` (default: user folder, then shipped)."""
    found = []
    for directory in table_dirs() if directories is None else directories:
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            try:
                meta = LatencyTable.peek(path).metadata
            except LatencyError:  # not a JSON table with metadata: not a candidate
                continue
            if meta.get("target") == target and meta.get("space_fingerprint") == fingerprint:
                found.append(path)
    return found


def find_table(target: str, fingerprint: str, directory: Path = SHIPPED_DIR) -> Path | None:
    """A table measured for (target, space fingerprint) in one folder, if any."""
    found = find_tables(target, fingerprint, [directory])
    return found[0] if found else None


def table_filename(target: str, space: str, machine: dict[str, Any] | None = None) -> str:
    """`TARGET__SPACE.json`, or `TARGET__SPACE__MACHINE.json` for a table of the machine at hand."""
    return f"{target}__{space}.json" if machine is None else f"{target}__{space}__{machine_key(machine)}.json"
