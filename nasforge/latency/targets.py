"""Hardware targets: what runs the network (ORT provider, threads, batch) and its published specs.

Targets live in YAML (`configs/targets/*.yaml`; users pass their own file path). The specs
(peak FP32 FLOP/s, memory bandwidth) and an efficiency factor plus per-layer overhead drive
the roofline estimate used when no measured lookup table exists for a (target, space).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nasforge.config import Validated, check, load_dataclass
from nasforge.errors import LatencyError
from nasforge.io import read_yaml
from nasforge.latency.registry import TIMING_BACKENDS
from nasforge.resources import shipped_dir

TARGETS_DIR = shipped_dir("configs", "targets")
Provider = Literal["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]


@dataclass(frozen=True)
class Target(Validated):
    """One hardware target, read from YAML."""

    name: str
    peak_flops: float = field(metadata=check(gt=0))  # FP32 FLOP/s, from the datasheet named in `sources`
    bandwidth: float = field(metadata=check(gt=0))  # bytes/s
    # fraction of peak a batch-1 MobileNet reaches (calibrated, see `calibration`)
    efficiency: float = field(metadata=check(gt=0, le=1))
    description: str = ""
    provider: Provider = "CPUExecutionProvider"  # the ORT execution provider that times it
    threads: int = field(default=1, metadata=check(gt=0))  # intra-op threads (CPU EP); 1 for GPU EPs
    batch: int = field(default=1, metadata=check(gt=0))
    per_layer_overhead_ms: float = field(default=0.0, metadata=check(ge=0))
    sources: tuple[str, ...] = ()
    calibration: dict[str, Any] = field(default_factory=dict)
    # a backend to time with when ORT lacks the provider (e.g. "torch-cuda": PyTorch with CUDA events)
    fallback_backend: str | None = field(default=None, metadata=check(choices=TIMING_BACKENDS))
    # true: the target is "the machine running nasforge" (cpu); a table measured on another machine is
    # then labelled "measured on <its CPU>", never "measured"
    local: bool = False
    path: str = ""  # the YAML it came from (set by `load_target`)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name:
            raise LatencyError("field 'name': expected a non-empty string, got ''")

    @property
    def backends(self) -> tuple[str, ...]:
        """Timing backends in order of preference: ONNX Runtime, then the fallback."""
        return ("ort",) + ((self.fallback_backend,) if self.fallback_backend else ())


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


def target_from_dict(raw: Any, source: str = "<memory>") -> Target:
    if isinstance(raw, dict) and "path" in raw:
        raise LatencyError(f"{source}: unknown key(s) ['path']")
    target = load_dataclass(Target, raw, source=source, error=LatencyError)
    return Target(**{**target.__dict__, "path": source})
