"""Streaming data source: decode+augment images/s with 0, 1 and 2 workers, and peak RSS of one epoch.

Throughput: one training epoch of `--loader stream` over a folder of 200-500 px JPEGs (generated, or
yours with --data-dir), RandomResizedCrop + flip (+ --augment policy) to --resolution, per worker
count. Peak RSS: one epoch over a 120-image and a 1,200-image folder, each in a fresh subprocess
(VmHWM of that process: ru_maxrss survives execve, so it would report the parent's peak; worker
processes are reported separately): a source that
caches images grows with the folder, a streaming one does not.

    PYTHONPATH=. python scripts/bench_data.py                      # the reference run (quiet machine)
    PYTHONPATH=. python scripts/bench_data.py --data-dir ~/imagenet-subset --workers 0,4,8
    PYTHONPATH=. python scripts/bench_data.py --dry-run            # tiny sizes: proves the script works

The last line of stdout is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_folder(
    root: Path, images: int, *, classes: int = 10, size: tuple[int, int] = (200, 500), seed: int = 0
) -> Path:
    """DIR/train/<class>/*.jpg (`images` of them) and DIR/val/<class>/*.jpg (one per class), photo-like JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", images), ("val", classes)):
        for i in range(n):
            folder = root / split / f"c{i % classes:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            w, h = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
            coarse = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
            pixels = np.asarray(coarse, dtype=np.float32) + rng.normal(0, 12, (h, w, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)
    return root


def open_stream(data_dir: Path, resolution: int, workers: int, augment: str):
    from nasforge.data import AugmentConfig, DataSettings, open_source

    settings = DataSettings(
        dataset="imagefolder",
        data_dir=str(data_dir),
        loader="stream",
        workers=workers,
        val_fraction=0.0,
        normalization="imagenet",
        augment=AugmentConfig(auto_augment=augment),
    )
    return open_source(settings, resolution=resolution)


def throughput(data_dir: Path, resolution: int, batch: int, workers: int, augment: str) -> dict:
    """Images/s over one epoch, with and without the first batch (worker start-up, first decodes)."""
    source = open_stream(data_dir, resolution, workers, augment)
    t0 = time.perf_counter()
    first = None
    images = 0
    for x, _ in source.train_batches(0, batch_size=batch, seed=0):
        images += int(x.shape[0])
        if first is None:
            first = time.perf_counter()
    t1 = time.perf_counter()
    steady = images - batch
    return {
        "workers": workers,
        "images": images,
        "seconds": round(t1 - t0, 3),
        "images_per_s": round(images / (t1 - t0), 1),
        "steady_images_per_s": round(steady / (t1 - first), 1) if steady > 0 and first and t1 > first else None,
    }


def rss_child(data_dir: Path, resolution: int, batch: int, workers: int) -> dict:
    """Runs in a fresh process: RSS before and after one streaming epoch."""
    source = open_stream(data_dir, resolution, workers, "none")
    before = _status_kib("VmRSS")
    first = -1
    batches = 0
    for _ in source.train_batches(0, batch_size=batch, seed=0):
        batches += 1
        if batches == 1:
            first = _status_kib("VmRSS")  # lazy imports (torchvision transforms, DataLoader) are done by now
    out = {
        "train_images": source.split_size("train"),
        "batches": batches,
        "workers": workers,
        "rss_before_epoch_mib": round(before / 1024, 1),
        "rss_after_first_batch_mib": round(first / 1024, 1),
        # VmHWM: this process image's peak. ru_maxrss is not: Linux keeps it across execve, so a child
        # started by a big parent reports the parent's peak (kept for comparison, as `ru_maxrss_mib`)
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1),
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if workers > 0:  # the largest child ever; note `import torch` itself runs one (~0.4 GiB with torch 2.14)
        out["children_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return out


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def peak_rss(data_dir: Path, resolution: int, batch: int, workers: int) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--rss-child",
        "--data-dir",
        str(data_dir),
        "--resolution",
        str(resolution),
        "--batch",
        str(batch),
        "--rss-workers",
        str(workers),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, help="an ImageFolder (train/<class>/*) to read instead of generated JPEGs")
    ap.add_argument("--work-dir", type=Path, help="where generated folders go (default: a temporary folder)")
    ap.add_argument("--images", type=int, default=480, help="generated training images for the throughput run")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", default="0,1,2", help="worker counts to time, comma-separated")
    ap.add_argument("--augment", default="none", help="none | randaugment | autoaugment")
    ap.add_argument("--rss-sizes", default="120,1200", help="training images of the folders whose peak RSS is read")
    ap.add_argument("--rss-workers", type=int, default=0, help="workers in the RSS runs (0: all in one process)")
    ap.add_argument("--dry-run", action="store_true", help="tiny images and folders: check the script, no numbers")
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.rss_child:
        print(json.dumps(rss_child(args.data_dir, args.resolution, args.batch, args.rss_workers)))
        return
    size = (200, 500)
    if args.dry_run:
        args.images, args.resolution, args.batch, args.rss_sizes, size = 16, 32, 4, "12,36", (40, 80)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        work = Path(tmp)
        data_dir = args.data_dir or make_folder(work / "throughput", args.images, size=size)
        warm = open_stream(data_dir, args.resolution, 0, args.augment)  # imports and first decodes, untimed
        next(
            iter(warm.train_batches(0, batch_size=args.batch, seed=1, start_step=warm.steps_per_epoch(args.batch) - 1))
        )
        speed = []
        for w in (int(v) for v in args.workers.split(",")):
            speed.append(throughput(data_dir, args.resolution, args.batch, w, args.augment))
            print(f"workers {w}: {speed[-1]['images_per_s']} images/s", file=sys.stderr)
        rss = []
        for n in (int(v) for v in args.rss_sizes.split(",")):
            folder = make_folder(work / f"rss{n}", n, size=size, seed=n)
            rss.append(peak_rss(folder, args.resolution, args.batch, args.rss_workers))
            print(f"{n} images: peak RSS {rss[-1]['peak_rss_mib']} MiB (VmHWM)", file=sys.stderr)
    import torch
    import torchvision

    print(
        json.dumps(
            {
                "bench": "data_stream",
                "dry_run": args.dry_run,
                "data_dir": str(args.data_dir or "generated"),
                "resolution": args.resolution,
                "batch": args.batch,
                "augment": args.augment,
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "throughput": speed,
                "rss": rss,
                "rss_growth_mib": round(rss[-1]["peak_rss_mib"] - rss[0]["peak_rss_mib"], 1) if rss else None,
                "rss_ratio": round(rss[-1]["peak_rss_mib"] / rss[0]["peak_rss_mib"], 3) if rss else None,
            }
        )
    )


if __name__ == "__main__":
    main()
