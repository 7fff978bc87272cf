"""A finished (or partly trained) run folder as one object other stages load.

Layout of RUN_DIR:
  config.yaml          the resolved TrainConfig
  space.yaml           the search space the supernet was built from (its fingerprint is checked)
  data.json            the data source it read: dataset, loader, splits, normalisation (mean/std)
  metrics.jsonl        one JSON line per epoch: losses, images/s, largest/smallest/random accuracy
  checkpoints/         last.pt, prev.pt (+ phase-NAME.pt for multi-phase schedules)
  supernet.pt          final weights + space fingerprint, name, source, num_classes
  import.json          only in runs imported from another project (`nasforge import-ofa`): the source file's
                       sha256 and what it was; such a run has no dataset until a stage is given --data-dir
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasforge.arch import ArchConfig
from nasforge.data import DataSource, Normalization, open_source
from nasforge.data.inputs import adapt, to_device
from nasforge.errors import CheckpointError, DataError
from nasforge.space import SearchSpace, load_space
from nasforge.supernet import ElasticSupernet, StaticSubnet, build_supernet
from nasforge.train import checkpoint as ckpt
from nasforge.train.bn import preserved_bn, recalibrate_bn
from nasforge.train.config import TrainConfig, apply_overrides, read_run_config
from nasforge.train.device import resolve_device
from nasforge.train.evaluate import evaluate_archs

DATA_RECORD = "data.json"
IMPORT_RECORD = "import.json"


def space_for(cfg: TrainConfig, num_classes: int) -> SearchSpace:
    space = load_space(cfg.space, width_mult=cfg.width_mult)
    return space if space.num_classes == num_classes else space.with_options(num_classes=num_classes)


def open_training_data(
    cfg: TrainConfig, space: SearchSpace, device: torch.device | str = "cpu", record: dict[str, Any] | None = None
) -> DataSource:
    """The run's data source at the space's largest resolution (a run's `record` keeps its normalisation)."""
    norm = Normalization.from_dict(record["normalization"]) if record and "normalization" in record else None
    return open_source(cfg.data, resolution=max(space.resolutions), device=device, normalization=norm)



@dataclass
class Run:
    path: Path
    config: TrainConfig
    space: SearchSpace
    supernet: ElasticSupernet  # eval mode, on `device`
    device: torch.device
    checkpoint_sha256: str
    weights_path: Path | None = None
    _data: DataSource | None = field(default=None, repr=False)

    def data(self) -> DataSource:
        """The run's data source (same splits and normalisation as training), opened on first use."""
        if self._data is None:
            reason = self.no_data_reason()
            if reason is not None:
                raise DataError(reason)
            self._data = open_training_data(self.config, self.space, self.device, self.data_record())
        return self._data

    def with_data(self, data_dir: str | None = None, loader: str | None = None) -> Run:
        """The same run reading its dataset from `data_dir` (and/or with another loader): an imported run's
        dataset, or a trained run's dataset that moved. Normalisation stays the run's recorded one."""
        config = apply_overrides(self.config, {"data.data_dir": data_dir, "data.loader": loader})
        return dataclasses.replace(self, config=config, _data=None)

    def import_record(self) -> dict[str, Any] | None:
        """What `nasforge import-ofa` recorded (None for runs trained here)."""
        return _read_record(self.path / IMPORT_RECORD, "import record")

    def no_data_reason(self) -> str | None:
        """Why this run has no dataset to read (an imported run not given --data-dir), or None."""
        record = self.import_record()
        if record is None or self.config.data.data_dir is not None:
            return None
        return (f"run {self.path} was imported from {record.get('net', 'another project')} and has no dataset; "
                f"pass --data-dir DIR (an ImageFolder: DIR/train/<class>/*, DIR/val/<class>/*)")

    def data_record(self) -> dict[str, Any] | None:
        """What training recorded of its data (None for runs made before the record existed)."""
        return _read_record(self.path / DATA_RECORD, "data record")

    def normalization(self) -> Normalization | None:
        """The normalisation the run's networks expect (its record), without opening the dataset."""
        record = self.data_record()
        return Normalization.from_dict(record["normalization"]) if record and "normalization" in record else None


def _read_record(path: Path, what: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable {what} ({exc})") from None
    return record if isinstance(record, dict) else None


def _latest_checkpoint(path: Path, dev: torch.device) -> tuple[dict[str, Any], Path]:
    """An unfinished run's last good checkpoint, or one line for the stages that read a run (not for resuming)."""
    try:
        return ckpt.load_latest(path / "checkpoints", dev)
    except ckpt.NoCheckpointError as exc:
        why = f"its checkpoints were refused ({'; '.join(exc.refused)})" if exc.refused else "no checkpoint was saved"
        raise CheckpointError(f"{path}: no usable supernet: supernet.pt is missing and {why}; "
                              "train or resume the run first") from None


def load_run(run_dir: str | Path, device: str = "auto") -> Run:
    """Load RUN_DIR's final supernet (or, before the run finishes, its last good checkpoint)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder")
    cfg = read_run_config(path / "config.yaml")
    dev = resolve_device(device)
    space_file = path / "space.yaml"
    space = load_space(space_file if space_file.exists() else cfg.space)
    weights = path / "supernet.pt"
    if weights.exists():
        try:
            obj = torch.load(weights, map_location=dev, weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{weights}: unreadable supernet ({type(exc).__name__})") from None
        if not isinstance(obj, dict) or obj.get("format") != ckpt.SUPERNET_FORMAT:
            raise CheckpointError(f"{weights}: not a nasforge supernet file")
    else:
        obj, weights = _latest_checkpoint(path, dev)
    if int(obj.get("num_classes", space.num_classes)) != space.num_classes:
        space = space.with_options(num_classes=int(obj["num_classes"]))
    if "width_mult" in obj and float(obj["width_mult"]) != space.width_mult:
        space = space.with_options(width_mult=float(obj["width_mult"]))
    if obj["space_fingerprint"] != space.fingerprint:
        raise CheckpointError(
            f"{weights}: weights are for space {obj['space_fingerprint']}, not {space.name} ({space.fingerprint})"
        )
    net = build_supernet(space).to(dev)
    try:
        net.load_state_dict(obj["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights}: weights do not fit space {space.name} ({str(exc).splitlines()[0]})"
        ) from None
    net.eval()
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return Run(path, cfg, space, net, dev, ckpt.sha256_file(weights), weights)


def extract_recalibrated(run: Run, arch: ArchConfig, *, calib_images: int = 2000) -> StaticSubnet:
    """A standalone copy of `arch` with BN statistics recalibrated for it (the supernet is left unchanged)."""
    net, data = run.supernet, run.data()
    device = next(net.parameters()).device
    arch = run.space.validate(arch)
    calib = [to_device(x, device) for x in data.calibration_batches(calib_images, batch_size=200)]
    with preserved_bn(net), net.active(arch):
        recalibrate_bn(net, calib, forward=lambda x: net(adapt(x, arch.resolution)))
        return net.extract(arch)


def evaluate_subnets(
    run: Run, archs: Sequence[ArchConfig], split: str = "val", *, calib_images: int = 2000, batch_size: int = 256
) -> np.ndarray:
    """The task's metric (top-1 % for images) of each arch on `split`, BN recalibrated per arch on `calib_images`
    training images."""
    canon = [run.space.validate(a) for a in archs]
    return evaluate_archs(
        run.supernet,
        run.data(),
        canon,
        split,
        calib_images=calib_images,
        batch_size=batch_size,
        amp=run.config.amp,
        channels_last=run.config.channels_last,
    )


def evaluate_subnet(run: Run, arch: ArchConfig, split: str = "val", *, calib_images: int = 2000) -> float:
    return float(evaluate_subnets(run, [arch], split, calib_images=calib_images)[0])
