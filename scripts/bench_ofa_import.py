"""Once-for-All's published nets in nasforge: `import-ofa` wall time and the max |logit difference| against OFA's code.

For each published net (MobileNetV3 w1.0 / w1.2, ProxylessNAS w1.3, ResNet50), OFA's own class is built with random
weights under which every tensor shows in the logits (`nasforge.testing.ofa`) and saved as OFA saves it
(`{"state_dict": ...}`). Then:

- import: `python -m nasforge import-ofa FILE --out RUN` in a fresh process, wall time (start-up included);
- logits: the largest, the smallest and --random random subnets at two resolutions, OFA's class against the
  imported run's supernet (set_active + forward) and its extracted static subnet, fp32, BN statistics estimated
  for each subnet (`compare_subnet`); the worst |difference| of each, and the least input dependence (spread).

    PYTHONPATH=. python scripts/bench_ofa_import.py                 # every net (a few minutes on 2 cores)
    PYTHONPATH=. python scripts/bench_ofa_import.py --nets ofa_proxyless_d234_e346_k357_w1.3 --random 1
    PYTHONPATH=. python scripts/bench_ofa_import.py --import-only    # import wall times alone (seconds)

The last line of stdout is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESOLUTIONS = {"resnet": (128, 144)}  # ResNet's second size gives odd feature maps; the MobileNets': 140
DEFAULT_RESOLUTIONS = (128, 140)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def time_import(ckpt: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nasforge", "import-ofa", str(ckpt), "--out", str(out)], check=True,
                   env=env, capture_output=True)
    return time.perf_counter() - t0


def compare(name: str, ofa_net: torch.nn.Module, run_dir: Path, random_archs: int, seed: int) -> dict[str, float]:
    from nasforge.foreign.ofa import PUBLISHED
    from nasforge.testing.ofa import compare_subnet
    from nasforge.train.runs import load_run

    run = load_run(run_dir, device="cpu")
    space, net = run.space, run.supernet.float().eval().to(memory_format=torch.contiguous_format)
    resolutions = RESOLUTIONS.get(PUBLISHED[name].family, DEFAULT_RESOLUTIONS)
    archs = [space.largest(), space.smallest()] + space.sample_many(np.random.default_rng(seed), random_archs)
    g = torch.Generator().manual_seed(seed)
    gaps = [compare_subnet(ofa_net, net, space, arch, resolutions, g) for arch in archs]
    return {"supernet_max_abs_diff": max(x.supernet for x in gaps),
            "extracted_max_abs_diff": max(x.extracted for x in gaps),
            "min_spread": min(x.spread for x in gaps), "subnets": len(archs), "resolutions": list(resolutions)}


def main() -> None:
    from nasforge.foreign.ofa import PUBLISHED
    from nasforge.testing.ofa import ofa_supernet, randomize_

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", default=",".join(PUBLISHED), help="comma list of published OFA nets")
    parser.add_argument("--random", type=int, default=2, help="random subnets compared besides largest and smallest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--import-only", action="store_true", help="time the imports, skip the logit comparison")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.nets.split(","):
            ofa_net = randomize_(ofa_supernet(name), torch.Generator().manual_seed(args.seed)).eval()
            ckpt = Path(tmp) / name
            torch.save({"state_dict": ofa_net.state_dict()}, ckpt)
            run_dir = Path(tmp) / f"run-{name}"
            seconds = time_import(ckpt, run_dir)
            size_mb = round(ckpt.stat().st_size / 2**20, 1)
            results[name] = {"import_seconds": round(seconds, 2), "checkpoint_mb": size_mb}
            line = f"{name}: import-ofa {seconds:.2f} s ({size_mb} MB)"
            if not args.import_only:
                gaps = compare(name, ofa_net, run_dir, args.random, args.seed)
                results[name].update(gaps)
                line += (f"; max |logit diff| supernet {gaps['supernet_max_abs_diff']:.2e}, extracted "
                         f"{gaps['extracted_max_abs_diff']:.2e} over {gaps['subnets']} subnets x "
                         f"{gaps['resolutions']} px (spread >= {gaps['min_spread']:.2f})")
            print(line, flush=True)
    print(json.dumps({"cpu": cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "load_average": os.getloadavg(), "nets": results}))


if __name__ == "__main__":
    main()
