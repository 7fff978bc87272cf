"""Append-only measurement store: one JSON line per measured subnet, keyed by its canonical arch key.

The first line is a header naming the space (fingerprint), the supernet checkpoint (sha256), the
dataset and the split; a store is never mixed across them. Each batch of measurements is appended
with write + flush + fsync, so a crash loses at most the batch in flight. Re-running a build
therefore measures only what is missing.

Several processes may share one store (two `build-predictor` runs on one `--store`): every write
happens under an exclusive `flock` on the store file itself, at the current end of the file, after
reading what the others appended; nothing another process wrote is ever truncated. A torn last line
(a writer killed mid-write: bytes after the last newline) is ignored on read and, under the lock,
cut off before the next append; it can only be a dead writer's, since live writers hold the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import PredictorError, PredictorMismatchError
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
        self._read_bytes = 0  # bytes of the file consumed so far: the header and every complete line
        self._read_lines = 0  # lines consumed so far (the header is line 1), for error messages
        if self.path.is_file() and self.path.stat().st_size > 0:
            self.refresh()  # read-only is enough for a store that already holds what is asked
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PredictorError(
                f"{self.path.parent}: cannot create the measurement store's folder ({exc.strerror})"
            ) from None
        with self._locked(write=True, create=True) as fh:
            if os.fstat(fh.fileno()).st_size == 0:  # new (or created by a process killed before its header)
                fh.write((json.dumps(self.header) + "\n").encode())
                fh.flush()
                os.fsync(fh.fileno())
            self._refresh(fh)

    # ------------------------------------------------------------------ locking and reading
    @contextlib.contextmanager
    def _locked(self, *, write: bool, create: bool = False) -> Iterator[BinaryIO]:
        """The store file under `flock`: exclusive to write, shared to read (released on close)."""
        import fcntl

        flags = (os.O_RDWR if write else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0) | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            what = "write to" if write else "read"
            raise PredictorError(f"{self.path}: cannot {what} measurement store ({exc.strerror})") from None
        with os.fdopen(fd, "r+b" if write else "rb") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            except OSError as exc:  # e.g. a network file system without locks: sharing would be unsafe
                raise PredictorError(f"{self.path}: cannot lock measurement store ({exc.strerror})") from None
            yield fh

    def refresh(self) -> None:
        """Read the records other processes appended since this store last looked."""
        with self._locked(write=False) as fh:
            self._refresh(fh)

    def _refresh(self, fh: BinaryIO) -> None:
        """Parse the complete lines after `_read_bytes` (caller holds the lock); a torn tail is left unread."""
        fh.seek(self._read_bytes)
        data = fh.read()
        end = data.rfind(b"\n") + 1  # complete lines only; bytes after the last newline are a torn write
        offset = self._read_bytes
        lines = data[:end].split(b"\n")[:-1]
        if offset == 0:
            if not lines:
                raise PredictorError(f"{self.path}: measurement store has no header line; delete it to start over")
            self._check_header(lines[0])
            offset += len(lines[0]) + 1
            lines = lines[1:]
            self._read_lines = 1
        number = self._read_lines
        for line in lines:
            number += 1
            offset += len(line) + 1
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = rec["key"]
                float(rec["accuracy"])
                if not isinstance(key, str):
                    raise TypeError
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
                raise PredictorError(f"{self.path}: line {number} is corrupt; fix or delete that line") from None
            self.records.setdefault(key, rec)  # the first measurement of an arch wins (as for duplicates)
        self._read_lines = number
        self._read_bytes = offset

    def _check_header(self, line: bytes) -> None:
        try:
            header = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
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

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, arch: ArchConfig) -> bool:
        return self.space.canonical(arch).key in self.records

    def missing(self, archs: Sequence[ArchConfig]) -> list[ArchConfig]:
        """The archs not measured yet, by this or any other process (canonical, duplicates removed, order kept)."""
        self.refresh()
        return self._missing(archs)

    def _missing(self, archs: Sequence[ArchConfig]) -> list[ArchConfig]:
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
    def append(self, archs: Sequence[ArchConfig], accuracies: np.ndarray, **extra: Any) -> int:
        """Persist one batch durably (write, flush, fsync) before it counts as measured.

        Under the lock: read what other processes appended, cut a dead writer's torn last line, and
        append only the archs still absent (an arch another process stored meanwhile keeps its first
        measurement). Returns how many records were written.
        """
        accuracies = np.asarray(accuracies, dtype=np.float64).reshape(-1)
        if len(accuracies) != len(archs):
            raise PredictorError(f"measure returned {len(accuracies)} accuracies for {len(archs)} archs")
        if not np.all(np.isfinite(accuracies)):
            raise PredictorError("measure returned NaN or infinite accuracies")
        now = time.time()
        recs: dict[str, dict[str, Any]] = {}
        for arch, acc in zip(archs, accuracies):
            arch = self.space.canonical(arch)
            recs.setdefault(arch.key, {"key": arch.key, "arch": arch.to_dict(), "accuracy": float(acc), "time": now,
                                       **extra})
        with self._locked(write=True) as fh:
            self._refresh(fh)
            new = [r for k, r in recs.items() if k not in self.records]
            if not new:
                return 0
            payload = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in new).encode()
            # Everything after `_read_bytes` is a torn line: complete lines were just read, and every
            # live writer holds this lock while it writes.
            fh.truncate(self._read_bytes)
            fh.seek(self._read_bytes)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
            self._refresh(fh)
        return len(new)

    def measure(
        self,
        archs: Sequence[ArchConfig],
        measure: Measure,
        *,
        batch_size: int = 64,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, int]:
        """Accuracies of `archs`, measuring (in batches) only those not stored yet.

        Before each batch the store is re-read, so archs another process measured meanwhile are
        skipped. Returns the accuracies in the order of `archs` and how many archs this call measured.
        `progress` is advanced by every arch that became stored (measured here or elsewhere).
        """
        todo = self.missing(archs)
        measured = 0
        batch_size = max(1, batch_size)
        while todo:
            batch, todo = todo[:batch_size], todo[batch_size:]
            self.append(batch, measure(batch))
            measured += len(batch)
            before = len(todo)
            todo = self._missing(todo)  # `append` has just re-read the store under its lock
            if progress is not None:
                progress(len(batch) + before - len(todo))
        return self.accuracies(archs), measured
