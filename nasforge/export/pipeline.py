"""From a trained run (or a fine-tuned standalone checkpoint) to a shipped model plus its sidecar JSON.

The sidecar says everything a deployment needs and where each number came from: input shape and
normalisation, class names, MACs/params, accuracy (measured on the test split here, labelled) and
latency (predicted from the target's table or its roofline estimate, labelled so; and, when the table is this
machine's and the target this CPU, the exported model timed here: `nasforge.export.latency`).

BN statistics are recalibrated for the subnet on training images (`bn="recalibrate"`, the default) or taken
as the supernet stores them (`bn="stored"`). A run without a dataset (imported from Once-for-All, no
--data-dir) exports with stored statistics: ONNX Runtime is checked against PyTorch on random inputs and the
sidecar says why accuracy was not measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nasforge.arch import ArchConfig
from nasforge.data import DataSource, Normalization
from nasforge.errors import ConfigError
from nasforge.export.latency import LatencyEntry, latency_entry, time_exported
from nasforge.export.onnx import OnnxExportReport, check_opset, export_onnx
from nasforge.io import atomic_write_json
from nasforge.space import SearchSpace
from nasforge.supernet.standalone import save_standalone
from nasforge.supernet.static import StaticSubnet

if TYPE_CHECKING:
    from nasforge.latency.model import LatencyModel


@dataclass
class PreparedSubnet:
    """A static subnet ready to ship, with the data and provenance its sidecar needs."""

    subnet: StaticSubnet
    space: SearchSpace
    arch: ArchConfig
    data: DataSource | None  # None: no dataset (nothing measured; `normalization` and `no_data` say the rest)
    provenance: dict[str, Any] = field(default_factory=dict)
    normalization: Normalization | None = None  # without data: what the network expects (the run's record)
    preprocess: str = ""  # without data: the evaluation protocol the run records
    no_data: str = ""  # without data: why


BN_CHOICES = ("recalibrate", "stored")


def prepare_from_run(run: Any, arch: ArchConfig, *, calib_images: int = 2000, bn: str = "recalibrate"
                     ) -> PreparedSubnet:
    """Extract `arch` from a loaded run, BN statistics recalibrated for it or as stored (supernet left unchanged)."""
    from nasforge.train.runs import extract_recalibrated

    if bn not in BN_CHOICES:
        raise ConfigError(f"--bn must be one of {', '.join(BN_CHOICES)}, got {bn!r}")
    arch = run.space.validate(arch)
    provenance: dict[str, Any] = {"run": str(run.path), "supernet_sha256": run.checkpoint_sha256, "bn": bn}
    if bn == "recalibrate":
        subnet = extract_recalibrated(run, arch, calib_images=calib_images)
        provenance["bn_calibration_images"] = calib_images
        return PreparedSubnet(subnet.cpu().eval(), run.space, arch, run.data().to("cpu"), provenance)
    subnet = run.supernet.extract(arch)
    reason = run.no_data_reason()
    if reason is None:
        return PreparedSubnet(subnet.cpu().eval(), run.space, arch, run.data().to("cpu"), provenance)
    record = run.data_record() or {}
    return PreparedSubnet(subnet.cpu().eval(), run.space, arch, None, provenance, run.normalization(),
                          str(record.get("eval_preprocess", "")), reason)


def normalized_images(data: DataSource, split: str, resolution: int, limit: int | None = None) -> np.ndarray:
    """Un-augmented, normalised float images of a split at `resolution`, as the exported model expects them."""
    chunks = [x.float().cpu() for x, _ in data.eval_batches(split, batch_size=512, resolution=resolution, limit=limit)]
    return torch.cat(chunks).numpy()


def split_labels(data: DataSource, split: str, limit: int | None = None) -> np.ndarray:
    return data.labels(split, limit).cpu().numpy()


@torch.no_grad()
def torch_accuracy(model: StaticSubnet, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(torch.from_numpy(images[i : i + batch_size]))
        correct += int((logits.argmax(1).numpy() == labels[i : i + batch_size]).sum())
    return 100.0 * correct / max(1, len(images))


@dataclass
class ExportResult:
    model_path: Path
    sidecar_path: Path
    sidecar: dict[str, Any]
    onnx: OnnxExportReport | None = None


@dataclass
class _Evidence:
    """What the sidecar says about accuracy and inputs: measured on the test split, or why not."""

    norm: Any
    accuracy: dict[str, Any]
    class_names: list[str] | None
    preprocess: str
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None


def _evidence(prepared: PreparedSubnet, test_limit: int | None, quantize: str | None) -> _Evidence:
    data, arch = prepared.data, prepared.arch
    if data is None:
        if quantize:
            raise ConfigError(f"--quantize int8 needs calibration images: {prepared.no_data}")
        if prepared.normalization is None:
            raise ConfigError(f"no dataset and no recorded normalisation to export with: {prepared.no_data}")
        return _Evidence(prepared.normalization,
                         {"test_top1": None, "test_images": 0, "source": "not measured", "reason": prepared.no_data},
                         None, prepared.preprocess or "resize to the input resolution")
    test_x = normalized_images(data, "test", arch.resolution, test_limit)
    test_y = split_labels(data, "test", test_limit)
    accuracy = {"test_top1": torch_accuracy(prepared.subnet, test_x, test_y), "test_images": int(len(test_y)),
                "source": "measured"}
    return _Evidence(data.normalization, accuracy, list(data.class_names),
                     data.describe().get("eval_preprocess", "resize to the input resolution"), test_x, test_y)


def _sidecar(prepared: PreparedSubnet, ev: _Evidence, fmt: str, dynamic_batch: bool, latency: LatencyEntry | None
             ) -> dict[str, Any]:
    space, arch = prepared.space, prepared.arch
    sidecar: dict[str, Any] = {
        "format": fmt,
        "arch": arch.to_dict(),
        "space": {"name": space.name, "fingerprint": space.fingerprint},
        "input": {
            "name": "input",
            "shape": ["batch" if dynamic_batch else 1, 3, arch.resolution, arch.resolution],
            "resolution": arch.resolution,
            "layout": "NCHW",
            "dtype": "float32",
            "scale": "x / 255, then (x - mean) / std per channel",
            "mean": list(ev.norm.mean),
            "std": list(ev.norm.std),
            "normalization": ev.norm.kind,
            "preprocess": ev.preprocess,
        },
        "class_names": ev.class_names,
        "macs": space.macs(arch),
        "params": space.params(arch),
        "accuracy": ev.accuracy,
        "latency": None if latency is None else latency.to_dict(),
        "provenance": prepared.provenance,
    }
    for form, value in space.foreign_forms(arch).items():
        sidecar[f"{form}_arch"] = value  # e.g. ofa_arch: Once-for-All's {ks, e, d, r}
    return sidecar


def _int8(prepared: PreparedSubnet, ev: _Evidence, out: Path, calib_images: int) -> dict[str, Any]:
    """The int8 twin of `out`, with fp32 and int8 test accuracy in ONNX Runtime."""
    from nasforge.export.quantize import onnx_accuracy, quantize_int8

    assert prepared.data is not None and ev.test_x is not None and ev.test_y is not None
    int8_path = out.with_name(out.stem + ".int8.onnx")
    calib = prepared.data.calibration_batches(calib_images, batch_size=256, resolution=prepared.arch.resolution)
    calib_x = torch.cat([x.float().cpu() for x in calib]).numpy()
    quantize_int8(out, int8_path, calib_x)
    return {
        "path": str(int8_path),
        "calibration_images": int(len(calib_x)),
        "fp32_test_top1": onnx_accuracy(out, ev.test_x, ev.test_y),
        "int8_test_top1": onnx_accuracy(int8_path, ev.test_x, ev.test_y),
        "source": "measured",
    }


EXPORT_FORMATS = ("onnx", "torch", "ofa")


def check_export_options(fmt: str, *, opset: int = 17, quantize: str | None = None) -> None:
    """Refuse a format, opset or quantisation the export would fail on, before any run is loaded (one line)."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize supports only int8, got {quantize!r}")
    if quantize and fmt != "onnx":
        raise ConfigError("--quantize int8 needs --format onnx")
    if fmt == "onnx":
        check_opset(opset, quantize)


def export_prepared(
    prepared: PreparedSubnet,
    out: str | Path,
    *,
    fmt: str = "onnx",
    opset: int = 17,
    dynamic_batch: bool = False,
    quantize: str | None = None,
    calib_images: int = 256,
    target: str | None = "cpu",
    test_limit: int | None = None,
    time_latency: bool = True,
    latency: LatencyModel | None = None,
) -> ExportResult:
    """Write the model (ONNX or standalone torch) and `<out>.json`; measure accuracy on the test split.

    time_latency: time the ONNX model here when the target's table is this machine's (`time_exported`).
    latency: `target`'s latency model when the caller resolved it already (else it is loaded once here).
    """
    if fmt not in ("onnx", "torch"):
        raise ConfigError(f"--format must be onnx or torch, got {fmt!r}")
    check_export_options(fmt, opset=opset, quantize=quantize)
    out = Path(out)
    ev = _evidence(prepared, test_limit, quantize)
    if target and latency is None:
        from nasforge.latency import load_latency_model

        latency = load_latency_model(target, prepared.space)
    entry = latency_entry(prepared.space, prepared.arch, target, latency)
    sidecar = _sidecar(prepared, ev, fmt, dynamic_batch, entry)
    report = None
    if fmt == "torch":
        save_standalone(out, prepared.subnet, prepared.space, {"sidecar": sidecar})
    else:
        checks = None if ev.test_x is None else torch.from_numpy(ev.test_x[: 8 if dynamic_batch else 1])
        report = export_onnx(prepared.subnet, out, prepared.arch.resolution, opset=opset,
                             dynamic_batch=dynamic_batch, check_inputs=checks)
        import onnxruntime

        sidecar["onnx"] = {"opset": opset, "max_abs_diff_vs_torch": report.max_abs_diff,
                           "check_inputs": "random" if checks is None else "test images",
                           "onnxruntime": onnxruntime.__version__}
        if entry is not None and time_latency:
            sidecar["latency"] = time_exported(entry, out, prepared.space, latency).to_dict()
        if quantize == "int8":
            sidecar["int8"] = _int8(prepared, ev, out, calib_images)
    sidecar_path = out.with_name(out.name + ".json")
    atomic_write_json(sidecar_path, sidecar)
    return ExportResult(out, sidecar_path, sidecar, report)
