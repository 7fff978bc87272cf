"""Append-only measurement store: one JSON line per measured subnet, keyed by its canonical arch key.

The first line is a header naming the space (fingerprint), the supernet checkpoint (sha256), the
dataset and the split; a store is never mixed across them. Each batch of measurements is appended
with write + flush + fsync, so a crash loses at most the batch in flight; a torn last line (a crash
mid-write) is ignored on read and cut off before the next append. Re-running a build therefore
measures only what is missing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import PredictorError, PredictorMismatchError
from nasforge.io import atomic_write_text
from nasforge.space import SearchSpace

STORE_FORMAT = "nasforge-measurements"
STORE_VERSION = 1

Measure = Callable[[list[ArchConfig]], np.ndarray]
Progress = Callable[[int], None]


class MeasurementStore:
    """Measured accuracies of one supernet on one split, persisted as JSON lines."""

    def __init__(
        self,
        path: str | Path,
        space: SearchSpace,
        *,
        checkpoint_sha256: str,
        dataset: str,
        split: str = "val",
        protocol: dict[str, Any] | None = None,
    ) -> None:
        """`protocol`: how accuracies were measured (e.g. BN calibration images); never mixed either."""
        self.path = Path(path)
        self.space = space
        self.header = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "space": space.name,
            "space_fingerprint": space.fingerprint,
            "checkpoint_sha256": checkpoint_sha256,
            "dataset": dataset,
            "split": split,
            "protocol": dict(protocol or {}),
        }
        self.records: dict[str, dict[str, Any]] = {}
        self._valid_bytes = 0  # length of the file up to its last complete line
        if self.path.exists():
            self._read()
        else:
            atomic_write_text(self.path, json.dumps(self.header) + "\n")
            self._valid_bytes = self.path.stat().st_size

    # ------------------------------------------------------------------ reading
    def _read(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # `tail` is b"" when the file ends with a newline
        if not complete:
            raise PredictorError(f"{self.path}: measurement store has no header line; delete it to start over")
        try:
            header = json.loads(complete[0])
        except json.JSONDecodeError:
            raise PredictorError(f"{self.path}: not a nasforge measurement store (bad header)") from None
        if not isinstance(header, dict) or header.get("format") != STORE_FORMAT:
            raise PredictorError(f"{self.path}: not a nasforge measurement store")
        header.setdefault("protocol", {})
        for field in ("space_fingerprint", "checkpoint_sha256", "dataset", "split", "protocol"):
            if header.get(field) != self.header[field]:
                raise PredictorMismatchError(
                    f"{self.path}: measurements are for {field} {header.get(field)!r}, not {self.header[field]!r}; "
                    "use another store (--store)"
                )
        offset = len(complete[0]) + 1
        for number, line in enumerate(complete[1:], start=2):
            offset += len(line) + 1
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = rec["key"]
                float(rec["accuracy"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise PredictorError(f"{self.path}: line {number} is corrupt; fix or delete that line") from None
            self.records[key] = rec
        self._valid_bytes = offset
        del tail  # a torn last line (no newline yet) is dropped; `append` truncates it away

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, arch: ArchConfig) -> bool:
        return self.space.canonical(arch).key in self.records

    def missing(self, archs: Sequence[ArchConfig]) -> list[ArchConfig]:
        """The archs not measured yet (canonical, duplicates removed, order kept)."""
        out: dict[str, ArchConfig] = {}
        for arch in archs:
            arch = self.space.canonical(arch)
            if arch.key not in self.records:
                out.setdefault(arch.key, arch)
        return list(out.values())

    def accuracies(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        keys = [self.space.canonical(a).key for a in archs]
        absent = [k for k in keys if k not in self.records]
        if absent:
            raise PredictorError(f"{len(absent)} arch(s) not measured yet, e.g. {absent[0]}")
        return np.array([float(self.records[k]["accuracy"]) for k in keys], dtype=np.float64)

    def all(self) -> tuple[list[ArchConfig], np.ndarray]:
        """Every measured arch and its accuracy, in the order measured."""
        archs = [self.space.canonical(ArchConfig.from_dict(r["arch"])) for r in self.records.values()]
        return archs, np.array([float(r["accuracy"]) for r in self.records.values()], dtype=np.float64)

    # ------------------------------------------------------------------ writing
    def append(self, archs: Sequence[ArchConfig], accuracies: np.ndarray, **extra: Any) -> None:
        """Persist one batch durably (write, flush, fsync) before it counts as measured."""
        accuracies = np.asarray(accuracies, dtype=np.float64).reshape(-1)
        if len(accuracies) != len(archs):
            raise PredictorError(f"measure returned {len(accuracies)} accuracies for {len(archs)} archs")
        if not np.all(np.isfinite(accuracies)):
            raise PredictorError("measure returned NaN or infinite accuracies")
        now = time.time()
        recs = []
        for arch, acc in zip(archs, accuracies):
            arch = self.space.canonical(arch)
            recs.append({"key": arch.key, "arch": arch.to_dict(), "accuracy": float(acc), "time": now, **extra})
        payload = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs).encode()
        with open(self.path, "r+b") as fh:
            fh.truncate(self._valid_bytes)  # drop a torn line left by an earlier crash
            fh.seek(self._valid_bytes)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        self._valid_bytes += len(payload)
        for r in recs:
            self.records[r["key"]] = r

    def measure(
        self,
        archs: Sequence[ArchConfig],
        measure: Measure,
        *,
        batch_size: int = 64,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, int]:
        """Accuracies of `archs`, measuring (in batches) only those not stored yet.

        Returns the accuracies in the order of `archs` and how many archs were newly measured.
        """
        todo = self.missing(archs)
        for start in range(0, len(todo), max(1, batch_size)):
            batch = todo[start : start + batch_size]
            self.append(batch, measure(batch))
            if progress is not None:
                progress(len(batch))
        return self.accuracies(archs), len(todo)
