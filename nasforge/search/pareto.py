"""Non-dominated sets, hypervolume with a fixed reference point, and the search's output files."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.io import atomic_write_json, atomic_write_text
from nasforge.search.objectives import COLUMNS, METRICS, Constraint


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of F (minimisation); duplicates keep their first row (pymoo's sort)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    F = np.asarray(F, dtype=np.float64)
    if len(F) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(F, axis=0, return_index=True)
    first = np.sort(first)
    if F.shape[1] == 1:
        return first[[int(np.argmin(F[first, 0]))]]
    front = NonDominatedSorting(method="efficient_non_dominated_sort").do(F[first], only_non_dominated_front=True)
    return np.sort(first[np.asarray(front, dtype=np.int64)])


class Hypervolume:
    """HV of normalised objectives against a fixed reference point (recorded in the outputs).

    Each objective is scaled by fixed bounds (ideal -> 0, nadir -> 1); the reference point is 1.1
    in every objective, so numbers compare across engines and runs of one problem.
    """

    def __init__(self, ideal: Sequence[float], nadir: Sequence[float], ref: float = 1.1) -> None:
        from pymoo.indicators.hv import HV

        self.ideal = np.asarray(ideal, dtype=np.float64)
        self.nadir = np.asarray(nadir, dtype=np.float64)
        self.scale = np.where(self.nadir > self.ideal, self.nadir - self.ideal, 1.0)
        self.ref = np.full(len(self.ideal), ref)
        self._hv = HV(ref_point=self.ref)

    def __call__(self, F: np.ndarray) -> float:
        F = np.asarray(F, dtype=np.float64)
        if len(F) == 0:
            return 0.0
        Z = (F[non_dominated(F)] - self.ideal) / self.scale
        Z = Z[np.all(Z < self.ref, axis=1)]
        return float(self._hv(Z)) if len(Z) else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"ideal": self.ideal.tolist(), "nadir": self.nadir.tolist(), "reference_point": self.ref.tolist()}


def front_rows(
    archs: Sequence[Any], metrics: dict[str, np.ndarray], latency_source: str | None
) -> list[dict[str, Any]]:
    """pareto.json entries: `{arch, accuracy, latency_ms, latency_source, macs, params}`."""
    rows = []
    for i, arch in enumerate(archs):
        acc = metrics["accuracy"][i]
        lat = metrics["latency_ms"][i]
        rows.append(
            {
                "arch": arch.to_dict(),
                "accuracy": None if np.isnan(acc) else round(float(acc), 4),
                "latency_ms": None if np.isnan(lat) else round(float(lat), 4),
                "latency_source": latency_source if not np.isnan(lat) else None,
                "macs": int(metrics["macs"][i]),
                "params": int(metrics["params"][i]),
            }
        )
    return rows


def write_history_csv(path: Path, space: Any, history: Any, archs: Sequence[Any]) -> None:
    """Every evaluated point: step (generation/round), feasibility, metrics and the arch key."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["index", "step", "feasible", *COLUMNS, "arch"])
    for i in range(len(history)):
        vals = [history.metrics[c][i] for c in COLUMNS]
        w.writerow(
            [
                i,
                int(history.step[i]),
                int(history.feasible[i]),
                *(_cell(c, v) for c, v in zip(COLUMNS, vals)),
                archs[i].to_json(),
            ]
        )
    atomic_write_text(path, buf.getvalue())


def _cell(column: str, value: float) -> str | int:
    if np.isnan(value):
        return ""
    return f"{value:.6g}" if column in ("accuracy", "latency_ms") else int(value)


def write_hv_csv(path: Path, hv: Sequence[tuple[int, int, float]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "evaluations", "hypervolume"])
    for step, n, v in hv:
        w.writerow([step, n, f"{v:.8f}"])
    atomic_write_text(path, buf.getvalue())


def write_pareto_json(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_json(path, rows)


def plot_front(
    path: Path,
    objectives: Sequence[str],
    all_metrics: dict[str, np.ndarray],
    feasible: np.ndarray,
    front_metrics: dict[str, np.ndarray],
    constraints: Sequence[Constraint],
    title: str,
) -> None:
    """pareto.png: all points, the front, constraint lines (first two objectives)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(objectives)
    if len(names) < 2:  # one objective: plot it against a cost
        names.append("macs" if names[0] != "macs" else "params")
    xc, yc = METRICS[names[1]][0], METRICS[names[0]][0]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    x, y = all_metrics[xc], all_metrics[yc]
    ax.scatter(x[~feasible], y[~feasible], s=6, c="#cccccc", label="infeasible")
    ax.scatter(x[feasible], y[feasible], s=6, c="#7aa6d6", label="evaluated")
    order = np.argsort(front_metrics[xc])
    ax.plot(front_metrics[xc][order], front_metrics[yc][order], "o-", c="#d62728", ms=4, label="front")
    for c in constraints:
        if c.column == xc:
            ax.axvline(c.value, ls="--", c="k", lw=1, label=c.text)
        elif c.column == yc:
            ax.axhline(c.value, ls="--", c="k", lw=1, label=c.text)
    ax.set_xlabel(xc)
    ax.set_ylabel(yc)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from nasforge.io import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())
