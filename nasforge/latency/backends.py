"""Timing backends: what actually runs a block or a subnet and times it, registered in `TIMING_BACKENDS`.

`ort` times ONNX Runtime sessions with the protocol of `nasforge.latency.ort_timing` (the same code the
on-device runner uses); `torch-cuda` times PyTorch modules with CUDA events (a `gpu` target whose
onnxruntime lacks the CUDA provider). A target names the backends it accepts, in order of preference
(`Target.backends`); `open_backend` takes the first one this machine can run and says why none can.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, ClassVar, Protocol

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import LatencyError
from nasforge.latency import ort_timing
from nasforge.latency.targets import Target
from nasforge.layers import LayerSpec, build_layer
from nasforge.space import SearchSpace

OPSET = 17


class BackendUnavailable(LatencyError):
    """This machine cannot run the backend for the target (the reason is the message)."""


class TimingBackend(Protocol):
    """Times whole models for one target; `open` raises `BackendUnavailable` when it cannot run here."""

    name: ClassVar[str]
    provider: str  # what runs: an ORT execution provider, or "torch-cuda-events"
    device: str  # the machine, in words (CPU model, GPU name)

    def time_block(self, spec: LayerSpec, warmup: int, repeats: int) -> dict[str, float]: ...

    def time_subnet(self, space: SearchSpace, arch: ArchConfig, warmup: int, repeats: int) -> dict[str, float]: ...

    def time_overhead(self, warmup: int, repeats: int) -> dict[str, float]: ...

    def time_blocks(
        self, specs: list[LayerSpec], warmup: int, repeats: int, reference: LayerSpec | None = None
    ) -> list[dict[str, float]]:
        """Blocks timed as one group; with a `reference`, each timing carries `reference_ms` (or none, if the
        backend times models alone)."""
        ...

    def time_subnets(
        self, space: SearchSpace, archs: list[ArchConfig], warmup: int, repeats: int,
        reference: ArchConfig | None = None,
    ) -> list[dict[str, float]]: ...


from nasforge.latency.registry import TIMING_BACKENDS  # noqa: E402  (the registry lives apart, torch-free)


def open_backend(target: Target, threads: int) -> Any:
    """The first of `target.backends` that runs on this machine; one line with every reason otherwise."""
    reasons = []
    for name in target.backends:
        try:
            return TIMING_BACKENDS.get(name).open(target, threads)
        except BackendUnavailable as exc:
            reasons.append(f"{name}: {exc}")
    raise LatencyError(
        f"target {target.name!r} cannot be timed here ({'; '.join(reasons)}); "
        "run `nasforge profile --bundle` and time the bundle on the device"
    )


# ---------------------------------------------------------------------------- ONNX export of blocks
def export_module(module: Any, input_shape: tuple[int, ...], dtype: str = "float32") -> bytes:
    """ONNX bytes of a module (classic TorchScript exporter, opset 17, fixed shapes); integer inputs (token
    ids) are exported with zeros, a valid id of any vocabulary."""
    import torch

    module = module.eval()
    buf = io.BytesIO()
    example = torch.randn(*input_shape) if dtype.startswith("float") else torch.zeros(
        *input_shape, dtype=getattr(torch, dtype))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buf,
            opset_version=OPSET,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
        )
    return buf.getvalue()


def block_input_shape(spec: LayerSpec, batch: int) -> tuple[int, ...]:
    """A batch of the block's input: (batch, C, H, W) for an image block, (batch, tokens, dim), ..."""
    return (batch, *spec.input_shape)


def export_block(spec: LayerSpec, batch: int = 1) -> bytes:
    return export_module(build_layer(spec), block_input_shape(spec, batch), spec.block.input_dtype(spec))


def export_subnet(space: SearchSpace, arch: ArchConfig, batch: int = 1) -> bytes:
    from nasforge.supernet.static import StaticSubnet

    specs = space.layers(arch)
    return export_module(StaticSubnet(specs, arch), block_input_shape(specs[0], batch),
                         specs[0].block.input_dtype(specs[0]))


# ---------------------------------------------------------------------------- the backends
@TIMING_BACKENDS.register("ort", summary="ONNX Runtime sessions, the protocol of nasforge.latency.ort_timing")
class OrtBackend:
    name = "ort"

    def __init__(self, target: Target, threads: int, provider: str) -> None:
        self.target, self.threads, self.provider = target, threads, provider
        self.device = ort_timing.device_string()
        self._cache: dict[tuple[str, ...], bytes] = {}

    @classmethod
    def open(cls, target: Target, threads: int) -> OrtBackend:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        provider = target.provider
        if (
            provider not in available
            and provider == "TensorrtExecutionProvider"
            and "CUDAExecutionProvider" in available
        ):
            provider = "CUDAExecutionProvider"
        if provider not in available:
            raise BackendUnavailable(f"this onnxruntime lacks {target.provider} (it offers {sorted(available)})")
        return cls(target, threads, provider)

    def time_block(self, spec: LayerSpec, warmup: int, repeats: int) -> dict[str, float]:
        return self._time(("block", spec.key), lambda: export_block(spec, self.target.batch), warmup, repeats)

    def time_subnet(self, space: SearchSpace, arch: ArchConfig, warmup: int, repeats: int) -> dict[str, float]:
        export = lambda: export_subnet(space, arch, self.target.batch)  # noqa: E731
        return self._time(("subnet", space.fingerprint, arch.key), export, warmup, repeats)

    def time_overhead(self, warmup: int, repeats: int) -> dict[str, float]:
        """The fixed per-run cost: a one-op model on a 1-element tensor."""
        return self._time(("null",), ort_timing.null_model, warmup, repeats)

    def time_blocks(
        self, specs: list[LayerSpec], warmup: int, repeats: int, reference: LayerSpec | None = None
    ) -> list[dict[str, float]]:
        """Several blocks timed interleaved (`ort_timing.time_interleaved`), beside `reference` if given."""
        models = [self._block(s) for s in specs]
        ref = None if reference is None else self._block(reference)
        return ort_timing.time_models(models, self.provider, self.threads, warmup, repeats, ref)

    def time_subnets(
        self, space: SearchSpace, archs: list[ArchConfig], warmup: int, repeats: int,
        reference: ArchConfig | None = None,
    ) -> list[dict[str, float]]:
        """Several whole subnets timed interleaved (`ort_timing.time_interleaved`), beside `reference` if given."""
        models = [self._subnet(space, a) for a in archs]
        ref = None if reference is None else self._subnet(space, reference)
        return ort_timing.time_models(
            models, self.provider, self.threads, warmup, repeats, ref, ort_timing.SUBNET_MIN_TIMED_MS
        )

    def _block(self, spec: LayerSpec) -> bytes:
        return self._model(("block", spec.key), lambda: export_block(spec, self.target.batch))

    def _subnet(self, space: SearchSpace, arch: ArchConfig) -> bytes:
        key = ("subnet", space.fingerprint, arch.key)
        return self._model(key, lambda: export_subnet(space, arch, self.target.batch))

    def _model(self, key: tuple[str, ...], export: Any) -> bytes:
        """The exported model, kept for the re-measurements of a group and for the speed reference that every
        group reuses (a bounded cache, least recently used out first)."""
        model = self._cache.pop(key, None)
        if model is None:
            if len(self._cache) >= 64:
                self._cache.pop(next(iter(self._cache)))
            model = export()
        self._cache[key] = model
        return model

    def _time(self, key: tuple[str, ...], export: Any, warmup: int, repeats: int) -> dict[str, float]:
        return ort_timing.time_model(self._model(key, export), self.provider, self.threads, warmup, repeats)


@TIMING_BACKENDS.register("torch-cuda", summary="PyTorch on CUDA, timed with CUDA events")
class TorchCudaBackend:
    name = "torch-cuda"
    provider = "torch-cuda-events"

    def __init__(self, target: Target) -> None:
        import torch

        self.target = target
        self.device = torch.cuda.get_device_name()

    @classmethod
    def open(cls, target: Target, threads: int) -> TorchCudaBackend:
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA device is available to PyTorch")
        return cls(target)

    def time_block(self, spec: LayerSpec, warmup: int, repeats: int) -> dict[str, float]:
        return time_torch_cuda(build_layer(spec), block_input_shape(spec, self.target.batch), warmup, repeats)

    def time_overhead(self, warmup: int, repeats: int) -> dict[str, float]:
        """CUDA events time the device work only: no host-side per-run cost to subtract."""
        return {"median_ms": 0.0, "p90_ms": 0.0, "spread": 0.0, "rounds_spread": 0.0}

    def time_blocks(
        self, specs: list[LayerSpec], warmup: int, repeats: int, reference: LayerSpec | None = None
    ) -> list[dict[str, float]]:
        """One model at a time with CUDA events: no reference (device time does not share a CPU's drift)."""
        return [self.time_block(s, warmup, repeats) for s in specs]

    def time_subnets(
        self, space: SearchSpace, archs: list[ArchConfig], warmup: int, repeats: int,
        reference: ArchConfig | None = None,
    ) -> list[dict[str, float]]:
        return [self.time_subnet(space, a, warmup, repeats) for a in archs]

    def time_subnet(self, space: SearchSpace, arch: ArchConfig, warmup: int, repeats: int) -> dict[str, float]:
        from nasforge.supernet.static import StaticSubnet

        specs = space.layers(arch)
        return time_torch_cuda(
            StaticSubnet(specs, arch), block_input_shape(specs[0], self.target.batch), warmup, repeats
        )


def time_torch_cuda(module: Any, input_shape: tuple[int, ...], warmup: int, repeats: int) -> dict[str, float]:
    """Median and p90 of `repeats` forward passes, each between two CUDA events."""
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
    return ort_timing.summarise(times).to_dict()  # the same statistic and spreads as the ORT protocol (one round)
