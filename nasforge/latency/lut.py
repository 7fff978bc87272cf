"""Latency lookup tables on disk: per-block median/p90 timings plus the metadata that made them.

File format (JSON, `format: nasforge-lut/1`):
  metadata: target, device, ort_version, provider, threads, batch, date, protocol, space,
            space_fingerprint, build_seconds, [validation], [calibration], [note]
  entries:  {LayerSpec.key: {median_ms, p90_ms}}
  verify:   [{key, arch, predicted_ms, median_ms, p90_ms}]  (whole subnets timed on the device)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import LatencyError
from nasforge.io import atomic_write_json
from nasforge.latency.ort_timing import LUT_FORMAT
from nasforge.resources import shipped_dir

SHIPPED_DIR = shipped_dir("predictors", "latency")


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
            if not isinstance(value, dict) or not isinstance(value.get("median_ms"), (int, float)):
                raise LatencyError(f"{path}: entry {key!r} has no numeric median_ms")
        return cls(meta, entries, list(data.get("verify", [])), str(path))


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
