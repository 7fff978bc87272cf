"""Compare trained supernets (one per schedule) with the same archs trained alone, on the TEST split.

For every supernet run: top-1 test accuracy of the largest, the smallest and a fixed set of random subnets
(the same archs for every run of the space: drawn with `--seed`), each BN-recalibrated on `--calib-images`
training images, plus the run's training time and images/s from its metrics.jsonl. For every
`nasforge train-subnet` run given with `--alone`: its arch's test accuracy and training figures.

    PYTHONPATH=. python scripts/bench_schedules.py --runs runs/delayed runs/sandwich runs/progressive \
        --alone runs/alone-largest runs/alone-smallest --json schedules.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from nasforge.arch import ArchConfig
from nasforge.train.runs import Run, evaluate_subnets, load_run


def training_figures(run: Run) -> dict:
    """Epochs, training seconds and images/s over the whole run (from metrics.jsonl)."""
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    seconds = sum(r["train_seconds"] for r in rows)
    images = sum(r["train_seconds"] * r["images_per_s"] for r in rows)
    return {"epochs": len(rows), "train_s": round(seconds, 1), "images_per_s": round(images / seconds, 1),
            "last_val": rows[-1].get("eval", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=[], help="supernet run folders (train-supernet --out)")
    ap.add_argument("--alone", nargs="*", default=[], help="train-subnet run folders (one arch each)")
    ap.add_argument("--random", type=int, default=5, help="random subnets per supernet, the same for every run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib-images", type=int, default=2000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    console = Console(width=160)
    results: list[dict] = []

    for run_dir in args.runs:
        run = load_run(run_dir, args.device)
        space = run.space
        archs: dict[str, ArchConfig] = {"largest": space.largest(), "smallest": space.smallest()}
        for i, arch in enumerate(space.sample_many(np.random.default_rng(args.seed), args.random)):
            archs[f"random{i}"] = arch
        acc = evaluate_subnets(run, list(archs.values()), "test", calib_images=args.calib_images)
        results.append({"run": run_dir, "kind": "supernet", "schedule": run.config.schedule.name,
                        "space": space.name, "device": str(run.device), **training_figures(run),
                        "test": {k: round(float(a), 2) for k, a in zip(archs, acc)},
                        "archs": {k: a.to_dict() for k, a in archs.items()}})
        console.print(json.dumps({k: v for k, v in results[-1].items() if k != "archs"}))

    for run_dir in args.alone:
        run = load_run(run_dir, args.device)
        arch = run.space.parse_arch(run.config.schedule.arch)
        (acc,) = evaluate_subnets(run, [arch], "test", calib_images=args.calib_images)
        name = {run.space.largest(): "largest", run.space.smallest(): "smallest"}.get(arch, "arch")
        results.append({"run": run_dir, "kind": "alone", "schedule": "standalone", "space": run.space.name,
                        "device": str(run.device), **training_figures(run), "test": {name: round(float(acc), 2)},
                        "archs": {name: arch.to_dict()}})
        console.print(json.dumps({k: v for k, v in results[-1].items() if k != "archs"}))

    table = Table(title=f"test top-1 after BN recalibration on {args.calib_images} images")
    for col in ("run", "schedule", "epochs", "train s", "img/s", "largest", "smallest",
                f"{args.random} random: mean (min-max)"):
        table.add_column(col, justify="right")
    for r in results:
        t = r["test"]
        rand = [v for k, v in t.items() if k.startswith("random")]
        rand_txt = f"{np.mean(rand):.2f} ({min(rand):.2f}-{max(rand):.2f})" if rand else "-"
        other = {k: v for k, v in t.items() if k not in ("largest", "smallest") and not k.startswith("random")}
        table.add_row(r["run"], r["schedule"], str(r["epochs"]), f"{r['train_s']:.0f}", f"{r['images_per_s']:.0f}",
                      f"{t['largest']:.2f}" if "largest" in t else "-",
                      f"{t['smallest']:.2f}" if "smallest" in t else "-",
                      rand_txt if rand else (", ".join(f"{k} {v:.2f}" for k, v in other.items()) or "-"))
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
