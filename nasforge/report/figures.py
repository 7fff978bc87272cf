"""The report's figures as PNG bytes (matplotlib, Agg): the same bytes go inline into the page and beside it."""

from __future__ import annotations

import io
from typing import Any

from nasforge.report.records import LatencyFit, PredictorFit, SearchFront, TrainingCurves


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def _series(xs: list[int], ys: list[Any]) -> tuple[list[int], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None]
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def training_png(t: TrainingCurves) -> bytes:
    """Accuracy of the evaluated subnets, loss, LR and ε, images/s per epoch; phase changes as dotted lines."""
    fig, axes = _plt().subplots(2, 2, figsize=(10, 7))
    acc, loss, lr, speed = axes.flat
    for name, values in t.evals.items():
        style = {"largest": "o-", "smallest": "s-"}.get(name, ".--")
        acc.plot(*_series(t.epochs, values), style, label=name, lw=1)
    acc.set(title="top-1 of the evaluated subnets", xlabel="epoch", ylabel="top-1 %")
    acc.legend(fontsize=7)
    loss.plot(*_series(t.epochs, t.train_loss), "o-", c="#d62728")
    loss.set(title="training loss (largest subnet)", xlabel="epoch", ylabel="loss")
    lr.plot(*_series(t.epochs, t.lr), "o-", label="LR")
    lr.set(title="learning rate" + (" and ε" if t.epsilon else ""), xlabel="epoch", ylabel="LR")
    if t.epsilon:
        eps = lr.twinx()
        eps.plot(t.epochs, t.epsilon, "s--", c="#2ca02c", label="ε")
        eps.set_ylabel("ε")
        eps.set_ylim(-0.05, 1.05)
    speed.plot(*_series(t.epochs, t.images_per_s), "o-", c="#9467bd")
    speed.set(title="training throughput", xlabel="epoch", ylabel="images/s")
    from matplotlib.ticker import MaxNLocator

    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for epoch, phase in t.phase_changes()[1:]:
        for ax in axes.flat:
            ax.axvline(epoch - 0.5, ls=":", c="k", lw=1)
        acc.annotate(phase, (epoch - 0.5, 0.02), xycoords=("data", "axes fraction"), fontsize=7, rotation=90)
    return _png(fig)


def latency_png(f: LatencyFit) -> bytes:
    """Predicted vs measured whole subnets, with the ±10% band."""
    fig, ax = _plt().subplots(figsize=(6.4, 5.2))
    measured = [p.measured_ms for p in f.points]
    lo, hi = min(measured) * 0.85, max(measured) * 1.15
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="#cfe3f7", label="±10%")
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    scored = [p for p in f.points if not p.design]
    design = [p for p in f.points if p.design]
    ax.scatter([p.measured_ms for p in scored], [p.predicted_ms for p in scored], s=12, label="scored subnets")
    if design:
        ax.scatter([p.measured_ms for p in design], [p.predicted_ms for p in design], s=18, marker="^",
                   c="#ff7f0e", label="design points (fitted)")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured ms", ylabel="predicted ms",
           title=f"{f.target} on {f.cpu or '?'}: MAPE {f.mape:.2f}%, within ±10% {f.within_10pct:.0%}"
                 + ("" if f.trusted else " (refused: noisy)"))
    ax.legend(fontsize=8)
    return _png(fig)


def predictor_png(f: PredictorFit) -> bytes:
    """The accuracy predictor on its held-out subnets."""
    fig, ax = _plt().subplots(figsize=(6.4, 5.2))
    lo = min(f.measured + f.predicted) - 1
    hi = max(f.measured + f.predicted) + 1
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.scatter(f.measured, f.predicted, s=14)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured top-1 %", ylabel="predicted top-1 %",
           title=f"{f.model}, held out: RMSE {f.metrics.get('rmse', float('nan')):.2f} pts, "
                 f"tau {f.metrics.get('kendall_tau', float('nan')):.3f}")
    return _png(fig)


def search_png(s: SearchFront) -> bytes:
    """The front's accuracy against latency (or MACs), measured points beside the predicted ones."""
    fig, ax = _plt().subplots(figsize=(6.4, 4.8))
    use_latency = all(p.latency_ms is not None for p in s.front)
    xs = [(p.latency_ms if use_latency else p.macs) for p in s.front]
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    acc = [s.front[i].accuracy for i in order]
    ax.plot([xs[i] for i in order], acc, "o-", c="#d62728", ms=4, label=f"front ({s.accuracy_kind})")
    measured = [(xs[i], p.measured_val) for i, p in enumerate(s.front) if p.measured_val is not None]
    if measured:
        ax.scatter([m[0] for m in measured], [m[1] for m in measured], marker="*", s=90, c="#2ca02c",
                   label="measured val", zorder=3)
        for i, p in enumerate(s.front):
            if p.measured_val is not None and p.accuracy is not None:
                ax.plot([xs[i], xs[i]], [p.accuracy, p.measured_val], c="#2ca02c", lw=0.8)
    ax.set(xlabel="latency ms" if use_latency else "MACs", ylabel="top-1 %",
           title=f"{s.engine}: {len(s.front)} on the front, {s.evaluations} evaluated")
    ax.legend(fontsize=8)
    return _png(fig)


__all__ = ["latency_png", "predictor_png", "search_png", "training_png"]
