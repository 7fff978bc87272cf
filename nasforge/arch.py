"""The architecture config: one immutable, hashable value per distinct subnet.

An `ArchConfig` holds only the elastic choices. Slots of blocks that a stage's depth
switches off are stored as 0 (the canonical form), so two configs that describe the
same network compare and hash equal. Only a `SearchSpace` knows which slot belongs to
which stage; it produces canonical configs (`SearchSpace.canonical`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from nasforge.errors import ArchError


def _number(value: float) -> int | float:
    """Write 4.0 as 4 and 0.25 as 0.25, so JSON stays readable."""
    return int(value) if float(value).is_integer() else float(value)


@dataclass(frozen=True)
class ArchConfig:
    """Elastic choices of one subnet.

    resolution:    input side in pixels.
    depths:        active blocks per elastic stage.
    kernel_sizes:  depthwise kernel per block slot (0 = slot inactive).
    expand_ratios: expansion ratio per block slot (0 = slot inactive).
    width_mults:   width multiplier per width slot (ResNet stem and stages).
    """

    resolution: int
    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...] = ()
    expand_ratios: tuple[float, ...] = ()
    width_mults: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        # Normalise element types so (3, 4) and (3.0, 4.0) are one key.
        object.__setattr__(self, "resolution", int(self.resolution))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "kernel_sizes", tuple(int(k) for k in self.kernel_sizes))
        object.__setattr__(self, "expand_ratios", tuple(float(e) for e in self.expand_ratios))
        object.__setattr__(self, "width_mults", tuple(float(w) for w in self.width_mults))

    def to_dict(self) -> dict[str, Any]:
        """nasforge's JSON form (the one every artifact stores)."""
        out: dict[str, Any] = {"resolution": self.resolution, "depths": list(self.depths)}
        if self.kernel_sizes:
            out["kernel_sizes"] = list(self.kernel_sizes)
        if self.expand_ratios:
            out["expand_ratios"] = [_number(e) for e in self.expand_ratios]
        if self.width_mults:
            out["width_mults"] = [_number(w) for w in self.width_mults]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @property
    def key(self) -> str:
        """Compact, stable string key (timm-style), e.g. ``r224-d2,3,4-k3,5,0-e4,6,0``."""
        parts = [f"r{self.resolution}", "d" + ",".join(map(str, self.depths))]
        if self.kernel_sizes:
            parts.append("k" + ",".join(map(str, self.kernel_sizes)))
        if self.expand_ratios:
            parts.append("e" + ",".join(str(_number(e)) for e in self.expand_ratios))
        if self.width_mults:
            parts.append("w" + ",".join(str(_number(w)) for w in self.width_mults))
        return "-".join(parts)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        """Parse nasforge's JSON form; values are checked against a space by `SearchSpace.validate`."""
        if not isinstance(data, dict):
            raise ArchError(f"an arch must be a JSON object, got {type(data).__name__}")
        known = {"resolution", "depths", "kernel_sizes", "expand_ratios", "width_mults"}
        unknown = sorted(set(data) - known - {"macs", "params"})
        if unknown:
            raise ArchError(f"unknown arch field(s) {unknown}; expected {sorted(known)}")
        if "resolution" not in data or "depths" not in data:
            raise ArchError("an arch needs at least 'resolution' and 'depths'")
        try:
            return cls(
                resolution=_as_int(data["resolution"], "resolution"),
                depths=tuple(_as_int(v, "depths") for v in _as_list(data["depths"], "depths")),
                kernel_sizes=tuple(
                    _as_int(v, "kernel_sizes") for v in _as_list(data.get("kernel_sizes", []), "kernel_sizes")
                ),
                expand_ratios=tuple(
                    _as_float(v, "expand_ratios") for v in _as_list(data.get("expand_ratios", []), "expand_ratios")
                ),
                width_mults=tuple(
                    _as_float(v, "width_mults") for v in _as_list(data.get("width_mults", []), "width_mults")
                ),
            )
        except (TypeError, ValueError) as exc:  # pragma: no cover - guarded above
            raise ArchError(f"malformed arch: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"arch is not valid JSON: {exc.msg} at position {exc.pos}") from None
        return cls.from_dict(data)


def _as_list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ArchError(f"arch field '{name}' must be a list, got {value!r}")
    return list(value)


def _as_int(value: Any, name: str) -> int:
    """An integral JSON number; NaN, infinities (JSON's 1e400) and 2.5 are one-line ArchErrors."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArchError(f"arch field '{name}' must hold integers, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise ArchError(f"arch field '{name}' must hold integers, got {value!r}")
    return int(value)


def _as_float(value: Any, name: str) -> float:
    """A finite JSON number (an int too large for a float is refused, not an OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArchError(f"arch field '{name}' must hold numbers, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ArchError(f"arch field '{name}' must hold finite numbers, got {_short(value)}")
    return number


def _short(value: Any) -> str:
    """A value for a one-line message (a 400-digit integer is cut)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
