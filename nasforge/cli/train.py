"""`nasforge train-supernet` and `nasforge train-subnet`: thin wrappers over nasforge.train.loop."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nasforge.cli import app
from nasforge.cli._common import ArchOpt, console
from nasforge.data.registry import DATASETS, LOADER_CHOICES
from nasforge.errors import ConfigError
from nasforge.train.schedules.base import SCHEDULES

ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", help="Training YAML (default configs/train/default.yaml).")
]
ScheduleOpt = Annotated[
    Optional[str], typer.Option("--schedule", help=f"Shrink schedule: {SCHEDULES.choices_help()}.")
]
SpaceOverride = Annotated[Optional[str], typer.Option("--space", help="Shipped space name or a space YAML path.")]
DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", help=f"Dataset: {DATASETS.choices_help()}.")]
LoaderOpt = Annotated[
    Optional[str],
    typer.Option("--loader", help=f"{' | '.join(LOADER_CHOICES.names())}: how images are read (auto: by size)."),
]
DataDirOpt = Annotated[Optional[str], typer.Option("--data-dir", help="Dataset folder (never downloaded).")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="The whole run's epoch budget.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Run folder (default: a fresh one under runs/).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last good checkpoint.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda.")]
SeedOverride = Annotated[Optional[int], typer.Option("--seed", min=0, help="Random seed (>= 0).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Training batch size (all ranks together).")]
LimitOpt = Annotated[Optional[int], typer.Option("--train-limit", help="Use at most this many training images.")]
UntilOpt = Annotated[
    Optional[int], typer.Option("--until-epoch", help="Stop after this epoch (continue with --resume).")
]
TensorBoardOpt = Annotated[
    Optional[Path],
    typer.Option("--tensorboard", help="Also log to TensorBoard event files in this folder (needs the tensorboard "
                                       "package; the YAML's logging.tensorboard)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
InitOpt = Annotated[
    Optional[str],
    typer.Option("--init", help="Start from a run folder's or an OFA checkpoint's weights (classifier rebuilt for "
                                "the dataset); without --space, the init's space is trained."),
]


def _fresh_out(prefix: str) -> Path:
    base = Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def _resolve(config: Path | None, out: Path | None, resume: bool, overrides: dict[str, Any]):  # type: ignore[no-untyped-def]
    from nasforge.train.config import apply_overrides, load_config, read_run_config

    if resume:
        if out is None:
            raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
        base = read_run_config(out / "config.yaml") if config is None else load_config(config)
        return apply_overrides(base, overrides), out
    return load_config(config, overrides), out


@app.command("train-supernet")
def train_supernet_command(
    config: ConfigOpt = None,
    schedule: ScheduleOpt = None,
    space: SpaceOverride = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    out: OutOpt = None,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
    seed: SeedOverride = None,
    batch_size: BatchOpt = None,
    train_limit: LimitOpt = None,
    until_epoch: UntilOpt = None,
    quiet: QuietOpt = False,
    init: InitOpt = None,
    loader: LoaderOpt = None,
    tensorboard: TensorBoardOpt = None,
) -> None:
    """Train an elastic supernet (progressive / sandwich / delayed) so every subnet works without retraining."""
    width_mult = None
    if init is not None and space is None and not resume:
        from nasforge.train.transfer import read_init

        source = read_init(init)  # the init's space and width, unless --space names one
        space, width_mult = source.space_ref, source.space.width_mult
    overrides = {
        "init": init,
        "width_mult": width_mult,
        "schedule.name": schedule,
        "space": space,
        "data.dataset": dataset,
        "data.data_dir": data_dir,
        "epochs": epochs,
        "device": device,
        "seed": seed,
        "data.batch_size": batch_size,
        "data.train_limit": train_limit,
        "data.loader": loader,
        "logging.tensorboard": str(tensorboard) if tensorboard is not None else None,
    }
    cfg, out = _resolve(config, out, resume, overrides)
    _run(cfg, out or _fresh_out(cfg.schedule.name), resume, until_epoch, quiet)


@app.command("train-subnet")
def train_subnet_command(
    arch: ArchOpt,
    config: ConfigOpt = None,
    space: SpaceOverride = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    out: OutOpt = None,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
    seed: SeedOverride = None,
    batch_size: BatchOpt = None,
    train_limit: LimitOpt = None,
    until_epoch: UntilOpt = None,
    quiet: QuietOpt = False,
    loader: LoaderOpt = None,
) -> None:
    """Train one subnet alone from scratch (the baseline a supernet's subnets are compared with)."""
    from nasforge.io import read_arch_argument

    arch_obj = read_arch_argument(arch)
    overrides = {
        "schedule.name": "standalone",
        "schedule.arch": arch_obj,
        "space": space,
        "data.dataset": dataset,
        "data.data_dir": data_dir,
        "epochs": epochs,
        "device": device,
        "seed": seed,
        "data.batch_size": batch_size,
        "data.train_limit": train_limit,
        "data.loader": loader,
    }
    cfg, out = _resolve(config, out, resume, overrides)
    from nasforge.space import load_space

    load_space(cfg.space, width_mult=cfg.width_mult).parse_arch(arch_obj)  # fail fast on an arch outside the space
    _run(cfg, out or _fresh_out("subnet"), resume, until_epoch, quiet)


def _run(cfg, out: Path, resume: bool, until_epoch: int | None, quiet: bool) -> None:  # type: ignore[no-untyped-def]
    from nasforge.cli.train_progress import TrainProgress
    from nasforge.io import check_output_dir
    from nasforge.train import train_supernet
    from nasforge.train.distributed import shutdown

    check_output_dir(out)
    progress = [] if quiet else [TrainProgress(console)]
    try:
        result = train_supernet(cfg, out, resume=resume, until_epoch=until_epoch, callbacks=progress)
    finally:
        for p in progress:
            p.close()
    shutdown()  # under torchrun: every rank done, the process group torn down before exit
    if result.metrics and not quiet:
        console.print(json.dumps({"run_dir": str(out), "finished": result.finished, **result.metrics[-1]}))
    elif not quiet:
        console.print(f"run {out}: nothing left to train")
