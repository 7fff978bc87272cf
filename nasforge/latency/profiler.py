"""Building lookup tables: export every distinct block to ONNX, time it, write a resumable LUT.

The timing protocol itself lives in the torch-free `nasforge.latency.ort_timing` (shared
with the on-device runner). This module adds what needs torch: ONNX export of blocks and
whole subnets, the PyTorch-CUDA fallback timer (CUDA events) for a `gpu` target whose ORT
lacks the CUDA provider, validation on whole subnets and the calibration fit.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import LatencyError
from nasforge.latency import calibration as cal
from nasforge.latency import ort_timing
from nasforge.latency.backends import (  # noqa: F401  (re-exported: the profiler's ONNX export helpers)
    block_input_shape,
    export_block,
    export_module,
    export_subnet,
    open_backend,
)
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import LatencyTable
from nasforge.latency.model import BlockSum
from nasforge.latency.targets import Target
from nasforge.layers import LayerSpec
from nasforge.space import SearchSpace

Progress = Callable[[int, int], None]  # (done, total): the caller draws


class Timer:
    """Times blocks and subnets for one target with the protocol, through the first backend that runs here.

    `with timer.pinned():` pins this process to `threads` cores and raises its priority for the
    measurements (the protocol), and gives the process its affinity and niceness back afterwards.
    """

    def __init__(
        self, target: Target, threads: int | None = None, warmup: int = 10, repeats: int = 50, *, pin: bool = True
    ) -> None:
        """pin: whether `pinned()` pins at all (tests pass False)."""
        self.target = target
        self.threads = int(threads or target.threads)
        if self.threads < 1:
            raise LatencyError(f"--threads must be a positive integer, got {self.threads}")
        self.warmup, self.repeats = warmup, repeats
        self.pin = pin
        self.impl = open_backend(target, self.threads)
        self.backend, self.provider, self.device = self.impl.name, self.impl.provider, self.impl.device
        self.cores: list[int] | None = None
        self.nice: int | None = None

    @contextmanager
    def pinned(self) -> Iterator[None]:
        if not self.pin or self.backend != "ort":
            yield
            return
        with ort_timing.pinned(self.threads) as (cores, nice):
            self.cores, self.nice = cores, nice
            yield

    def metadata(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "target": self.target.name,
            "device": self.device,
            "ort_version": ort.__version__,
            "backend": self.backend,
            "provider": self.provider,
            "threads": self.threads,
            "cores": self.cores,
            "nice": self.nice,
            "batch": self.target.batch,
            "protocol": ort_timing.protocol(self.threads, self.warmup, self.repeats),
        }

    def block(self, spec: LayerSpec) -> dict[str, float]:
        return self.impl.time_block(spec, self.warmup, self.repeats)  # type: ignore[no-any-return]

    def subnet(self, space: SearchSpace, arch: ArchConfig) -> dict[str, float]:
        return self.impl.time_subnet(space, arch, self.warmup, self.repeats)  # type: ignore[no-any-return]


def open_table(out: Path, space: SearchSpace, timer: Timer) -> LatencyTable:
    """The LUT at `out` to resume (checked against space, target and provider), or a fresh one."""
    meta = {**timer.metadata(), "space": space.name, "space_fingerprint": space.fingerprint}
    if out.exists():
        table = LatencyTable.load(out)
        old = table.metadata
        for field in ("space_fingerprint", "target", "provider", "threads", "batch", "protocol"):
            if old.get(field) != meta[field]:
                raise LatencyError(
                    f"{out} was measured with {field}={old.get(field)!r}, this run has {meta[field]!r}; "
                    f"pass another --out or delete the file"
                )
        meta["build_seconds"] = old.get("build_seconds", 0.0)
        for keep in (
            "validation",
            "calibration",
            "note",
            "validation_samples",
            "validation_under_load",
            "earlier_runs",
        ):
            if keep in old:
                meta[keep] = old[keep]
        table.metadata = meta
        return table
    return LatencyTable(meta, {}, [], str(out))


def build_table(
    space: SearchSpace,
    timer: Timer,
    out: str | Path,
    *,
    on_progress: Progress | None = None,
    note: str | None = None,
    save_every_s: float = 10.0,
) -> LatencyTable:
    """Measure every distinct block of `space` not yet in `out`; rewrite `out` atomically as it goes."""
    out = Path(out)
    table = open_table(out, space, timer)
    if note:
        table.metadata["note"] = note
    specs = distinct_layers(space)
    todo = [s for s in specs if s.key not in table.entries]
    start = last = time.perf_counter()
    base = float(table.metadata.get("build_seconds", 0.0))
    with timer.pinned():
        table.metadata.update(cores=timer.cores, nice=timer.nice)
        for i, spec in enumerate(todo):
            table.entries[spec.key] = timer.block(spec)
            if on_progress is not None:
                on_progress(i + 1, len(todo))
            if time.perf_counter() - last > save_every_s:
                table.metadata["build_seconds"] = round(base + time.perf_counter() - start, 1)
                table.save(out)
                last = time.perf_counter()
    table.metadata["build_seconds"] = round(base + time.perf_counter() - start, 1)
    table.metadata["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    table.metadata["entries"] = len(table.entries)
    table.save(out)
    return table


def validate_table(
    space: SearchSpace,
    table: LatencyTable,
    timer: Timer,
    n: int,
    *,
    seed: int = 0,
    on_progress: Progress | None = None,
    measure: Callable[[ArchConfig], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Measure `n` random whole subnets end to end, fit the calibration, store both in the table's metadata.

    Reports raw (plain block sum) figures, calibrated figures in 5-fold cross-validation
    (each subnet predicted by a calibration fitted without it), and in-sample ones.
    """
    rng = np.random.default_rng(seed)
    archs = list(dict.fromkeys(space.sample_many(rng, n)))
    measure = measure or (lambda a: timer.subnet(space, a))
    measured = np.empty(len(archs))
    start = time.perf_counter()
    with timer.pinned():
        for i, arch in enumerate(archs):
            measured[i] = measure(arch)["median_ms"]
            if on_progress is not None:
                on_progress(i + 1, len(archs))
    sums, blocks = BlockSum(space, lambda spec: table.ms(spec.key))(archs)
    calibration = cal.fit(sums, blocks, measured)
    result = {
        "n": len(archs),
        "seed": seed,
        "raw": cal.metrics(sums, measured),
        "calibrated_cv5": cal.metrics(cal.cross_validated(sums, blocks, measured), measured),
        "calibrated_in_sample": cal.metrics(cal.apply(calibration, sums, blocks), measured),
        "measured_ms_range": [round(float(measured.min()), 4), round(float(measured.max()), 4)],
        "seconds": round(time.perf_counter() - start, 1),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    table.metadata["validation"] = result
    table.metadata["calibration"] = calibration
    table.metadata["validation_samples"] = [
        {"arch": a.key, "sum_ms": round(float(s), 5), "blocks": int(b), "measured_ms": round(float(m), 5)}
        for a, s, b, m in zip(archs, sums, blocks, measured)
    ]
    if table.path:
        table.save(table.path)
    return result
