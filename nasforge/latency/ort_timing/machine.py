"""The machine's fingerprint: what a timing depends on, as every table records it (`metadata.machine`)."""

from __future__ import annotations

import os
import platform
from typing import Any


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


# instruction-set flags that change which kernels ORT's MLAS picks (x86 and Arm spellings from /proc/cpuinfo)
ISA_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
    "neon", "asimd", "asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16",
)


def _cpuinfo_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("flags", "features")):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


def _cpu_id() -> str | None:
    """vendor family/model/stepping from /proc/cpuinfo, e.g. "AuthenticAMD 26/2/1" (x86) or
    "ARM 0x41/0xd0c/0x3/1" (implementer/part/variant/revision on Arm, whose model name is often absent);
    None elsewhere."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
    except OSError:
        return None
    if "vendor_id" not in fields:
        if "cpu implementer" in fields and "cpu part" in fields:
            return "ARM " + "/".join(fields.get(k, "?") for k in ("cpu implementer", "cpu part", "cpu variant",
                                                                   "cpu revision"))
        return None
    family, model, stepping = (fields.get(k, "?") for k in ("cpu family", "model", "stepping"))
    return f"{fields['vendor_id']} {family}/{model}/{stepping}"


def _cache_kb() -> dict[str, int]:
    """Per-level cache sizes of cpu0 in KiB from sysfs (L1d, L2, L3); {} where not exposed."""
    out: dict[str, int] = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return out
    for name in names:
        if not name.startswith("index"):
            continue
        try:
            with open(f"{base}/{name}/level") as fh:
                level = fh.read().strip()
            with open(f"{base}/{name}/type") as fh:
                kind = fh.read().strip()
            with open(f"{base}/{name}/size") as fh:
                size = fh.read().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        label = f"L{level}" + ("d" if kind == "Data" else "")
        mult = 1024 if size.endswith("M") else 1
        try:
            out[label] = int(size.rstrip("KM")) * mult
        except ValueError:
            pass
    return out


def machine_info(provider: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """What a timing depends on, as recorded in every LUT (`metadata.machine`).

    `cpu` + `isa` identify the machine (`nasforge.latency.lut.machine_differences`); the rest says
    what else may differ between two machines with the same CPU.
    """
    flags = _cpuinfo_flags()
    try:
        import onnxruntime as ort

        ort_version = ort.__version__
    except ImportError:
        ort_version = None
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": device_string(),
        "cpu_id": _cpu_id(),
        "arch": platform.machine(),
        "isa": sorted(f for f in flags if f in ISA_FLAGS),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": allowed,
        "cache_kb": _cache_kb(),
        "virtual_machine": "hypervisor" in flags,
        "os": f"{platform.system()} {platform.release()}",
        "ort_version": ort_version,
        "provider": provider,
        "threads": threads,
    }


