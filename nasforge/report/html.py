"""One self-contained HTML page: inline CSS, figures as base64 PNG, the numbers as an embedded JSON block.

Nothing is fetched: no script, font or stylesheet from the network, so the page opens from disk anywhere.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from html import escape
from typing import Any

from nasforge.io import finite_json
from nasforge.report.records import ExportedModel, LatencyFit, PredictorFit, RunReport, SearchFront, TrainingCurves

DATA_ID = "nasforge-report-data"
TITLES = {"training": "Training", "latency": "Latency table", "predictor": "Accuracy predictor",
          "searches": "Search: Pareto fronts", "exports": "Exported models"}
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}img{max-width:100%}
.missing{color:#a33;font-style:italic}.note{color:#555}code{font-size:.85em}"""


def fmt(value: Any, spec: str = ".2f") -> str:
    """A number as the page shows it (tests look for exactly this text); None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float) and value != value:
        return "nan"
    return format(value, spec)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], left: int = 0) -> str:
    def cell(tag: str, i: int, text: str) -> str:
        return f"<{tag}{' class=l' if i < left else ''}>{text}</{tag}>"

    out = ["<table><tr>" + "".join(cell("th", i, escape(h)) for i, h in enumerate(head)) + "</tr>"]
    out += ["<tr>" + "".join(cell("td", i, escape(c)) for i, c in enumerate(r)) + "</tr>" for r in rows]
    return "".join(out) + "</table>"


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<p><img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'


def _training(t: TrainingCurves) -> str:
    head = ["epoch", "phase", "LR", "loss", "train acc %", "images/s", *t.evals, *(["ε"] if t.epsilon else [])]
    rows = []
    for i, epoch in enumerate(t.epochs):
        row = [str(epoch), t.phases[i], fmt(t.lr[i], ".4g"), fmt(t.train_loss[i], ".4f"), fmt(t.train_acc[i]),
               fmt(t.images_per_s[i], ".0f"), *(fmt(v[i]) for v in t.evals.values())]
        rows.append(row + ([fmt(t.epsilon[i], ".3f")] if t.epsilon else []))
    changes = ", ".join(f"{p} from epoch {e}" for e, p in t.phase_changes())
    return (f"<p>Schedule <b>{escape(t.schedule)}</b>; phases: {escape(changes)}. "
            f"From <code>{escape(t.source)}</code>.</p>" + _table(head, rows, left=2))


def _latency(f: LatencyFit) -> str:
    verdict = "trusted" if f.trusted else f"not trusted ({f.noise_reason or 'no reason recorded'})"
    rows = [["table", f.table], ["target", f.target], ["measured on", f.cpu or "—"], ["date", f.date or "—"],
            ["scores", f.scores_kind], ["MAPE %", fmt(f.mape)], ["within ±10%", fmt(f.within_10pct, ".1%")],
            ["Kendall tau", fmt(f.kendall_tau, ".3f")], ["scored subnets", str(f.n_scored)],
            ["noise verdict", verdict]]
    note = f'<p class="note">{escape(f.note)}</p>' if f.note else ""
    return note + _table(["", "value"], rows, left=2)


def _predictor(f: PredictorFit) -> str:
    rows = [["model", f.model], ["folder", f.path],
            *([k, str(int(v)) if k.startswith("num_") else fmt(v, ".3f")] for k, v in f.metrics.items())]
    note = f'<p class="note">{escape(f.note)}</p>' if f.note else ""
    return note + _table(["held-out", "value"], rows, left=2)


def _search(s: SearchFront, png: bytes | None) -> str:
    rows = [[p.arch, fmt(p.accuracy), fmt(p.latency_ms, ".3f"), str(p.macs), fmt(p.measured_val)] for p in s.front]
    summary = (f"<p><code>{escape(s.path)}</code>: engine <b>{escape(s.engine)}</b>, objectives "
               f"{escape(', '.join(s.objectives))}, constraints {escape(', '.join(s.constraints) or 'none')}; "
               f"{s.evaluations} evaluated, hypervolume {fmt(s.hypervolume, '.4f')}; accuracy on the front is "
               f"{escape(s.accuracy_kind)}; latency source: {escape(s.latency_source or '—')}.</p>")
    head = ["arch", f"top-1 % ({s.accuracy_kind})", "latency ms", "MACs", "measured val %"]
    return summary + _img(png, f"Pareto front of {s.path}") + _table(head, rows, left=1)


def _export(e: ExportedModel) -> str:
    lat, acc = e.latency, e.accuracy
    rows = [["model", e.model], ["arch", e.arch], ["MACs", fmt(e.macs, "d")], ["params", fmt(e.params, "d")],
            ["latency ms", f"{fmt(lat.get('ms'), '.3f')} ({lat.get('source', '—')})"],
            ["latency predicted ms", fmt(lat.get("predicted_ms"), ".3f")],
            ["latency measured ms", f"{fmt(lat.get('measured_ms'), '.3f')} on {lat.get('cpu') or '—'}"],
            *([f"accuracy: {k}", fmt(v) if isinstance(v, float) else str(v)] for k, v in acc.items())]
    return _table(["", "value"], rows, left=2)


def _body(name: str, report: RunReport, figures: dict[str, bytes]) -> str:
    if name == "training" and report.training:
        return _img(figures.get("training"), "training curves") + _training(report.training)
    if name == "latency" and report.latency:
        return _img(figures.get("latency"), "latency: predicted vs measured") + _latency(report.latency)
    if name == "predictor" and report.predictor:
        return _img(figures.get("predictor"), "predictor: held-out fit") + _predictor(report.predictor)
    if name == "searches" and report.searches:
        return "".join(_search(s, figures.get(f"search-{i}")) for i, s in enumerate(report.searches))
    if name == "exports" and report.exports:
        return "".join(_export(e) for e in report.exports)
    why = report.missing.get(name, "no data")
    return f'<p class="missing">No data: {escape(why)}</p>'


def render(report: RunReport, figures: dict[str, bytes]) -> str:
    """The page: one section per stage (a stage without data says why), then the numbers as JSON."""
    data = json.dumps(finite_json(report.to_dict()), allow_nan=False, default=str).replace("</", "<\\/")
    sections = "".join(f'<section id="{name}"><h2>{TITLES[name]}</h2>{_body(name, report, figures)}</section>'
                       for name in TITLES)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>nasforge report: '
            f'{escape(report.run)}</title><style>{_CSS}</style></head><body><h1>nasforge run report</h1>'
            f"<p><code>{escape(report.run)}</code></p>{sections}"
            f'<script type="application/json" id="{DATA_ID}">{data}</script></body></html>\n')


def read_embedded(html: str) -> dict[str, Any]:
    """The JSON block a page embeds (what tests and tools read back)."""
    start = html.index(f'id="{DATA_ID}">') + len(f'id="{DATA_ID}">')
    return json.loads(html[start:html.index("</script>", start)].replace("<\\/", "</"))  # type: ignore[no-any-return]


__all__ = ["DATA_ID", "fmt", "read_embedded", "render"]
