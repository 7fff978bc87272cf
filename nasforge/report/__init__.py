"""`nasforge report RUN`: one self-contained HTML page per run, so a user looks instead of reading JSON lines.

It shows what the folder holds: training curves (`metrics.jsonl`), the latency table's whole-subnet validation,
the accuracy predictor's held-out fit, each search's Pareto front with the measured points, each exported
model's sidecar. A stage that was skipped is a section that says so; the report never fails for it.

    gather (records.py, gather.py, gather_fit.py) -> figures (figures.py) -> page (html.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.io import atomic_write_bytes, atomic_write_text
from nasforge.report.gather import NoData, gather_export, gather_search, gather_training, locate, section
from nasforge.report.records import RunReport


@dataclass(frozen=True)
class ReportResult:
    path: Path  # the HTML page
    figures: dict[str, Path]  # the same figures as PNGs beside it
    report: RunReport


@dataclass(frozen=True)
class Resolved:
    """What the caller has loaded already (the quickstart: its run, predictor and latency table), so the report
    reuses it instead of reading it again; None where the report should find and read it itself."""

    run: Any = None
    predictor: Any = None
    table: Any = None  # a LatencyTable


def gather(root: str | Path, resolved: Resolved | None = None) -> RunReport:
    """Every section `root` has data for (`RunReport.missing` says why the others are empty)."""
    from nasforge.report import gather_fit as fit

    resolved = resolved or Resolved()

    layout = locate(root)
    report = RunReport(run=str(layout.root))
    report.training = section(report, "training", lambda: gather_training(layout.training))
    report.exports = [e for e in (section(report, "exports", lambda p=p: gather_export(p)) for p in layout.sidecars)
                      if e is not None]
    if not layout.sidecars:
        report.missing["exports"] = "no exported model (`<model>.json` sidecar) in this folder"
    run = resolved.run if resolved.run is not None else section(report, "run", lambda: _load_run(layout.training))
    store = fit.open_store(run) if run is not None else None
    measured = fit.measured_lookup(store, run.space) if run is not None else (lambda arch: None)
    report.searches = [s for s in (section(report, "searches", lambda p=p: gather_search(p, measured))
                                   for p in layout.searches) if s is not None]
    if not layout.searches:
        report.missing["searches"] = "no search (search.json + pareto.json) in this folder"
    if run is None:
        why = report.missing.get("run", "no trained supernet")
        report.missing.setdefault("latency", why)
        report.missing.setdefault("predictor", why)
        return report
    report.predictor = section(report, "predictor", lambda: fit.gather_predictor(run, store, resolved.predictor))
    report.latency = section(report, "latency", lambda: fit.gather_latency(
        run.space, resolved.table if resolved.table is not None
        else fit.latency_table(layout.searches, report.exports, run.space)))
    return report


def _load_run(training: Path | None) -> Any:
    from nasforge.train.runs import load_run

    if training is None:
        raise NoData("no training run in this folder")
    return load_run(training, device="cpu")


def figures_for(report: RunReport) -> dict[str, bytes]:
    """Each section's figure as PNG bytes, by name (training, latency, predictor, search-0, ...)."""
    from nasforge.report import figures as fig

    out: dict[str, bytes] = {}
    if report.training is not None:
        out["training"] = fig.training_png(report.training)
    if report.latency is not None:
        out["latency"] = fig.latency_png(report.latency)
    if report.predictor is not None and report.predictor.measured:
        out["predictor"] = fig.predictor_png(report.predictor)
    for i, s in enumerate(report.searches):
        if s.front:
            out[f"search-{i}"] = fig.search_png(s)
    return out


def build_report(root: str | Path, out: str | Path | None = None, resolved: Resolved | None = None) -> ReportResult:
    """Write `out` (default ROOT/report.html) and its figures as `<out stem>-<name>.png` beside it."""
    from nasforge.report.html import render

    report = gather(root, resolved)
    path = Path(out) if out is not None else Path(root) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = figures_for(report)
    written = {}
    for name, png in figures.items():
        written[name] = path.with_name(f"{path.stem}-{name}.png")
        atomic_write_bytes(written[name], png)
    atomic_write_text(path, render(report, figures))
    return ReportResult(path, written, report)


__all__ = ["ReportResult", "Resolved", "build_report", "figures_for", "gather"]
