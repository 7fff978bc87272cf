"""`nasforge evaluate` (one subnet's true accuracy) and `nasforge build-predictor`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nasforge.cli import app
from nasforge.cli._common import DataDirOpt, JsonOpt, LoaderOpt, ResultTable, SeedOpt, console, print_json, with_data
from nasforge.errors import ConfigError
from nasforge.io import read_arch_argument
from nasforge.predictors.base import PREDICTORS

RunOpt = Annotated[Path, typer.Option("--run", help="A trained supernet run folder.")]


def _dataset_name(run: Any) -> str:
    """The dataset a run was trained on, as recorded in its config (for predictor metadata)."""
    config = run.config
    for attr in ("dataset", "data"):
        value = getattr(config, attr, None)
        if isinstance(value, str):
            return value
        name = getattr(value, "name", None) or getattr(value, "dataset", None)
        if isinstance(name, str):
            return name
    return "unknown"


def _evaluate_checkpoint(checkpoint: Path, run: Path | None, splits: list[str], device: str, as_json: bool,
                         data: tuple[str | None, str | None] = (None, None)) -> None:
    """A standalone subnet's accuracy with its own BN statistics, on the splits of the run it came from."""
    from nasforge.supernet.standalone import load_standalone
    from nasforge.train import runs
    from nasforge.train.evaluate import accuracy

    subnet, space, extra = load_standalone(checkpoint)
    run_dir = run or (Path(extra["run"]) if extra.get("run") else None)
    if run_dir is None:
        raise ConfigError(f"{checkpoint} does not name its run; pass --run RUN_DIR for the dataset")
    r = with_data(runs.load_run(run_dir, device=device), *data)
    if r.space.fingerprint != space.fingerprint:
        raise ConfigError(f"{checkpoint} is a subnet of space {space.name}, not of run {run_dir}'s space")
    a = subnet.arch
    model = subnet.to(r.device)
    result: dict[str, Any] = {"arch": a.to_dict(), "checkpoint": str(checkpoint)}  # type: ignore[union-attr]
    for s in splits:
        result[f"{s}_top1"] = accuracy(model, r.data(), s, a.resolution, amp=r.config.amp)  # type: ignore[union-attr]
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = ResultTable(title=str(checkpoint))
    for col in ("split", "top-1 %"):
        table.add_column(col)
    for s in splits:
        table.add_row(s, f"{result[f'{s}_top1']:.2f}")
    console.print(table)


@app.command("evaluate")
def evaluate_command(
    run: Annotated[Path | None, typer.Option("--run", help="A trained supernet run folder.")] = None,
    arch: Annotated[
        str | None, typer.Option("--arch", help="Arch: JSON string, JSON file, or FILE#i (nasforge or OFA form).")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="A standalone subnet (`nasforge finetune`) instead of --arch.")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="val, test or both.")] = "both",
    calib_images: Annotated[
        int | None,
        typer.Option("--calib-images", help="Images for BN recalibration (default: the run's eval.calib_images)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 256,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line instead of a table.")] = False,
    data_dir: DataDirOpt = None,
    loader: LoaderOpt = None,
) -> None:
    """True top-1 accuracy of one subnet (BN recalibrated) on the validation and/or test split.

    An imported run (`nasforge import-ofa`) reads ImageNet from --data-dir (an ImageFolder) with OFA's protocol:
    streamed, shorter side resized to round(r / 0.875), centre crop r, ImageNet mean/std.
    """
    splits = {"val": ["val"], "test": ["test"], "both": ["val", "test"]}.get(split)
    if splits is None:
        raise ConfigError(f"--split must be val, test or both, got {split!r}")
    if (calib_images is not None and calib_images <= 0) or batch_size <= 0:
        raise ConfigError("--calib-images and --batch-size must be positive")
    if (arch is None) == (checkpoint is None):
        raise ConfigError("give exactly one of --arch (with --run) or --checkpoint")
    if checkpoint is not None:
        _evaluate_checkpoint(checkpoint, run, splits, device, as_json, (data_dir, loader))
        return
    if run is None:
        raise ConfigError("--arch needs --run RUN_DIR")
    raw = read_arch_argument(arch)
    from nasforge.train import runs

    r = with_data(runs.load_run(run, device=device), data_dir, loader)
    a = r.space.parse_arch(raw)
    calib_images = calib_images or r.config.eval.calib_images
    result: dict[str, Any] = {"arch": a.to_dict(), "macs": r.space.macs(a), "params": r.space.params(a)}
    for s in splits:
        acc = runs.evaluate_subnets(r, [a], s, calib_images=calib_images, batch_size=batch_size)
        result[f"{s}_top1"] = float(acc[0])
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = ResultTable(title=f"{a.key}")
    for col in ("split", "top-1 %"):
        table.add_column(col)
    for s in splits:
        table.add_row(s, f"{result[f'{s}_top1']:.2f}")
    console.print(table)
    console.print(f"MACs {result['macs'] / 1e6:.2f}M, params {result['params'] / 1e6:.3f}M")


@app.command("build-predictor")
def build_predictor_command(
    run: RunOpt,
    samples: Annotated[int, typer.Option("--samples", help="Subnets to measure (train + held-out).")] = 1000,
    model: Annotated[str, typer.Option("--model", help=f"Predictor model: {PREDICTORS.choices_help()}.")] = "mlp",
    seed: SeedOpt = 0,
    holdout: Annotated[float, typer.Option("--holdout", help="Held-out share (<1) or count (>=1).")] = 0.2,
    out: Annotated[Path | None, typer.Option("--out", help="Predictor folder (default RUN/predictor).")] = None,
    store: Annotated[
        Path | None, typer.Option("--store", help="Measurement cache (default RUN/measurements/val.jsonl).")
    ] = None,
    measure_batch: Annotated[int, typer.Option("--measure-batch", help="Archs per measured (and cached) batch.")] = 32,
    calib_images: Annotated[
        int | None,
        typer.Option("--calib-images", help="Images for BN recalibration (default: the run's eval.calib_images)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    loader: LoaderOpt = None,
) -> None:
    """Measure N subnets on the validation split (cached, resumable), fit a predictor, report held-out scores."""
    fittable = [k for k in PREDICTORS.names() if getattr(PREDICTORS.get(k), "fittable", True)]
    if model not in fittable:  # (imported kinds such as ofa-mlp come trained: `nasforge import-ofa --predictor`)
        raise ConfigError(f"--model must be one of {', '.join(fittable)}, got {model!r}")
    if samples < 4:
        raise ConfigError(f"--samples must be at least 4, got {samples}")
    if holdout <= 0 or measure_batch <= 0 or (calib_images is not None and calib_images <= 0) or batch_size <= 0:
        raise ConfigError("--holdout, --measure-batch, --calib-images and --batch-size must be positive")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from nasforge.io import check_output_dir, check_output_file
    from nasforge.predictors.base import RUN_PREDICTOR_DIR
    from nasforge.predictors.build import build_predictor
    from nasforge.train import runs

    out_dir = check_output_dir(out or Path(run) / RUN_PREDICTOR_DIR)
    store_path = check_output_file(store or Path(run) / "measurements" / "val.jsonl", "--store")
    r = with_data(runs.load_run(run, device=device), data_dir, loader)
    if calib_images is None:  # the run's own protocol: the store a quickstart or a training run left is reused
        calib_images = r.config.eval.calib_images

    def measure(archs: list) -> Any:
        return runs.evaluate_subnets(r, archs, "val", calib_images=calib_images, batch_size=batch_size)

    with Progress(
        TextColumn("measuring subnets"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as bar:

        def progress(total: int, done: int):  # type: ignore[no-untyped-def]
            task = bar.add_task("measure", total=total, completed=done)
            return lambda k: bar.advance(task, k)

        _, report = build_predictor(
            r.space,
            measure,
            samples=samples,
            model=model,
            seed=seed,
            holdout=holdout,
            out_dir=out_dir,
            store_path=store_path,
            checkpoint_sha256=r.checkpoint_sha256,
            dataset=_dataset_name(r),
            batch_size=measure_batch,
            progress=progress,
            protocol={"calib_images": calib_images},
        )
    if as_json:
        print_json(report.to_dict())
        return
    _print_report(report, model)


def _print_report(report: Any, model: str) -> None:
    table = ResultTable(title=f"{model} predictor on {report.num_holdout} held-out subnets")
    for col in ("train", "held-out", "RMSE (pts)", "MAE (pts)", "Kendall tau", "Spearman", "measured now", "archs/s"):
        table.add_column(col, justify="right")
    m = report.metrics
    table.add_row(
        str(report.num_train),
        str(report.num_holdout),
        f"{m['rmse']:.3f}",
        f"{m['mae']:.3f}",
        f"{m['kendall_tau']:.3f}",
        f"{m['spearman']:.3f}",
        str(report.newly_measured),
        f"{report.archs_per_second:.2f}" if report.newly_measured else "-",
    )
    console.print(table)
    console.print(
        f"saved {report.path} (fit {report.fit_seconds:.1f}s, 10k predictions {report.predict_10k_seconds:.3f}s)"
    )
