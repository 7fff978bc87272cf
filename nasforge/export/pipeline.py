"""From a trained run (or a fine-tuned standalone checkpoint) to a shipped model plus its sidecar JSON.

The sidecar says everything a deployment needs and where each number came from: input shape and
normalisation, class names, MACs/params, accuracy (measured on the test split here, labelled) and
latency (from the target's table or its roofline estimate, labelled with its source).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasforge.arch import ArchConfig
from nasforge.data import DataSource
from nasforge.errors import ConfigError
from nasforge.export.onnx import OnnxExportReport, export_onnx
from nasforge.io import atomic_write_json
from nasforge.space import SearchSpace
from nasforge.supernet.standalone import save_standalone
from nasforge.supernet.static import StaticSubnet


@dataclass
class PreparedSubnet:
    """A static subnet ready to ship, with the data and provenance its sidecar needs."""

    subnet: StaticSubnet
    space: SearchSpace
    arch: ArchConfig
    data: DataSource
    provenance: dict[str, Any] = field(default_factory=dict)


def prepare_from_run(run: Any, arch: ArchConfig, *, calib_images: int = 2000) -> PreparedSubnet:
    """Extract `arch` from a loaded run with BN statistics recalibrated for it (supernet left unchanged)."""
    from nasforge.train.runs import extract_recalibrated

    arch = run.space.validate(arch)
    subnet = extract_recalibrated(run, arch, calib_images=calib_images)
    provenance = {"run": str(run.path), "supernet_sha256": run.checkpoint_sha256, "bn_calibration_images": calib_images}
    return PreparedSubnet(subnet.cpu().eval(), run.space, arch, run.data().to("cpu"), provenance)


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


def latency_entry(space: SearchSpace, arch: ArchConfig, target: str | None) -> dict[str, Any] | None:
    """Latency on `target` with its source, or None without a target.

    source: "measured" (a table of this machine, or of the device a remote target names), "measured on
    <CPU>" (a `cpu` table from another machine: not this machine's latency) or "estimated" (roofline);
    table / device / calibrated say which table and whether a whole-subnet calibration was applied.
    """
    if not target:
        return None
    from nasforge.latency import load_latency_model

    model = load_latency_model(target, space)
    entry = {"target": target, "ms": float(model.predict([arch])[0]), "source": model.source}
    table = getattr(model, "table", None)
    if table is not None:
        entry.update(
            table=table.path,
            device=table.machine.get("cpu"),
            calibrated=bool(getattr(model, "calibration", None)),
        )
    return entry


@dataclass
class ExportResult:
    model_path: Path
    sidecar_path: Path
    sidecar: dict[str, Any]
    onnx: OnnxExportReport | None = None


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
) -> ExportResult:
    """Write the model (ONNX or standalone torch) and `<out>.json`; measure accuracy on the test split."""
    if fmt not in ("onnx", "torch"):
        raise ConfigError(f"--format must be onnx or torch, got {fmt!r}")
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize supports only int8, got {quantize!r}")
    if quantize and fmt != "onnx":
        raise ConfigError("--quantize int8 needs --format onnx")
    out = Path(out)
    space, arch, data, subnet = prepared.space, prepared.arch, prepared.data, prepared.subnet
    test_x = normalized_images(data, "test", arch.resolution, test_limit)
    test_y = split_labels(data, "test", test_limit)
    accuracy = {"test_top1": torch_accuracy(subnet, test_x, test_y), "test_images": int(len(test_y)),
                "source": "measured"}
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
            "mean": list(data.normalization.mean),
            "std": list(data.normalization.std),
            "normalization": data.normalization.kind,
            "preprocess": data.describe().get("eval_preprocess", "resize to the input resolution"),
        },
        "class_names": list(data.class_names),
        "macs": space.macs(arch),
        "params": space.params(arch),
        "accuracy": accuracy,
        "latency": latency_entry(space, arch, target),
        "provenance": prepared.provenance,
    }
    for form, value in space.foreign_forms(arch).items():
        sidecar[f"{form}_arch"] = value  # e.g. ofa_arch: Once-for-All's {ks, e, d, r}
    report = None
    if fmt == "torch":
        save_standalone(out, subnet, space, {"sidecar": sidecar})
    else:
        report = export_onnx(subnet, out, arch.resolution, opset=opset, dynamic_batch=dynamic_batch,
                             check_inputs=torch.from_numpy(test_x[: 8 if dynamic_batch else 1]))
        import onnxruntime

        sidecar["onnx"] = {"opset": opset, "max_abs_diff_vs_torch": report.max_abs_diff,
                           "onnxruntime": onnxruntime.__version__}
        if quantize == "int8":
            from nasforge.export.quantize import onnx_accuracy, quantize_int8

            int8_path = out.with_name(out.stem + ".int8.onnx")
            calib = data.calibration_batches(calib_images, batch_size=256, resolution=arch.resolution)
            calib_x = torch.cat([x.float().cpu() for x in calib]).numpy()
            quantize_int8(out, int8_path, calib_x)
            sidecar["int8"] = {
                "path": str(int8_path),
                "calibration_images": int(len(calib_x)),
                "fp32_test_top1": onnx_accuracy(out, test_x, test_y),
                "int8_test_top1": onnx_accuracy(int8_path, test_x, test_y),
                "source": "measured",
            }
    sidecar_path = out.with_name(out.name + ".json")
    atomic_write_json(sidecar_path, sidecar)
    return ExportResult(out, sidecar_path, sidecar, report)
