"""Typed, frozen training configs: YAML -> dataclasses at the edge, `dataclasses.replace` for overrides.

Every field has a default, so a config file names only what it changes. Unknown keys, wrong
types and impossible values raise `ConfigError` with one line naming the field.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nasforge.errors import ConfigError
from nasforge.io import atomic_write_text, read_yaml
from nasforge.resources import shipped_dir

SCHEDULES = ("progressive", "sandwich", "delayed", "standalone")
DATASETS = ("digits", "cifar10", "imagefolder")
DEVICES = ("auto", "cpu", "cuda")
GENE_GROUPS = ("resolution", "depth", "kernel", "expand", "width")
CONFIGS_DIR = shipped_dir("configs", "train")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    val_fraction: float = 0.1  # held out of train for predictor building; the test split stays separate
    split_seed: int = 0  # fixed, so every run of a dataset shares one val split
    batch_size: int = 64
    train_limit: int | None = None  # cap on training images (quick runs)
    pad: int = 4  # random crop = pad by `pad` pixels then crop back
    flip: bool = True


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    kd_temperature: float = 1.0


@dataclass(frozen=True)
class PhaseConfig:
    """One progressive-shrinking phase: which gene groups are open and how wide.

    `elastic` maps a gene group to the number of its largest choices open ("all" = every
    choice); groups not named stay at their largest value. `epochs` is a relative weight:
    the run's `epochs` budget is split across phases in proportion.
    """

    name: str
    epochs: float
    lr_scale: float = 1.0
    subnets: int = 1
    kd: bool = True
    elastic: dict[str, Any] = field(default_factory=dict)


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
class ScheduleConfig:
    name: str = "sandwich"
    random_subnets: int = 2  # sandwich/delayed: random subnets per step besides largest and smallest
    kd_ratio: float = 1.0  # progressive: weight of the KD term next to the label loss
    shrink_fraction: float = 0.5  # delayed: the full model trains alone for this fraction of the budget
    eps_window_epochs: float = 5.0  # delayed: then epsilon ramps 0 -> 1 over this many epochs (DεpS: 5)
    eps_rule: str = "linear"  # delayed: "linear" (ε linear per iteration) or "lr" (effective LR linear, DεpS code)
    phases: tuple[PhaseConfig, ...] = field(default_factory=_ofa_phases)
    arch: dict[str, Any] | None = None  # standalone: the one arch trained alone


@dataclass(frozen=True)
class EvalConfig:
    calib_images: int = 2000  # BN recalibration images (OFA: 2,000)
    calib_batch_size: int = 200
    random_subnets: int = 3  # fixed random subnets evaluated every epoch
    max_images: int | None = None  # cap on evaluated images (quick runs)
    split: str = "val"
    batch_size: int = 256


@dataclass(frozen=True)
class TrainConfig:
    space: str = "mobilenetv3-ofa-cifar"  # shipped space name or a space YAML path
    width_mult: float | None = None  # one of the space's width multipliers (default: its first)
    epochs: int = 4
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # NHWC memory: tensor cores on CUDA; 10x faster depthwise backward on CPU
    checkpoint_every_steps: int = 0  # 0: only at epoch ends
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------- parsing
def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else _build(hint, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def validate(cfg: TrainConfig) -> TrainConfig:
    """Reject impossible values with one line; returns the config unchanged."""
    if cfg.epochs <= 0:
        raise ConfigError(f"epochs must be a positive integer, got {cfg.epochs}")
    s = cfg.schedule
    if s.name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {s.name!r}; expected one of {list(SCHEDULES)}")
    d = cfg.data
    if d.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {d.dataset!r}; expected one of {list(DATASETS)}")
    if d.dataset != "digits" and not d.data_dir:
        raise ConfigError(f"dataset {d.dataset!r} needs --data-dir (nasforge never downloads data)")
    if cfg.device not in DEVICES:
        raise ConfigError(f"device must be one of {list(DEVICES)}, got {cfg.device!r}")
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    if d.batch_size <= 0 or cfg.eval.batch_size <= 0 or cfg.eval.calib_batch_size <= 0:
        raise ConfigError("batch sizes must be positive")
    if d.train_limit is not None and d.train_limit <= 0:
        raise ConfigError(f"data.train_limit must be positive, got {d.train_limit}")
    if d.pad < 0:
        raise ConfigError(f"data.pad must be >= 0, got {d.pad}")
    o = cfg.optim
    if o.lr <= 0 or o.momentum < 0 or o.weight_decay < 0 or o.warmup_epochs < 0 or o.kd_temperature <= 0:
        raise ConfigError("optim: lr and kd_temperature must be positive; momentum, weight_decay, warmup >= 0")
    if not 0.0 <= o.label_smoothing < 1.0:
        raise ConfigError(f"optim.label_smoothing must be in [0, 1), got {o.label_smoothing}")
    if s.random_subnets < 0:
        raise ConfigError(f"schedule.random_subnets must be >= 0, got {s.random_subnets}")
    if not 0.0 <= s.shrink_fraction < 1.0:
        raise ConfigError(f"schedule.shrink_fraction must be in [0, 1), got {s.shrink_fraction}")
    if s.eps_rule not in ("linear", "lr"):
        raise ConfigError(f"schedule.eps_rule must be 'linear' or 'lr', got {s.eps_rule!r}")
    if s.eps_window_epochs < 0:
        raise ConfigError(f"schedule.eps_window_epochs must be >= 0, got {s.eps_window_epochs}")
    if s.name == "progressive":
        if not s.phases:
            raise ConfigError("schedule.phases: progressive needs at least one phase")
        if cfg.epochs < len(s.phases):
            raise ConfigError(f"progressive has {len(s.phases)} phases: epochs must be >= {len(s.phases)}, "
                              f"got {cfg.epochs}")
        for p in s.phases:
            if p.epochs <= 0 or p.lr_scale <= 0 or p.subnets <= 0:
                raise ConfigError(f"schedule.phases[{p.name}]: epochs, lr_scale and subnets must be positive")
            for group, width in p.elastic.items():
                if group not in GENE_GROUPS:
                    raise ConfigError(f"schedule.phases[{p.name}].elastic: unknown group {group!r}; "
                                      f"expected some of {list(GENE_GROUPS)}")
                if width != "all" and (isinstance(width, bool) or not isinstance(width, int) or width <= 0):
                    raise ConfigError(f"schedule.phases[{p.name}].elastic.{group}: expected 'all' or a positive "
                                      f"integer, got {width!r}")
    if s.name == "standalone" and s.arch is None:
        raise ConfigError("schedule 'standalone' needs schedule.arch (use `nasforge train-subnet --arch`)")
    if cfg.eval.split not in ("val", "test"):
        raise ConfigError(f"eval.split must be 'val' or 'test', got {cfg.eval.split!r}")
    if cfg.eval.calib_images <= 0 or cfg.eval.random_subnets < 0:
        raise ConfigError("eval.calib_images must be positive and eval.random_subnets >= 0")
    if cfg.checkpoint_every_steps < 0:
        raise ConfigError(f"checkpoint_every_steps must be >= 0, got {cfg.checkpoint_every_steps}")
    return cfg


def config_from_dict(raw: dict[str, Any] | None) -> TrainConfig:
    return validate(_build(TrainConfig, raw or {}, "config"))


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config (default: configs/train/default.yaml), apply dotted overrides, validate."""
    path = Path(path) if path is not None else CONFIGS_DIR / "default.yaml"
    raw = read_yaml(path, ConfigError, "config")
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    try:
        cfg = _build(TrainConfig, raw or {}, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return validate(apply_overrides(cfg, overrides or {}))


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """`{"schedule.name": "delayed", "epochs": 3}` -> a new config (None values are skipped)."""
    for key, value in overrides.items():
        if value is None:
            continue
        cfg = _replace_path(cfg, key.split("."), value, key)
    return cfg


def _replace_path(obj: Any, parts: list[str], value: Any, key: str) -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    if parts[0] not in names:
        raise ConfigError(f"unknown config key {key!r}")
    if len(parts) == 1:
        hint = typing.get_type_hints(type(obj))[parts[0]]
        return dataclasses.replace(obj, **{parts[0]: _convert(hint, value, key)})
    inner = getattr(obj, parts[0])
    return dataclasses.replace(obj, **{parts[0]: _replace_path(inner, parts[1:], value, key)})


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def read_run_config(path: str | Path) -> TrainConfig:
    """The resolved config a run saved (no default file underneath)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no config.yaml (is this a nasforge run folder?)")
    raw = read_yaml(path, ConfigError, "run config")
    try:
        return validate(_build(TrainConfig, raw or {}, ""))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
