"""Post-training static int8 quantisation with ONNX Runtime (QDQ format, per-channel weights)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from nasforge.io import atomic_write_bytes


class _ArrayReader:
    """Feeds calibration batches to ORT's calibrator (the CalibrationDataReader protocol)."""

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int) -> None:
        self._batches = iter(
            [{input_name: images[i : i + batch_size].astype(np.float32)} for i in range(0, len(images), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration_images: np.ndarray) -> Path:
    """Quantise an fp32 ONNX model with activations calibrated (min-max) on `calibration_images` (N,3,H,W).

    A model exported without a dynamic batch axis is calibrated one image at a time.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    model = onnx.load(str(fp32_path))
    input_name = model.graph.input[0].name
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch = 32 if dim0.dim_param else max(1, dim0.dim_value)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(out),
            _ArrayReader(input_name, calibration_images, batch),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        atomic_write_bytes(int8_path, out.read_bytes())
    return int8_path


def onnx_accuracy(path: str | Path, images: np.ndarray, labels: np.ndarray, threads: int = 2) -> float:
    """Top-1 accuracy (%) of an ONNX classifier in ONNX Runtime; batches follow the model's batch axis."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch = 256 if dim0.dim_param else max(1, dim0.dim_value)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    correct = 0
    for i in range(0, len(images), batch):
        logits = session.run(None, {name: images[i : i + batch].astype(np.float32)})[0]
        correct += int((logits.argmax(1) == labels[i : i + batch]).sum())
    return 100.0 * correct / max(1, len(images))
