"""Typed, frozen training configs: YAML -> dataclasses at the edge, `dataclasses.replace` for overrides.

Every field has a default, so a config file names only what it changes. Unknown keys, wrong types,
non-finite numbers and impossible values raise `ConfigError` with one line naming the file and the
field (`nasforge.config`); the same checks run however a config is built (YAML, flags, Python).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nasforge.config import Validated, check, field_error, load_dataclass, replace_path, to_plain
from nasforge.errors import ConfigError
from nasforge.families.base import GENE_GROUPS
from nasforge.io import atomic_write_text, read_yaml
from nasforge.resources import shipped_dir
from nasforge.train.schedules.base import SCHEDULES

DATASETS = ("digits", "cifar10", "imagefolder")
CONFIGS_DIR = shipped_dir("configs", "train")


@dataclass(frozen=True)
class DataConfig(Validated):
    dataset: str = field(default="digits", metadata=check(choices=DATASETS))
    data_dir: str | None = None
    # held out of train for predictor building; the test split stays separate
    val_fraction: float = field(default=0.1, metadata=check(ge=0.0, lt=1.0))
    split_seed: int = field(default=0, metadata=check(ge=0))  # fixed, so every run of a dataset shares one val split
    batch_size: int = field(default=64, metadata=check(gt=0))
    train_limit: int | None = field(default=None, metadata=check(gt=0))  # cap on training images (quick runs)
    pad: int = field(default=4, metadata=check(ge=0))  # random crop = pad by `pad` pixels then crop back
    flip: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dataset != "digits" and not self.data_dir:
            raise ConfigError(f"dataset {self.dataset!r} needs --data-dir (nasforge never downloads data)")


@dataclass(frozen=True)
class OptimConfig(Validated):
    lr: float = field(default=0.05, metadata=check(gt=0))
    momentum: float = field(default=0.9, metadata=check(ge=0, lt=1))
    nesterov: bool = True
    weight_decay: float = field(default=3e-5, metadata=check(ge=0))
    warmup_epochs: float = field(default=0.0, metadata=check(ge=0))
    label_smoothing: float = field(default=0.1, metadata=check(ge=0, lt=1))
    kd_temperature: float = field(default=1.0, metadata=check(gt=0))


@dataclass(frozen=True)
class PhaseConfig(Validated):
    """One progressive-shrinking phase: which gene groups are open and how wide.

    `elastic` maps a gene group to the number of its largest choices open ("all" = every
    choice); groups not named stay at their largest value. `epochs` is a relative weight:
    the run's `epochs` budget is split across phases in proportion.
    """

    name: str
    epochs: float = field(metadata=check(gt=0))
    lr_scale: float = field(default=1.0, metadata=check(gt=0))
    subnets: int = field(default=1, metadata=check(gt=0))
    kd: bool = True
    elastic: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        for group, width in self.elastic.items():
            if group not in GENE_GROUPS:
                raise field_error(f"elastic.{group}", f"a gene group, one of {list(GENE_GROUPS)}", group)
            if width != "all" and (isinstance(width, bool) or not isinstance(width, int) or width <= 0):
                raise field_error(f"elastic.{group}", "'all' or a positive integer", width)


def _ofa_phases() -> tuple[PhaseConfig, ...]:
    # Once-for-All (Cai et al., ICLR 2020): epochs 180/120/25/120/25/120, lr 2.6(teacher, rel.)/3e-2/2.5e-3/7.5e-3,
    # 1/1/2/2/4/4 subnets per step. lr_scale is relative to optim.lr.
    res = {"resolution": "all"}
    return (
        PhaseConfig("full", 180, 1.0, 1, False, dict(res)),
        PhaseConfig("kernel", 120, 0.3, 1, True, {**res, "kernel": "all"}),
        PhaseConfig("depth-1", 25, 0.025, 2, True, {**res, "kernel": "all", "depth": 2}),
        PhaseConfig("depth-2", 120, 0.075, 2, True, {**res, "kernel": "all", "depth": "all"}),
        PhaseConfig("expand-1", 25, 0.025, 4, True, {**res, "kernel": "all", "depth": "all", "expand": 2, "width": 2}),
        PhaseConfig("expand-2", 120, 0.075, 4, True, {**res, "kernel": "all", "depth": "all", "expand": "all",
                                                      "width": "all"}),
    )


@dataclass(frozen=True)
class ScheduleConfig(Validated):
    name: str = field(default="sandwich", metadata=check(choices=SCHEDULES))
    # sandwich/delayed: random subnets per step besides largest and smallest
    random_subnets: int = field(default=2, metadata=check(ge=0))
    kd_ratio: float = field(default=1.0, metadata=check(ge=0))  # progressive: weight of the KD term
    # delayed: the full model trains alone for this fraction of the budget
    shrink_fraction: float = field(default=0.5, metadata=check(ge=0, lt=1))
    # delayed: then epsilon ramps 0 -> 1 over this many epochs (DεpS: 5)
    eps_window_epochs: float = field(default=5.0, metadata=check(ge=0))
    # delayed: "linear" (ε linear per iteration) or "lr" (effective LR linear, DεpS code)
    eps_rule: Literal["linear", "lr"] = "linear"
    phases: tuple[PhaseConfig, ...] = field(default_factory=_ofa_phases)
    arch: dict[str, Any] | None = None  # standalone: the one arch trained alone

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name == "progressive" and not self.phases:
            raise field_error("phases", "at least one phase for schedule 'progressive'", [])
        if self.name == "standalone" and self.arch is None:
            raise ConfigError("schedule 'standalone' needs schedule.arch (use `nasforge train-subnet --arch`)")


@dataclass(frozen=True)
class EvalConfig(Validated):
    calib_images: int = field(default=2000, metadata=check(gt=0))  # BN recalibration images (OFA: 2,000)
    calib_batch_size: int = field(default=200, metadata=check(gt=0))
    random_subnets: int = field(default=3, metadata=check(ge=0))  # fixed random subnets evaluated every epoch
    max_images: int | None = field(default=None, metadata=check(gt=0))  # cap on evaluated images (quick runs)
    split: Literal["val", "test"] = "val"
    batch_size: int = field(default=256, metadata=check(gt=0))


@dataclass(frozen=True)
class TrainConfig(Validated):
    space: str = "mobilenetv3-ofa-cifar"  # shipped space name or a space YAML path
    width_mult: float | None = field(default=None, metadata=check(gt=0))  # one of the space's (default: its first)
    epochs: int = field(default=4, metadata=check(gt=0))
    seed: int = field(default=0, metadata=check(ge=0))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # NHWC memory: tensor cores on CUDA; 10x faster depthwise backward on CPU
    checkpoint_every_steps: int = field(default=0, metadata=check(ge=0))  # 0: only at epoch ends
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        phases = self.schedule.phases
        if self.schedule.name == "progressive" and self.epochs < len(phases):
            raise field_error("epochs", f"at least one epoch per progressive phase ({len(phases)})", self.epochs)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


def config_from_dict(raw: dict[str, Any] | None, source: str = "<config>") -> TrainConfig:
    return load_dataclass(TrainConfig, raw or {}, source=source)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config (default: configs/train/default.yaml), apply dotted overrides; checked throughout."""
    path = Path(path) if path is not None else CONFIGS_DIR / "default.yaml"
    raw = read_yaml(path, ConfigError, "config")
    cfg = load_dataclass(TrainConfig, raw, source=str(path))
    return apply_overrides(cfg, overrides or {})


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """`{"schedule.name": "delayed", "epochs": 3}` -> a new config (None values are skipped)."""
    for key, value in overrides.items():
        if value is not None:
            cfg = replace_path(cfg, key, value)
    return cfg


def validate(cfg: TrainConfig) -> TrainConfig:
    """Re-check a config (every construction path already checks; kept for callers that build by hand)."""
    return dataclasses.replace(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def read_run_config(path: str | Path) -> TrainConfig:
    """The resolved config a run saved (no default file underneath)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no config.yaml (is this a nasforge run folder?)")
    return load_dataclass(TrainConfig, read_yaml(path, ConfigError, "run config"), source=str(path))
