"""Latency lookup tables on disk: per-block median/p90 timings plus the metadata that made them.

File format (JSON, `format: nasforge-lut/1`):
  metadata: target, device, ort_version, provider, threads, batch, date, protocol, space,
            space_fingerprint, build_seconds, [validation], [calibration], [note]
  entries:  {LayerSpec.key: {median_ms, p90_ms}}
  verify:   [{key, arch, predicted_ms, median_ms, p90_ms}]  (whole subnets timed on the device)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import LatencyError
from nasforge.io import atomic_write_json
from nasforge.latency import calibration as cal
from nasforge.latency.ort_timing import LUT_FORMAT
from nasforge.resources import shipped_dir

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
        try:
            return float(self.entries[key]["median_ms"])
        except KeyError:
            raise LatencyError(
                f"latency table {self.path or '<memory>'} has no entry {key!r} "
                f"(built for space {self.metadata.get('space')!r}); re-run `nasforge profile` to measure it"
            ) from None

    @property
    def target(self) -> str:
        return str(self.metadata.get("target", "?"))

    def to_dict(self) -> dict[str, Any]:
        return {"format": LUT_FORMAT, "metadata": self.metadata, "entries": self.entries, "verify": self.verify}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())
        self.path = str(path)

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
        return cls(meta, entries, list(verify), str(path))


def _check_timing(value: object, where: str) -> None:
    """A timing must hold a plausible median (finite, > 0, <= MAX_MS) and, if given, p90 >= median."""
    if not isinstance(value, dict):
        raise LatencyError(f"{where} is not a mapping with median_ms")
    median = value.get("median_ms")
    if isinstance(median, bool) or not isinstance(median, (int, float)):
        raise LatencyError(f"{where} has no numeric median_ms")
    if not (math.isfinite(median) and 0 < median <= MAX_MS):
        raise LatencyError(f"{where}: median_ms {median!r} is not a valid time (expected 0 < ms <= {MAX_MS:g})")
    p90 = value.get("p90_ms")
    if p90 is None:
        return
    if isinstance(p90, bool) or not isinstance(p90, (int, float)) or not math.isfinite(p90):
        raise LatencyError(f"{where}: p90_ms {p90!r} is not a finite number")
    if p90 < median * (1 - _P90_SLACK) or p90 > MAX_MS:
        raise LatencyError(f"{where}: p90_ms {p90!r} is below its median_ms {median!r} or implausible")


def shipped_tables(directory: Path = SHIPPED_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def find_table(target: str, fingerprint: str, directory: Path = SHIPPED_DIR) -> Path | None:
    """A shipped table measured for (target, space fingerprint), if any."""
    for path in shipped_tables(directory):
        try:
            meta = json.loads(path.read_text()).get("metadata", {})
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("target") == target and meta.get("space_fingerprint") == fingerprint:
            return path
    return None


def table_filename(target: str, space: str) -> str:
    return f"{target}__{space}.json"
