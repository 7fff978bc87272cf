"""ONNX export of a static subnet, checked by `onnx.checker` and compared with PyTorch in ONNX Runtime.

The classic TorchScript exporter (`dynamo=False`) is used: it needs no extra packages and handles
every op a static subnet contains (conv, BN folded at export, hard-swish, pooling, linear).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nasforge.errors import ConfigError, NasforgeError
from nasforge.io import atomic_write_bytes

FP32_TOLERANCE = 1e-4
# Opsets below these fail for nasforge's subnets: torch.onnx's classic exporter writes nothing older than 7
# (6's BatchNormalization has no ONNX Runtime kernel), and ORT's per-channel int8 QDQ graphs need 13.
MIN_OPSET = 7
MIN_OPSET_INT8 = 13


class ExportError(NasforgeError):
    """Export failed or the exported model disagrees with PyTorch."""


@dataclass(frozen=True)
class OnnxExportReport:
    path: Path
    opset: int
    input_shape: tuple[int, ...]
    max_abs_diff: float
    dynamic_batch: bool


def opset_range(quantize: str | None = None) -> tuple[int, int]:
    """The opsets an export can be asked for: from `MIN_OPSET` (`MIN_OPSET_INT8` with int8) to the newest that
    both the classic exporter supports (torch warns past it, and fails past ONNX_MAX_OPSET) and onnx knows."""
    import onnx

    high = int(onnx.defs.onnx_opset_version())
    with contextlib.suppress(ImportError, AttributeError, TypeError, ValueError):  # a private module of torch
        from torch.onnx import _constants

        classic = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
        high = min(high, int(classic))
    return (MIN_OPSET_INT8 if quantize else MIN_OPSET), high


def check_opset(opset: int, quantize: str | None = None) -> None:
    """A one-line ConfigError for an opset the export would fail on, before any work."""
    low, high = opset_range(quantize)
    if not low <= opset <= high:
        also = " with --quantize int8" if quantize else ""
        raise ConfigError(f"--opset {opset} is not supported{also}; give an opset from {low} to {high}")


def run_onnx(path: str | Path, inputs: np.ndarray, threads: int = 1) -> np.ndarray:
    """Run a single-input model in ONNX Runtime (CPU provider)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: inputs.astype(np.float32)})[0]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    resolution: int,
    *,
    opset: int = 17,
    dynamic_batch: bool = False,
    check_inputs: torch.Tensor | None = None,
    tolerance: float = FP32_TOLERANCE,
) -> OnnxExportReport:
    """Export `model` (eval mode, CPU, fp32), check the graph, and compare ORT with PyTorch.

    `check_inputs` should be real images (normalised, at `resolution`); random inputs are used if absent.
    Raises `ExportError` if the largest absolute difference exceeds `tolerance`.
    """
    import onnx

    check_opset(opset)
    path = Path(path)
    model = model.eval().cpu().float()
    example = torch.zeros(1, 3, resolution, resolution)
    buffer = io.BytesIO()
    dynamic_axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the classic exporter is deliberate (see module doc)
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes=dynamic_axes,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX graph failed onnx.checker: {str(exc).splitlines()[0]}") from None
    atomic_write_bytes(path, buffer.getvalue())

    if check_inputs is None:
        gen = torch.Generator().manual_seed(0)
        check_inputs = torch.randn(4 if dynamic_batch else 1, 3, resolution, resolution, generator=gen)
    if not dynamic_batch:
        check_inputs = check_inputs[:1]
    with torch.no_grad():
        expected = model(check_inputs.float()).numpy()
    got = run_onnx(path, check_inputs.numpy())
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= tolerance:
        raise ExportError(f"ONNX Runtime output differs from PyTorch by {diff:.2e} (> {tolerance:.0e})")
    return OnnxExportReport(path, opset, tuple(check_inputs.shape), diff, dynamic_batch)
