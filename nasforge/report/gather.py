"""Find what a run folder holds and read each artifact into the report's records (`nasforge.report.records`).

A run folder is a training run (`config.yaml` + `space.yaml`) or a folder that holds one (the quickstart's
`supernet/`), plus any search folders (`search.json` + `pareto.json`) and exported models (`<model>.json`
sidecars) below it. A stage that was skipped is a section with its reason, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError, NasforgeError
from nasforge.report.records import ExportedModel, FrontPoint, RunReport, SearchFront, TrainingCurves

MODEL_SUFFIXES = (".onnx", ".pt")


class NoData(Exception):
    """A section has nothing to show; the message says why (one line in the report)."""


@dataclass(frozen=True)
class Layout:
    root: Path
    training: Path | None
    searches: list[Path]
    sidecars: list[Path]


def _is_training_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and (folder / "space.yaml").is_file()


def locate(root: str | Path) -> Layout:
    """Where `root`'s training run, searches and exported models are."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such run folder")
    training = root if _is_training_run(root) else next(
        (p for p in sorted(root.iterdir()) if p.is_dir() and _is_training_run(p)), None)
    searches = sorted(p.parent for p in root.rglob("search.json") if (p.parent / "pareto.json").is_file())
    sidecars = sorted(p for p in root.rglob("*.json")
                      if p.name[:-5].endswith(MODEL_SUFFIXES) and p.with_name(p.name[:-5]).is_file())
    return Layout(root, training, searches, sidecars)


def section(report: RunReport, name: str, read: Callable[[], Any]) -> Any:
    """`read()`, or None with the reason in `report.missing[name]` (a skipped stage, an unreadable artifact)."""
    try:
        return read()
    except NoData as exc:
        report.missing[name] = str(exc)
    except NasforgeError as exc:
        report.missing[name] = f"unreadable: {exc}"
    return None


# ---------------------------------------------------------------------- training
def gather_training(run_dir: Path | None) -> TrainingCurves:
    from nasforge.train.callbacks import METRICS_FILE, read_metrics
    from nasforge.train.config import read_run_config

    if run_dir is None:
        raise NoData("no training run in this folder (config.yaml + space.yaml)")
    records = read_metrics(run_dir / METRICS_FILE)
    if not records:
        raise NoData(f"{run_dir / METRICS_FILE} holds no finished epoch yet")
    cfg = read_run_config(run_dir / "config.yaml")
    names = list(dict.fromkeys(k for r in records for k in r.get("eval", {})))
    return TrainingCurves(
        source=str(run_dir / METRICS_FILE),
        schedule=cfg.schedule.name,
        epochs=[int(r["epoch"]) for r in records],
        iterations=[int(r["iteration"]) for r in records],
        phases=[str(r.get("phase")) for r in records],
        lr=[r.get("lr") for r in records],
        train_loss=[r.get("train_loss") for r in records],
        train_acc=[r.get("train_acc") for r in records],
        images_per_s=[r.get("images_per_s") for r in records],
        evals={n: [r.get("eval", {}).get(n) for r in records] for n in names},
        epsilon=_epsilon(cfg, run_dir, records),
    )


def _epsilon(cfg: Any, run_dir: Path, records: list[dict[str, Any]]) -> list[float] | None:
    """ε at each epoch's last step, from the run's own schedule (None for schedules without ε)."""
    from nasforge.space import load_space
    from nasforge.train.schedules import make_strategy

    first = records[0]
    steps_per_epoch = int(first["iteration"]) // max(1, int(first["epoch"]))
    if steps_per_epoch < 1:
        return None
    try:
        strategy = make_strategy(cfg, load_space(run_dir / "space.yaml"), steps_per_epoch)
    except NasforgeError:
        return None
    epsilon = getattr(strategy, "epsilon", None)
    return None if epsilon is None else [float(epsilon(int(r["iteration"]) - 1)) for r in records]


# ---------------------------------------------------------------------- searches
def gather_search(folder: Path, measured: Callable[[dict[str, Any]], float | None]) -> SearchFront:
    """`measured(arch_dict)`: the run's measured val top-1 of an arch, or None."""
    from nasforge.search.engines.base import engine_needs

    meta = _read_json(folder / "search.json")
    rows = _read_json(folder / "pareto.json")
    if not isinstance(meta, dict) or not isinstance(rows, list):
        raise ConfigError(f"{folder}: search.json / pareto.json are not a search's output")
    engine = str(meta.get("engine", "?"))
    try:
        kind = "measured" if engine_needs(engine).measurements else "predicted"
    except NasforgeError:
        kind = "predicted"
    front = [FrontPoint(arch=_arch_key(r["arch"]), accuracy=r.get("accuracy"), latency_ms=r.get("latency_ms"),
                        macs=int(r.get("macs", 0)), measured_val=measured(r["arch"])) for r in rows]
    return SearchFront(
        path=str(folder), engine=engine, accuracy_kind=kind, objectives=list(meta.get("objectives", [])),
        constraints=list(meta.get("constraints", [])), latency_source=meta.get("latency_source"),
        evaluations=int(meta.get("evaluations", 0)), hypervolume=meta.get("hypervolume"), front=front,
    )


def _arch_key(arch: Any) -> str:
    from nasforge.arch import ArchConfig

    return ArchConfig.from_dict(arch).key if isinstance(arch, dict) else str(arch)


# ---------------------------------------------------------------------- exports
def gather_export(sidecar: Path) -> ExportedModel:
    side = _read_json(sidecar)
    if not isinstance(side, dict) or "arch" not in side:
        raise ConfigError(f"{sidecar}: not an exported model's sidecar")
    return ExportedModel(
        model=str(sidecar.with_name(sidecar.name[:-5])), sidecar=str(sidecar), arch=_arch_key(side["arch"]),
        macs=side.get("macs"), params=side.get("params"), latency=dict(side.get("latency") or {}),
        accuracy=dict(side.get("accuracy") or {}),
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable JSON ({exc})") from None


__all__ = ["Layout", "NoData", "gather_export", "gather_search", "gather_training", "locate", "section"]
