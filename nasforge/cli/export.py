"""`nasforge export` and `nasforge finetune`: ship a subnet of a trained run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from nasforge.cli import app
from nasforge.cli._common import DataDirOpt, LoaderOpt, ResultTable, console, with_data
from nasforge.cli.progress import progress_bar
from nasforge.errors import ConfigError
from nasforge.io import check_output_file

RunOpt = Annotated[Path, typer.Option("--run", help="Run folder of `nasforge train-supernet`.")]
MaybeArch = Annotated[
    Optional[str], typer.Option("--arch", help="Arch: JSON string, JSON file, or FILE#i (e.g. pareto.json#0).")
]


def _load(run_dir: Path, device: str, data_dir: str | None = None, loader: str | None = None):  # type: ignore[no-untyped-def]
    from nasforge.train.runs import load_run

    return with_data(load_run(run_dir, device=device), data_dir, loader)


def _arch(run, arch: str):  # type: ignore[no-untyped-def]
    from nasforge.io import read_arch_argument

    return run.space.parse_arch(read_arch_argument(arch))


@app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", help="Output file (model.onnx, or model.pt with --format torch).")],
    run: Annotated[Optional[Path], typer.Option("--run", help="Run folder of `nasforge train-supernet`.")] = None,
    arch: MaybeArch = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option("--checkpoint", help="A fine-tuned subnet (`nasforge finetune`) instead of --arch."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="onnx | torch | ofa (the whole supernet in Once-for-All's format).")
    ] = "onnx",
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 17,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Export a dynamic batch axis.")] = False,
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="int8: ORT static quantisation.")] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images for int8.")] = 256,
    target: Annotated[
        str, typer.Option("--target", help="Latency target recorded in the sidecar ('' for none).")
    ] = "cpu",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda (for BN recalibration).")] = "cpu",
    bn: Annotated[
        str, typer.Option("--bn", help="recalibrate (on training images) | stored (the supernet's statistics).")
    ] = "recalibrate",
    calib_bn_images: Annotated[int, typer.Option("--bn-images", help="Images for BN recalibration.")] = 2000,
    data_dir: DataDirOpt = None,
    loader: LoaderOpt = None,
) -> None:
    """Extract a subnet (BN recalibrated), export it, verify it in ONNX Runtime and write a sidecar JSON."""
    from nasforge.export.pipeline import PreparedSubnet, check_export_options, export_prepared, prepare_from_run
    from nasforge.supernet.standalone import load_standalone

    check_export_options(fmt, opset=opset, quantize=quantize)
    if fmt != "ofa" and (arch is None) == (checkpoint is None):
        raise ConfigError("give exactly one of --arch (with --run) or --checkpoint")
    check_output_file(out)  # every format, before any work
    check_output_file(out.with_name(out.name + ".json"), "--out (its sidecar)")
    if fmt == "ofa":
        _export_ofa(run, out, arch, checkpoint, device)
        return
    if checkpoint is not None:
        subnet, space, extra = load_standalone(checkpoint)
        run_dir = run or (Path(extra["run"]) if extra.get("run") else None)
        if run_dir is None:
            raise ConfigError(f"{checkpoint} does not name its run; pass --run RUN_DIR for the dataset")
        loaded = _load(run_dir, device, data_dir, loader)
        if loaded.space.fingerprint != space.fingerprint:
            raise ConfigError(f"{checkpoint} is a subnet of space {space.name}, not of run {run_dir}'s space")
        prepared = PreparedSubnet(
            subnet,
            space,
            subnet.arch,
            loaded.data().to("cpu"),  # type: ignore[arg-type]
            {"checkpoint": str(checkpoint), **{k: extra[k] for k in ("run", "kd") if k in extra}},
        )
    else:
        if run is None:
            raise ConfigError("--arch needs --run RUN_DIR")
        if calib_bn_images <= 0:
            raise ConfigError(f"--bn-images must be positive, got {calib_bn_images}")
        loaded = _load(run, device, data_dir, loader)
        prepared = prepare_from_run(loaded, _arch(loaded, arch), calib_images=calib_bn_images, bn=bn)  # type: ignore[arg-type]
    result = export_prepared(
        prepared,
        out,
        fmt=fmt,
        opset=opset,
        dynamic_batch=dynamic_batch,
        quantize=quantize,
        calib_images=calib_images,
        target=target or None,
    )
    _print_summary(result.model_path, result.sidecar_path, result.sidecar)


def _export_ofa(run: Path | None, out: Path, arch: str | None, checkpoint: Path | None, device: str) -> None:
    """The run's whole supernet as Once-for-All's `{"state_dict": ...}` (no subnet, no ONNX)."""
    from nasforge.foreign.ofa_runs import export_ofa_checkpoint

    if run is None or arch is not None or checkpoint is not None:
        raise ConfigError("--format ofa exports a run's whole supernet: give --run RUN_DIR, no --arch or --checkpoint")
    sidecar = export_ofa_checkpoint(_load(run, device), out)
    table = ResultTable(title=f"exported {out} (Once-for-All's format)")
    table.add_column("what")
    table.add_column("value")
    table.add_row("OFA class", f"{sidecar['ofa_class']}(**{json.dumps(sidecar['ofa_kwargs'])})")
    table.add_row("tensors", str(sidecar["tensors"]))
    table.add_row("load with", sidecar["load"])
    table.add_row("sidecar", str(out.with_name(out.name + ".json")))
    console.print(table)


def measured_latency_text(lat: dict) -> str:  # type: ignore[type-arg]
    """The sidecar's timing of the exported model, or why none was made."""
    if lat.get("measured_ms") is None:
        return f"not timed: {lat.get('not_measured') or 'no ONNX model'}"
    speed = lat.get("measured_at_table_speed_ms")
    at_speed = "" if speed is None else f" ({speed:.3f} ms at the table's reference speed)"
    return f"{lat['measured_ms']:.3f} ms measured on {lat['cpu']}{at_speed}"


def _print_summary(model_path: Path, sidecar_path: Path, sidecar: dict) -> None:  # type: ignore[type-arg]
    table = ResultTable(title=f"exported {model_path}")
    table.add_column("what")
    table.add_column("value")
    table.add_row("arch", json.dumps(sidecar["arch"]))
    table.add_row("input", str(sidecar["input"]["shape"]))
    table.add_row("MACs / params", f"{sidecar['macs'] / 1e6:.1f}M / {sidecar['params'] / 1e6:.2f}M")
    acc = sidecar["accuracy"]
    if acc["test_top1"] is None:
        table.add_row("test top-1 (PyTorch)", f"{acc['source']}: {acc.get('reason', '')}")
    else:
        table.add_row("test top-1 (PyTorch)", f"{acc['test_top1']:.2f}% ({acc['source']}, {acc['test_images']} images)")
    table.add_row("BN statistics", str(sidecar["provenance"].get("bn", "recalibrate")))
    if "onnx" in sidecar:
        table.add_row("ORT vs PyTorch max |diff|", f"{sidecar['onnx']['max_abs_diff_vs_torch']:.2e}")
    if "int8" in sidecar:
        q = sidecar["int8"]
        table.add_row("int8 model", q["path"])
        table.add_row("test top-1 fp32 / int8 (ORT)", f"{q['fp32_test_top1']:.2f}% / {q['int8_test_top1']:.2f}%")
    lat = sidecar.get("latency")
    if lat:
        table.add_row(f"latency ({lat['target']})", f"{lat['ms']:.3f} ms ({lat['source']})")
        table.add_row("latency timed here", measured_latency_text(lat))
    table.add_row("sidecar", str(sidecar_path))
    console.print(table)


@app.command("finetune")
def finetune_command(
    run: RunOpt,
    arch: Annotated[str, typer.Option("--arch", help="Arch: JSON string, JSON file, or FILE#i.")],
    epochs: Annotated[int, typer.Option("--epochs", help="Fine-tuning epochs.")],
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Checkpoint path (default RUN_DIR/finetuned/<key>.pt).")
    ] = None,
    kd: Annotated[bool, typer.Option("--kd", help="Distil from the supernet's largest subnet.")] = False,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak LR (default: a tenth of the run's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda.")] = "auto",
    data_dir: DataDirOpt = None,
    loader: LoaderOpt = None,
) -> None:
    """Train one extracted subnet further; save a standalone checkpoint that export and evaluate accept."""
    from nasforge.train.finetune import check_options, finetune_subnet

    check_options(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    if out is not None:
        check_output_file(out)
    loaded = _load(run, device, data_dir, loader)
    a = _arch(loaded, arch)
    path = check_output_file(out or run / "finetuned" / f"{a.key}.pt")
    steps = epochs * loaded.data().steps_per_epoch(batch_size or loaded.config.data.batch_size)
    with progress_bar(console, "finetune", steps, extra="loss {task.fields[loss]:.3f}", loss=float("nan")) as update:
        result = finetune_subnet(
            loaded,
            a,
            path,
            epochs=epochs,
            lr=lr,
            kd=kd,
            batch_size=batch_size,
            seed=seed,
            on_step=lambda done, total, loss: update(completed=done, loss=loss),
        )
    table = ResultTable(title=f"fine-tuned {result.path}")
    for col in ("split", "before (supernet weights)", "after"):
        table.add_column(col)
    for split in ("val", "test"):
        table.add_row(split, f"{result.before[split]:.2f}%", f"{result.after[split]:.2f}%")
    console.print(table)
