"""The two fits a user must trust before a search: the latency table's and the accuracy predictor's.

Both need the trained run (its space, its checkpoint's hash): the latency points are the table's measured whole
subnets beside what its model predicts for them; the predictor's are its held-out subnets, rebuilt from the
sample, split and seed its `predictor.json` records, with the accuracies its measurement store holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nasforge.arch import _KEY_LETTERS, ArchConfig
from nasforge.errors import NasforgeError
from nasforge.report.gather import NoData
from nasforge.report.records import LatencyFit, LatencyPoint, PredictorFit

STORE = Path("measurements") / "val.jsonl"


def arch_from_key(key: str) -> ArchConfig:
    """The arch a compact key (`ArchConfig.key`, e.g. ``r24-d2,2-k3,5-e3,4``) names: its exact inverse."""
    letters = {v: k for k, v in _KEY_LETTERS.items()}
    parts = key.split("-")
    data: dict[str, Any] = {"resolution": int(parts[0][1:])}
    for part in parts[1:]:
        name, _, values = part.partition("=") if "=" in part else (letters.get(part[:1], part[:1]), "", part[1:])
        data[name] = [float(v) if "." in v else int(v) for v in values.split(",")] if values else []
    arch = ArchConfig.from_dict(data)
    if arch.key != key:
        raise ValueError(f"{key!r} is not an arch key")
    return arch


# ---------------------------------------------------------------------- latency
def latency_table(searches: list[Any], exports: list[Any], space: Any) -> Any:
    """The table an exported model was timed with, else the one `target` would use now for the run's searches."""
    from nasforge.latency.lut import LatencyTable
    from nasforge.latency.model import find_best_table
    from nasforge.latency.targets import load_target

    for e in exports:
        if e.latency.get("table") and Path(e.latency["table"]).is_file():
            return LatencyTable.load(e.latency["table"])
    target = latency_target(searches, exports)
    table, _ = find_best_table(load_target(target), space)
    if table is None:
        raise NoData(f"no measured latency table for target {target!r} and space {space.name!r} (roofline estimate)")
    return table


def latency_target(searches: list[Any], exports: list[Any]) -> str:
    """The target the run's searches (or, without one, its exports) were timed for."""
    for s in searches:
        meta = json.loads((Path(s) / "search.json").read_text())
        if meta.get("latency_target"):
            return str(meta["latency_target"])
    for e in exports:
        if e.latency.get("target"):
            return str(e.latency["target"])
    raise NoData("no search or export in this folder named a latency target")


def gather_latency(space: Any, table: Any) -> LatencyFit:
    from nasforge.latency.model import TableLatencyModel

    validation, note = table.validation, None
    samples = table.metadata.get("validation_samples") or []
    if validation is None and table.validation_rejected is not None:
        validation = table.validation_rejected
        samples = validation.extra.get("samples") or []
        note = ("this validation was refused as too noisy: the table is not calibrated and predicts plain block "
                "sums (the points below)")
    if validation is None or not samples:
        raise NoData(f"latency table {table.path} holds no whole-subnet validation")
    archs = [space.validate(arch_from_key(s["arch"])) for s in samples]
    predicted = TableLatencyModel(table, space).predict(archs)
    head = validation.headline
    return LatencyFit(
        table=table.path, target=table.target, cpu=table.machine.get("cpu"),
        scores_kind="calibrated_cv5" if validation.calibrated_cv5 is not None else "raw",
        mape=head.mape, within_10pct=head.within_10pct, kendall_tau=head.kendall_tau, n_scored=head.n,
        trusted=validation.is_trusted, noise_reason=validation.noise.reason if validation.noise else None,
        date=validation.date, note=note,
        points=[LatencyPoint(s["arch"], float(s["measured_ms"]), float(p), bool(s.get("design", False)))
                for s, p in zip(samples, predicted)],
    )


# ---------------------------------------------------------------------- accuracy predictor
def open_store(run: Any) -> Any:
    """The run's measurement store (read only), or None where it has none or it belongs to other weights."""
    from nasforge.predictors import MeasurementStore

    path = Path(run.path) / STORE
    if not path.is_file():
        return None
    try:
        header = json.loads(path.read_text().split("\n", 1)[0])
        if header.get("checkpoint_sha256") != run.checkpoint_sha256:
            return None
        return MeasurementStore(path, run.space, checkpoint_sha256=run.checkpoint_sha256, dataset=header["dataset"],
                                split=header.get("split", "val"), protocol=header.get("protocol"))
    except (ValueError, KeyError, AttributeError, NasforgeError):
        return None


def measured_lookup(store: Any, space: Any) -> Any:
    """`arch dict -> measured val top-1 or None`, from the store."""
    def lookup(arch: dict[str, Any]) -> float | None:
        if store is None:
            return None
        record = store.records.get(space.canonical(ArchConfig.from_dict(arch)).key)
        return None if record is None else float(record["accuracy"])

    return lookup


def gather_predictor(run: Any, store: Any, predictor: Any = None) -> PredictorFit:
    """The held-out fit of the run's predictor (`predictor`: the one the caller loaded from it already, if any)."""
    from nasforge.predictors import load_run_predictor
    from nasforge.predictors.base import read_predictor_metadata

    folder = Path(run.path) / "predictor"
    if not (folder / "predictor.json").is_file():
        raise NoData(f"no accuracy predictor in {folder} (build-predictor was not run)")
    meta = read_predictor_metadata(folder)
    metrics = dict(meta.get("metrics", {}))
    base = {"path": str(folder), "model": str(meta.get("model")), "metrics": metrics}
    if store is None:
        return PredictorFit(**base, predicted=[], measured=[], note=f"no measurement store for these weights "
                                                                    f"({Path(run.path) / STORE})")
    predictor = predictor if predictor is not None else load_run_predictor(run, folder)
    hold = held_out_archs(run.space, meta)
    predicted = predictor.predict(run.space.features(hold))
    return PredictorFit(**base, predicted=[float(v) for v in predicted],
                        measured=[float(v) for v in store.accuracies(hold)])


def held_out_archs(space: Any, meta: dict[str, Any]) -> list[ArchConfig]:
    """The held-out subnets `build_predictor` scored: the same sample, split and seed its metadata records."""
    import numpy as np

    from nasforge.predictors.build import sample_for_predictor, split_holdout

    seed, n = int(meta.get("seed", 0)), int(meta["num_measurements"])
    archs = sample_for_predictor(space, n, seed=seed)
    _, hold = split_holdout(n, float(meta.get("holdout", 0.2)), np.random.default_rng([seed, 1]))
    return [archs[i] for i in hold]


__all__ = ["arch_from_key", "gather_latency", "gather_predictor", "held_out_archs", "latency_target",
           "measured_lookup", "open_store"]
