"""Typed, frozen training configs: YAML -> dataclasses at the edge, `dataclasses.replace` for overrides.

Every field has a default, so a config file names only what it changes. Unknown keys, wrong types,
non-finite numbers and impossible values raise `ConfigError` with one line naming the file and the
field (`nasforge.config`); the same checks run however a config is built (YAML, flags, Python).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nasforge.config import Validated, check, field_error, load_dataclass, to_plain
from nasforge.data.source import DataSettings
from nasforge.errors import ConfigError
from nasforge.io import atomic_write_text, read_yaml
from nasforge.resources import shipped_dir
from nasforge.train.schedules.base import SCHEDULES

CONFIGS_DIR = shipped_dir("configs", "train")


@dataclass(frozen=True)
class DataConfig(DataSettings):
    """The dataset, its loader and augmentation (`nasforge.data.DataSettings`) plus the training batch size."""

    batch_size: int = field(default=64, metadata=check(gt=0))  # all ranks together


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
            if not isinstance(group, str) or not group.isidentifier():
                raise field_error(f"elastic.{group}", "a gene group name of the space (e.g. kernel, depth)", group)
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
class LoggingConfig(Validated):
    """Where the run logs besides its own metrics.jsonl (`nasforge.train.callbacks.TRAIN_CALLBACKS`)."""

    tensorboard: str | None = None  # a folder for TensorBoard event files (needs the `tensorboard` package)


@dataclass(frozen=True)
class TrainConfig(Validated):
    space: str = "mobilenetv3-ofa-cifar"  # shipped space name or a space YAML path
    width_mult: float | None = field(default=None, metadata=check(gt=0))  # one of the space's (default: its first)
    epochs: int = field(default=4, metadata=check(gt=0))
    seed: int = field(default=0, metadata=check(ge=0))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # NHWC memory: tensor cores on CUDA; 10x faster depthwise backward on CPU
    # off: eager | blocks: torch.compile each elastic block signature (eager where it fails, warned once) |
    # graphs: blocks, plus CUDA graphs for the fixed-shape members (largest, smallest, teacher; CUDA only)
    compile: Literal["off", "blocks", "graphs"] = "off"
    checkpoint_every_steps: int = field(default=0, metadata=check(ge=0))  # 0: only at epoch ends
    # a run folder or a Once-for-All checkpoint whose weights start the supernet, classifier rebuilt for the
    # dataset's classes (nasforge.train.transfer); resuming ignores it
    init: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

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
    """`{"schedule.name": "delayed", "epochs": 3}` -> a new config (None values are skipped).

    All overrides land first and the result is checked once, so a pair that is only valid together
    (`--dataset cifar10 --data-dir D`) never trips a check half-way.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return cfg
    return load_dataclass(TrainConfig, with_dotted(to_plain(cfg), given), source=None)


def with_dotted(plain: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a nested plain dict with `a.b.c`-keyed values set; an unknown key is one line."""
    out = copy.deepcopy(plain)
    for key, value in values.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown config key {key!r}")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"unknown config key {key!r}")
        node[parts[-1]] = value
    return out


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
