"""Hardware targets: what runs the network (ORT provider, threads, batch) and its published specs.

Targets live in YAML (`configs/targets/*.yaml`; users pass their own file path). The specs
(peak FP32 FLOP/s, memory bandwidth) and an efficiency factor plus per-layer overhead drive
the roofline estimate used when no measured lookup table exists for a (target, space).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import LatencyError
from nasforge.io import read_yaml
from nasforge.resources import shipped_dir

TARGETS_DIR = shipped_dir("configs", "targets")
BACKENDS = ("ort", "torch-cuda")
PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass(frozen=True)
class Target:
    """One hardware target, read from YAML."""

    name: str
    description: str
    provider: str  # the ORT execution provider that times it
    threads: int  # intra-op threads (CPU EP); 1 for GPU EPs
    batch: int
    peak_flops: float  # FP32 FLOP/s, from the datasheet named in `sources`
    bandwidth: float  # bytes/s
    efficiency: float  # fraction of peak a batch-1 MobileNet reaches (calibrated, see `calibration`)
    per_layer_overhead_ms: float
    sources: tuple[str, ...] = ()
    calibration: dict[str, Any] = field(default_factory=dict)
    fallback_backend: str | None = None  # "torch-cuda": time with CUDA events when ORT lacks the provider
    path: str = ""


def list_targets(directory: Path = TARGETS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_target(name_or_path: str | Path) -> Target:
    """A shipped target by name (`cpu`, `gpu`, `jetson`, `rpi5`) or any target YAML by path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        path = TARGETS_DIR / f"{text}.yaml"
        if not path.exists():
            raise LatencyError(f"unknown target {text!r}; known targets: {', '.join(list_targets())} (or a YAML path)")
    if not path.exists():
        raise LatencyError(f"{path}: target file not found")
    raw = read_yaml(path, LatencyError, "target")
    return target_from_dict(raw, str(path))


def _number(
    raw: dict[str, Any], key: str, source: str, *, positive: bool = True, default: Any = None, integer: bool = False
) -> float:
    """A finite, non-negative (or positive) number; `.nan`, `.inf` and 1e400 are refused, naming the field."""
    value = raw.get(key, default)
    if isinstance(value, str):  # YAML 1.1 reads 1.28e12 (no exponent sign) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    kind = ("positive " if positive else "non-negative ") + ("integer" if integer else "finite number")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LatencyError(f"{source}: field '{key}': expected a {kind}, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        number = math.inf
    if not math.isfinite(number) or (positive and number <= 0) or number < 0 or (integer and not number.is_integer()):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise LatencyError(f"{source}: field '{key}': expected a {kind}, got {shown}")
    return number


def target_from_dict(raw: Any, source: str = "<memory>") -> Target:
    if not isinstance(raw, dict):
        raise LatencyError(f"{source}: a target must be a YAML mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise LatencyError(f"{source}: field 'name': expected a non-empty string, got {name!r}")
    provider = raw.get("provider", "CPUExecutionProvider")
    if provider not in PROVIDERS:
        raise LatencyError(f"{source}: field 'provider': expected one of {list(PROVIDERS)}, got {provider!r}")
    fallback = raw.get("fallback_backend")
    if fallback is not None and fallback not in BACKENDS:
        raise LatencyError(f"{source}: field 'fallback_backend': expected one of {list(BACKENDS)}, got {fallback!r}")
    efficiency = _number(raw, "efficiency", source)
    if efficiency > 1:
        raise LatencyError(f"{source}: field 'efficiency': expected a fraction of peak in (0, 1], got {efficiency}")
    sources = raw.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise LatencyError(f"{source}: field 'sources': expected a list of strings, got {sources!r}")
    calibration = raw.get("calibration", {})
    if not isinstance(calibration, dict):
        raise LatencyError(f"{source}: field 'calibration': expected a mapping, got {calibration!r}")
    return Target(
        name=name,
        description=str(raw.get("description", "")),
        provider=provider,
        threads=int(_number(raw, "threads", source, default=1, integer=True)),
        batch=int(_number(raw, "batch", source, default=1, integer=True)),
        peak_flops=_number(raw, "peak_flops", source),
        bandwidth=_number(raw, "bandwidth", source),
        efficiency=efficiency,
        per_layer_overhead_ms=_number(raw, "per_layer_overhead_ms", source, positive=False, default=0.0),
        sources=tuple(sources),
        calibration=calibration,
        fallback_backend=fallback,
        path=source,
    )
