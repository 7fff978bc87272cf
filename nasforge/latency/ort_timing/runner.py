"""The bundle's command line: `python bundle.zip --out lut.json` times every block and whole subnet of a bundle."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import zipfile
from typing import Any

from .machine import device_string, machine_info
from .onnx_null import null_model
from .session import SUBNET_GROUP, SUBNET_MIN_TIMED_MS, pinned, used_provider
from .stats import reference_speed
from .tablemeta import LUT_FORMAT, table_metadata, utc_now
from .timing import measure_in_groups, time_model, time_models, time_stable, time_stable_many

# `made_by` of a table timed from a bundle: the runner's file name before it became this package (the format keeps it)
MADE_BY = "profile_bundle.py"


def write_json_atomic(path: str, obj: Any) -> None:
    """Temp file in the same folder, fsync, then rename: a LUT on disk is never half written.

    The temp file is created with mode 0666 (the kernel applies the umask), as a plain open() would.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_bundle(
    bundle: str,
    out: str,
    provider: str | None = None,
    threads: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Time every block (and every verify model) of a bundle; resumes from an existing `out`."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    with zipfile.ZipFile(bundle) as zf, contextlib.ExitStack() as stack:
        manifest = json.loads(zf.read("manifest.json"))
        cfg = manifest["protocol"]
        provider = provider or manifest["provider"]
        threads = int(threads or cfg["intra_op_threads"])
        warmup = int(warmup if warmup is not None else cfg["warmup_runs"] - 1)
        repeats = int(repeats or cfg["repeats"])
        real_provider = used_provider(provider)
        machine = machine_info(real_provider, threads)  # before pinning: the machine, not this process's share
        cores, nice = stack.enter_context(pinned(threads))
        lut: dict[str, Any] = {"format": LUT_FORMAT, "metadata": {}, "entries": {}, "verify": []}
        if os.path.exists(out):
            with open(out) as fh:
                lut = json.load(fh)
            lut.setdefault("verify", [])
        lut["metadata"].update(table_metadata(
            target=manifest["target"], space=manifest["space"], space_fingerprint=manifest["space_fingerprint"],
            batch=manifest["batch"], device=device_string(), machine=machine, provider=real_provider, threads=threads,
            warmup=warmup, repeats=repeats, cores=cores, nice=nice, date=utc_now(), made_by=MADE_BY,
        ))

        references = manifest.get("reference") or {}  # bundles older than protocol v6 carry none

        def timed_many(files: list[str], kind: str) -> list[dict[str, Any]]:
            models = [zf.read(f) for f in files]
            ref = zf.read(references[kind]["file"]) if kind in references else None
            least = SUBNET_MIN_TIMED_MS if kind == "subnet" else 0.0
            return time_stable_many(
                lambda idx: time_models([models[i] for i in idx], provider, threads, warmup, repeats, ref, least),
                len(models),
            )

        if "run_overhead_ms" not in lut["metadata"]:
            overhead = time_stable(lambda: time_model(null_model(), provider, threads, warmup, repeats))
            lut["metadata"]["run_overhead_ms"] = overhead["median_ms"]
        start = time.perf_counter()
        _time_bundle_blocks(lut, manifest["blocks"], timed_many, out, log)
        _time_bundle_subnets(lut, manifest.get("verify", []), timed_many, out, log)
        if "block" in references:
            lut["metadata"]["speed_reference"] = {
                **lut["metadata"].get("speed_reference", {}),
                "block": references["block"]["key"],
                "block_ms": reference_speed(lut["entries"].values()),
                "subnet": references.get("subnet", {}).get("key"),
            }
        lut["metadata"]["build_seconds"] = round(
            float(lut["metadata"].get("build_seconds", 0.0)) + time.perf_counter() - start, 1
        )
        write_json_atomic(out, lut)
    return lut


def _time_bundle_blocks(lut: dict[str, Any], blocks: list[dict[str, Any]], timed_many: Any, out: str, log: Any) -> None:
    """Blocks not yet in the table, in interleaved groups; saved every 10 s so a killed run resumes."""
    todo = [b for b in blocks if b["key"] not in lut["entries"]]
    log(f"{len(blocks)} blocks, {len(blocks) - len(todo)} already measured, provider {lut['metadata']['provider']}")
    start = time.perf_counter()

    def record(block: dict[str, Any], timing: dict[str, Any]) -> None:
        lut["entries"][block["key"]] = timing

    def save(done: int, total: int) -> None:
        write_json_atomic(out, lut)
        eta = (time.perf_counter() - start) / max(done, 1) * (total - done)
        log(f"  {done}/{total} blocks, ETA {eta:.0f} s")

    measure_in_groups(todo, lambda group: timed_many([b["file"] for b in group], "block"), record, save)


def _time_bundle_subnets(
    lut: dict[str, Any], verify: list[dict[str, Any]], timed_many: Any, out: str, log: Any
) -> None:
    """Whole subnets not yet timed: validation, then top-K, then the repeats (minutes after their first timing)."""
    measured = {v["key"] for v in lut["verify"]}
    pending = [m for m in verify if m["key"] not in measured]
    for role in ("validation", "topk", "repeat"):
        models = [m for m in pending if m.get("role") == role]
        for g in range(0, len(models), SUBNET_GROUP):
            group = models[g : g + SUBNET_GROUP]
            for model, timing in zip(group, timed_many([m["file"] for m in group], "subnet")):
                lut["verify"].append({**model, **timing})
                log(f"  verify {model['key']}: {timing['median_ms']:.3f} ms (spread {timing['spread']:.0%})")
            write_json_atomic(out, lut)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the blocks of a nasforge bundle with ONNX Runtime.")
    parser.add_argument("bundle", help="bundle.zip written by `nasforge profile --bundle`")
    parser.add_argument("--out", default="lut.json", help="LUT file to write (re-running resumes it)")
    parser.add_argument("--provider", default=None, help="cpu, cuda, tensorrt or an ORT provider name")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        run_bundle(args.bundle, args.out, args.provider, args.threads, args.warmup, args.repeats)
    except (OSError, KeyError, RuntimeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0
