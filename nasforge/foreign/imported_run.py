"""The run folder that imported weights become (OFA's supernets, timm's ViTs): one writer, so every import gives
what every later stage takes: config.yaml, space.yaml, data.json (no dataset until `--data-dir`), supernet.pt and
import.json, the record of where the weights came from."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import yaml

from nasforge.errors import ConfigError
from nasforge.io import atomic_write_json, atomic_write_text, check_output_dir
from nasforge.space import SearchSpace

IMPORT_FORMAT = "nasforge-import/1"
# What OFA's ImageNet evaluation does (ofa.tutorial.imagenet_eval_helper) and nasforge's streaming source does.
IMAGENET_EVAL = "resize the shorter side to round(r / 0.875), centre crop r x r"


def holds_run(path: Path) -> bool:
    """Whether `path` already holds a nasforge run (trained or imported)."""
    return any((path / name).exists() for name in ("config.yaml", "supernet.pt", "checkpoints/last.pt"))


def check_import_destination(out: Path, force: bool) -> None:
    """Refuse, before any weights are read, a destination that cannot be written or already holds a run."""
    check_output_dir(out)
    if holds_run(out) and not force:
        raise ConfigError(f"{out} already holds a run; pass --force to overwrite it or choose another --out")


def write_imported_run(
    out: Path, space: SearchSpace, cfg: Any, state: dict[str, torch.Tensor], *, source: Path, dataset: str,
    record: dict[str, Any],
) -> str:
    """Write the run folder of `state` (the supernet's tensors, checked already); `record`: what import.json says
    besides the common keys (project, net, ...). Returns the source file's sha256."""
    from nasforge.data import IMAGENET
    from nasforge.train.checkpoint import sha256_file
    from nasforge.train.config import save_config
    from nasforge.train.runs import IMPORT_RECORD
    from nasforge.train.trainer import save_supernet

    out.mkdir(parents=True, exist_ok=True)
    sha = sha256_file(source)
    save_config(cfg, out / "config.yaml")
    atomic_write_text(out / "space.yaml", yaml.safe_dump(space.definition, sort_keys=False))
    atomic_write_json(out / "data.json", {
        "dataset": dataset, "loader": None, "selection": "imported: no dataset until --data-dir",
        "resolution": max(space.resolutions), "classes": space.num_classes, "splits": None,
        "normalization": IMAGENET.to_dict(), "eval_preprocess": IMAGENET_EVAL,
    })
    save_supernet(out / "supernet.pt", state, space, cfg)
    atomic_write_json(out / IMPORT_RECORD, {
        "format": IMPORT_FORMAT, "imported": True, "source": str(source), "sha256": sha, **record,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    return sha


__all__ = ["IMAGENET_EVAL", "IMPORT_FORMAT", "check_import_destination", "holds_run", "write_imported_run"]
