"""Building lookup tables: export every distinct block to ONNX, time it, write a resumable LUT.

The timing protocol itself lives in the torch-free `nasforge.latency.ort_timing` (shared
with the on-device runner). This module adds what needs torch: ONNX export of blocks and
whole subnets, the PyTorch-CUDA fallback timer (CUDA events) for a `gpu` target whose ORT
lacks the CUDA provider, validation on whole subnets and the calibration fit.
"""

from __future__ import annotations

import datetime as dt
import io
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import LatencyError
from nasforge.latency import calibration as cal
from nasforge.latency import ort_timing
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import LatencyTable
from nasforge.latency.model import BlockSum
from nasforge.latency.targets import Target
from nasforge.layers import LayerSpec
from nasforge.space import SearchSpace

OPSET = 17


def export_module(module: Any, input_shape: tuple[int, ...]) -> bytes:
    """ONNX bytes of a module (classic TorchScript exporter, opset 17, fixed shapes)."""
    import torch

    module = module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.randn(*input_shape),), buf, opset_version=OPSET, dynamo=False,
            input_names=["x"], output_names=["y"],
        )
    return buf.getvalue()


def block_input_shape(spec: LayerSpec, batch: int) -> tuple[int, int, int, int]:
    return (batch, spec.in_channels, spec.input_size, spec.input_size)


def export_block(spec: LayerSpec, batch: int = 1) -> bytes:
    from nasforge.supernet.static import build_layer

    return export_module(build_layer(spec), block_input_shape(spec, batch))


def export_subnet(space: SearchSpace, arch: ArchConfig, batch: int = 1) -> bytes:
    from nasforge.supernet.static import StaticSubnet

    specs = space.layers(arch)
    return export_module(StaticSubnet(specs, arch), block_input_shape(specs[0], batch))


def time_torch_cuda(module: Any, input_shape: tuple[int, ...], warmup: int, repeats: int) -> dict[str, float]:
    """PyTorch CUDA timing with CUDA events (the `gpu` target's fallback when ORT has no CUDA EP)."""
    import torch

    module = module.eval().cuda()
    x = torch.randn(*input_shape, device="cuda")
    times = np.empty(repeats)
    with torch.no_grad():
        for _ in range(1 + warmup):
            module(x)
        torch.cuda.synchronize()
        for i in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            module(x)
            end.record()
            torch.cuda.synchronize()
            times[i] = start.elapsed_time(end)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


class Timer:
    """Times blocks and subnets for one target with the protocol; records which backend it used."""

    def __init__(
        self, target: Target, threads: int | None = None, warmup: int = 10, repeats: int = 50, *, pin: bool = True
    ) -> None:
        """pin: pin this process to `threads` cores and raise its priority (the protocol; tests pass False)."""
        import onnxruntime as ort

        self.target = target
        self.threads = int(threads or target.threads)
        self.warmup, self.repeats = warmup, repeats
        available = set(ort.get_available_providers())
        self.provider = target.provider
        if self.provider in available:
            self.backend = "ort"
        elif self.provider == "TensorrtExecutionProvider" and "CUDAExecutionProvider" in available:
            self.provider, self.backend = "CUDAExecutionProvider", "ort"
        elif target.fallback_backend == "torch-cuda" and _cuda_available():
            self.provider, self.backend = "torch-cuda-events", "torch-cuda"
        else:
            hint = " (or run `nasforge profile --bundle` and profile_bundle.py on the device)"
            raise LatencyError(
                f"target {target.name!r} needs {target.provider}, which this onnxruntime lacks "
                f"(it offers {sorted(available)}){hint}"
            )
        self.cores = ort_timing.pin_threads(self.threads) if self.backend == "ort" and pin else None
        self.nice = ort_timing.raise_priority() if pin else None

    def metadata(self) -> dict[str, Any]:
        import onnxruntime as ort

        device = ort_timing.device_string()
        if self.backend == "torch-cuda":
            import torch

            device = torch.cuda.get_device_name()
        return {
            "target": self.target.name,
            "device": device,
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
        if self.backend == "torch-cuda":
            from nasforge.supernet.static import build_layer

            return time_torch_cuda(build_layer(spec), block_input_shape(spec, self.target.batch), self.warmup, self.repeats)
        return self._ort(export_block(spec, self.target.batch))

    def subnet(self, space: SearchSpace, arch: ArchConfig) -> dict[str, float]:
        if self.backend == "torch-cuda":
            from nasforge.supernet.static import StaticSubnet

            specs = space.layers(arch)
            return time_torch_cuda(StaticSubnet(specs, arch), block_input_shape(specs[0], self.target.batch),
                                   self.warmup, self.repeats)
        return self._ort(export_subnet(space, arch, self.target.batch))

    def _ort(self, model: bytes) -> dict[str, float]:
        return ort_timing.time_model(model, self.provider, self.threads, self.warmup, self.repeats)


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


def _progress(description: str, total: int, enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled, transient=False,
    )


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
        for keep in ("validation", "calibration", "note", "validation_samples", "validation_under_load", "earlier_runs"):
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
    progress: bool = True,
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
    with _progress("profiling blocks", len(todo), progress) as bar:
        task = bar.add_task(f"profiling {len(todo)} of {len(specs)} blocks", total=len(todo))
        for spec in todo:
            table.entries[spec.key] = timer.block(spec)
            bar.advance(task)
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
    progress: bool = True,
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
    with _progress("validating", len(archs), progress) as bar:
        task = bar.add_task(f"measuring {len(archs)} whole subnets", total=len(archs))
        for i, arch in enumerate(archs):
            measured[i] = measure(arch)["median_ms"]
            bar.advance(task)
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
