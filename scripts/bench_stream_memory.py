"""Peak RSS of one `train-supernet --loader stream` epoch as the training folder grows (issue 22).

Folders of 200-400 px photo-like JPEGs (`bench_data.make_folder`: the largest generated once, the
smaller ones hard links to its first images) with one shared 100-image val/ folder; a small
MobileNetV3 space at 128-160 px; sandwich, batch 32, one epoch, `eval.calib_images: 64` (BN
calibration's 2,000-image buffer is by design and out of the way). Each run is the CLI itself under
`/usr/bin/time -f %M` (the largest of the process and its DataLoader workers), so the number is what a
user sees.

    PYTHONPATH=. python scripts/bench_stream_memory.py --work-dir /tmp/streammem            # this checkout
    PYTHONPATH=. python scripts/bench_stream_memory.py --work-dir /tmp/streammem --tree ../main  # another one
    PYTHONPATH=. python scripts/bench_stream_memory.py --dry-run                              # proves it works

`--threads` sets OMP_NUM_THREADS for the runs (default 1: on a 2-core machine shared with other jobs,
two spinning OpenMP threads made a step ~15x slower; memory is what is measured). The folders in
--work-dir are reused when present. The last line of stdout is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import make_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = 10
VAL_IMAGES = 100

SPACE = """\
name: stream-memory-128
family: mobilenetv3
description: small MobileNetV3 space at 128-160 px (bench_stream_memory.py)
num_classes: 10
resolutions: [{resolutions}]
width_mult: [1.0]
stem: {{channels: 8, stride: 2, act: hswish}}
first_block: {{channels: 8, stride: 2, act: relu}}
defaults: {{depths: [1, 2], kernel_sizes: [3, 5], expand_ratios: [2, 3]}}
stages:
  - {{channels: 12, stride: 2, act: relu,   se: false}}
  - {{channels: 16, stride: 2, act: relu,   se: true}}
  - {{channels: 24, stride: 1, act: hswish, se: true}}
head: {{final_expand: 48, feature_mix: 64, act: hswish}}
"""

CONFIG = """\
space: {space}
epochs: 1
seed: 0
device: cpu
data: {{batch_size: {batch}, val_fraction: 0.1}}
schedule: {{name: sandwich, random_subnets: 2}}
eval: {{calib_images: 64, random_subnets: 3}}
"""


def folders(work: Path, sizes: list[int], size: tuple[int, int]) -> dict[int, Path]:
    """DIR/n<N>/train/<class>/*.jpg for each size (hard links into the largest) and a shared val/."""
    pool = work / f"n{max(sizes)}"
    if not (pool / "train").is_dir():
        tmp = Path(tempfile.mkdtemp(dir=work))
        make_folder(tmp / "train-set", max(sizes), classes=CLASSES, size=size, seed=0)
        make_folder(tmp / "val-set", VAL_IMAGES, classes=CLASSES, size=size, seed=1)
        (pool / "train").parent.mkdir(parents=True, exist_ok=True)
        (tmp / "train-set" / "train").rename(pool / "train")
        (tmp / "val-set" / "train").rename(pool / "val")
        shutil.rmtree(tmp)
    out = {max(sizes): pool}
    for n in sizes:
        if n == max(sizes):
            continue
        d = out[n] = work / f"n{n}"
        for split, count in (("train", n), ("val", VAL_IMAGES)):
            for i in range(count):
                name = Path(f"c{i % CLASSES:02d}") / f"{i:06d}.jpg"
                if not (d / split / name).exists():
                    (d / split / name).parent.mkdir(parents=True, exist_ok=True)
                    os.link(pool / split / name, d / split / name)
    return out


def run_epoch(tree: Path, config: Path, data_dir: Path, out: Path, threads: int) -> dict:
    """One epoch through the CLI under /usr/bin/time; peak RSS in KiB (%M) and the epoch's metrics line."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["/usr/bin/time", "-f", "peak_rss_kib %M", sys.executable, "-m", "nasforge", "train-supernet",
           "--config", str(config), "--dataset", "imagefolder", "--data-dir", str(data_dir), "--loader", "stream",
           "--out", str(out), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=4 * 3600)
    if done.returncode != 0:
        raise SystemExit(f"train-supernet failed ({done.returncode}):\n{done.stderr[-2000:]}")
    peak = int(done.stderr.strip().splitlines()[-1].split()[-1])
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    data = json.loads((out / "data.json").read_text())
    return {"train_images": data["splits"]["train"], "val_images": data["splits"]["val"],
            "steps": record["iteration"], "peak_rss_kib": peak, "peak_rss_mib": round(peak / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, help="folders and runs (reused when present; default: temporary)")
    ap.add_argument("--tree", type=Path, default=REPO, help="the nasforge checkout to measure (default: this one)")
    ap.add_argument("--sizes", default="1200,3600,12000", help="training-folder sizes (images), comma-separated")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs")
    ap.add_argument("--dry-run", action="store_true", help="tiny images and folders: check the script, no numbers")
    args = ap.parse_args()
    if not Path("/usr/bin/time").exists():
        raise SystemExit("needs /usr/bin/time (apt-get install time)")
    sizes = sorted(int(v) for v in args.sizes.split(","))
    size, resolutions, batch = (200, 400), "128, 160", 32
    if args.dry_run:
        sizes, size, resolutions, batch = [40, 80], (24, 40), "16, 20", 8
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "space.yaml").write_text(SPACE.format(resolutions=resolutions))
        (work / "config.yaml").write_text(CONFIG.format(space=work / "space.yaml", batch=batch))
        data = folders(work, sizes, size)
        runs = []
        for n in sizes:
            runs.append({"images": n, **run_epoch(args.tree.resolve(), work / "config.yaml", data[n],
                                                  work / "runs" / f"n{n}", args.threads)})
            print(f"{n} images: peak RSS {runs[-1]['peak_rss_mib']} MiB", file=sys.stderr)
    print(json.dumps({"bench": "stream_memory", "dry_run": args.dry_run, "tree": str(args.tree.resolve()),
                      "threads": args.threads, "resolutions": resolutions, "batch": batch, "runs": runs,
                      "ratio_last_first": round(runs[-1]["peak_rss_kib"] / runs[0]["peak_rss_kib"], 3)}))


if __name__ == "__main__":
    main()
