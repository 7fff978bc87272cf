"""The ORT timing protocol, and the on-device bundle runner (needs only onnxruntime and numpy).

This file travels inside every bundle as `profile_bundle.py` (the bundle's `__main__.py` runs it:
`python bundle.zip --out lut.json`), so the same protocol times blocks on this machine and on a
Jetson or a Raspberry Pi that has no torch and no nasforge.

Protocol (one ONNX model at a time, batch fixed by the model's input shape):
  * session: graph optimisation ORT_ENABLE_ALL, intra-op threads fixed (`threads`),
    inter-op threads 1, sequential execution; the process is pinned to `threads`
    cores with `os.sched_setaffinity` and raised to nice -20 where the OS permits
    (without it, another CPU-bound process time-slices every run longer than a few ms,
    which inflated whole-network timings 1.3-2.7x on a loaded machine while sub-ms
    blocks stayed clean);
  * input: one fixed float32 tensor drawn from N(0, 1) with seed 0, fed from host memory;
  * warm-up: one untimed run (which builds a TensorRT/CUDA engine if the EP needs one),
    then `warmup` more untimed runs;
  * timing: `repeats` runs split into `rounds` rounds separated by a short pause, each run
    timed alone with `time.perf_counter` around `session.run` (host wall clock, output
    copied back to the host: what an application sees);
  * result: `median_ms` and `p90_ms` of the quietest round (the round with the lowest
    median), plus `median_all_ms` over every run. On a shared machine another process
    that takes the core for a while inflates a whole window of runs; the quietest of
    several rounds spread over time is robust against that, and on a quiet machine it
    equals the plain median within noise.
Isolated blocks run with warm caches and lose cross-block fusion, so a plain sum of block
medians is expected to be off from a whole network; nasforge fits a calibration on whole
subnets measured with this same protocol.

Usage on the device:  python bundle.zip --out lut.json [--provider ...]
            (or, extracted: python profile_bundle.py bundle.zip --out lut.json)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import sys
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

LUT_FORMAT = "nasforge-lut/1"
PROTOCOL_VERSION = 3
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def protocol(threads: int, warmup: int, repeats: int, rounds: int = 5) -> dict[str, Any]:
    """The protocol as it is recorded in every LUT's metadata."""
    return {
        "version": PROTOCOL_VERSION,
        "graph_optimization": "ORT_ENABLE_ALL",
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "execution_mode": "sequential",
        "affinity": "pinned to the first `threads` allowed cores (sched_setaffinity) where available",
        "priority": "nice -20 where permitted (the achieved value is recorded as `nice`)",
        "input": "float32 N(0,1), seed 0, host memory",
        "warmup_runs": 1 + warmup,
        "repeats": repeats,
        "rounds": rounds,
        "statistic": "median and p90 of the quietest round (lowest median) of per-run perf_counter wall times",
    }


def pin_threads(threads: int) -> list[int] | None:
    """Pin this process to `threads` cores (the first ones it may use); None where unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cores = allowed[: max(1, threads)]
    os.sched_setaffinity(0, cores)
    return cores


def raise_priority() -> int | None:
    """Ask for nice -20 (needs privileges); return the niceness this process ends up with."""
    if not hasattr(os, "setpriority"):
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -20)
    except OSError:
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)


@contextlib.contextmanager
def pinned(threads: int) -> Iterator[tuple[list[int] | None, int | None]]:
    """Pin to `threads` cores and raise priority for a measurement; give both back afterwards.

    Yields (cores pinned to, niceness reached). Affinity and niceness are process-wide: whoever times
    inside a larger program must not leave it on one core at nice -20.
    """
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    niceness = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None
    try:
        yield pin_threads(threads), raise_priority()
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
        if niceness is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, niceness)
            except OSError:
                pass


def providers_for(provider: str) -> list[Any]:
    """The ORT provider list for a provider name; TensorRT and CUDA fall back to the next one in line."""
    name = PROVIDER_ALIASES.get(provider.lower(), provider)
    if name == "TensorrtExecutionProvider":
        return [
            ("TensorrtExecutionProvider", {"trt_fp16_enable": False}),
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ]
    if name == "CUDAExecutionProvider":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [name]


def make_session(model: str | bytes, provider: str = "CPUExecutionProvider", threads: int = 1) -> Any:
    """An ORT session configured by the protocol (see the module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=providers_for(provider))


def session_feeds(session: Any) -> dict[str, np.ndarray]:
    """One fixed float32 N(0, 1) input per model input (seed 0)."""
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def time_session(
    session: Any,
    feeds: dict[str, np.ndarray],
    warmup: int = 10,
    repeats: int = 50,
    rounds: int = 5,
    pause_s: float = 0.02,
) -> dict[str, float]:
    """Warm up past any engine build, then time `repeats` single runs in `rounds` rounds (see the protocol)."""
    session.run(None, feeds)
    for _ in range(warmup):
        session.run(None, feeds)
    rounds = max(1, min(rounds, repeats))
    per_round = -(-repeats // rounds)
    times = np.empty((rounds, per_round), dtype=np.float64)
    for r in range(rounds):
        if r:
            time.sleep(pause_s)
        for i in range(per_round):
            start = time.perf_counter()
            session.run(None, feeds)
            times[r, i] = (time.perf_counter() - start) * 1e3
    quiet = times[int(np.argmin(np.median(times, axis=1)))]
    return {
        "median_ms": float(np.median(quiet)),
        "p90_ms": float(np.percentile(quiet, 90)),
        "median_all_ms": float(np.median(times)),
    }


def time_model(
    model: str | bytes, provider: str = "CPUExecutionProvider", threads: int = 1, warmup: int = 10, repeats: int = 50
) -> dict[str, float]:
    """Time one ONNX model (path or bytes) with the protocol."""
    session = make_session(model, provider, threads)
    return time_session(session, session_feeds(session), warmup, repeats)


def device_string() -> str:
    """A human-readable name of the machine: board model (Jetson, Pi) or CPU model."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            with open(path, "rb") as fh:
                text = fh.read().decode(errors="replace").strip("\x00 \n")
                if text:
                    return text
        except OSError:
            pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def used_provider(provider: str) -> str:
    """The provider that will actually run: the first requested one this ORT build offers."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    for entry in providers_for(provider):
        name = entry[0] if isinstance(entry, tuple) else entry
        if name in available:
            return name
    raise RuntimeError(f"none of {providers_for(provider)} is available (this ORT offers {sorted(available)})")


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
        cores, nice = stack.enter_context(pinned(threads))
        real_provider = used_provider(provider)
        lut: dict[str, Any] = {"format": LUT_FORMAT, "metadata": {}, "entries": {}, "verify": []}
        if os.path.exists(out):
            with open(out) as fh:
                lut = json.load(fh)
            lut.setdefault("verify", [])
        import onnxruntime as ort

        lut["metadata"].update(
            {
                "target": manifest["target"],
                "device": device_string(),
                "ort_version": ort.__version__,
                "provider": real_provider,
                "threads": threads,
                "cores": cores,
                "nice": nice,
                "batch": manifest["batch"],
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "protocol": protocol(threads, warmup, repeats),
                "space": manifest["space"],
                "space_fingerprint": manifest["space_fingerprint"],
                "made_by": "profile_bundle.py",
            }
        )
        blocks = manifest["blocks"]
        todo = [b for b in blocks if b["key"] not in lut["entries"]]
        log(f"{len(blocks)} blocks, {len(blocks) - len(todo)} already measured, provider {real_provider}")
        start = time.perf_counter()
        last_save = start
        for i, block in enumerate(todo):
            lut["entries"][block["key"]] = time_model(zf.read(block["file"]), provider, threads, warmup, repeats)
            now = time.perf_counter()
            if now - last_save > 10 or i + 1 == len(todo):
                write_json_atomic(out, lut)
                last_save = now
                done = i + 1
                eta = (now - start) / done * (len(todo) - done)
                log(f"  {done}/{len(todo)} blocks, ETA {eta:.0f} s")
        measured = {v["key"] for v in lut["verify"]}
        for model in manifest.get("verify", []):
            if model["key"] in measured:
                continue
            timing = time_model(zf.read(model["file"]), provider, threads, warmup, repeats)
            lut["verify"].append({**model, **timing})
            write_json_atomic(out, lut)
            log(f"  verify {model['key']}: {timing['median_ms']:.3f} ms")
        lut["metadata"]["build_seconds"] = round(
            float(lut["metadata"].get("build_seconds", 0.0)) + time.perf_counter() - start, 1
        )
        write_json_atomic(out, lut)
    return lut


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


if __name__ == "__main__":
    sys.exit(main())
