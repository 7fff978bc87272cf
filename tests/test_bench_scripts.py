"""The benchmark scripts behind BENCHMARKS.md still run (at their smallest settings) and end in one JSON line.

They are not unit-tested otherwise; without this a refactor could break them silently until the next
benchmark session. Numbers are not checked here: speed is measured in benchmarks, not in tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, cwd: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_bench_latency_quick(tmp_path):
    out = _run("bench_latency.py", "--quick", "--out", str(tmp_path / "tables"), cwd=tmp_path)
    (space,) = out["spaces"]
    assert space["space"] == "mobilenetv3-tiny" and space["blocks"] > 0
    assert {"interleaved", "repeatability_median_diff_pct"} <= set(space["independent"])
    assert (tmp_path / "tables" / "cpu__mobilenetv3-tiny.json").is_file()


@pytest.mark.slow
def test_bench_data_dry_run(tmp_path):
    out = _run("bench_data.py", "--dry-run", "--work-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert out["dry_run"] and [r["workers"] for r in out["throughput"]] == [0, 1, 2]
    assert len(out["rss"]) == 2 and all(r["peak_rss_mib"] > 0 for r in out["rss"])


def test_bench_timing_drift_one_second(tmp_path):
    out = _run("bench_timing_drift.py", "--space", "mobilenetv3-tiny", "--arch", "smallest", "--seconds", "1",
               cwd=tmp_path)
    assert out["seconds"] == 1 and out["median_of_medians_ms"] > 0


def test_bench_vs_ofa_one_step(tmp_path):
    out = _run("bench_vs_ofa.py", "--device", "cpu", "--res", "128", "--batch", "2", "--steps", "1",
               "--warmup", "0", "--threads", "2", cwd=tmp_path)
    assert out["ratio"] > 0 and out["same_weights_logit_gap"] < 1e-4
