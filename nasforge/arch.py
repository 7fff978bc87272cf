"""The architecture config: one immutable, hashable value per distinct subnet.

An `ArchConfig` holds only the elastic choices, one tuple of values per elastic field the space declares.
Slots of blocks that a stage's depth switches off are stored as 0 (the canonical form), so two configs that
describe the same network compare and hash equal. Only a `SearchSpace` knows which slot belongs to which
stage, and which fields it has; it produces canonical configs (`SearchSpace.canonical`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nasforge.errors import ArchError


def _number(value: float) -> int | float:
    """Write 4.0 as 4 and 0.25 as 0.25, so JSON stays readable."""
    return int(value) if float(value).is_integer() else float(value)


STANDARD_FIELDS: tuple[str, ...] = ("depths", "kernel_sizes", "expand_ratios", "width_mults")
_INTEGER_FIELDS = frozenset({"depths", "kernel_sizes"})
_KEY_LETTERS = {"depths": "d", "kernel_sizes": "k", "expand_ratios": "e", "width_mults": "w"}


def _convert(name: str, value: Any) -> int | float:
    if name in _INTEGER_FIELDS:
        return int(value)
    if name in STANDARD_FIELDS:
        return float(value)
    return _number(value)  # another family's field: its space types it (`SearchSpace.validate`)


@dataclass(frozen=True, init=False)
class ArchConfig:
    """Elastic choices of one subnet: the input resolution and one tuple of values per elastic field.

    The fields are whatever the space's gene groups declare (`nasforge.genes`); the conv families use
    depths (active blocks per stage), kernel_sizes and expand_ratios (per block slot, 0 = slot inactive) and
    width_mults (per width slot), which stay attributes and keep their JSON names. Empty fields are dropped
    and the rest kept in one canonical order, so one network has one key, hash and JSON form.
    """

    resolution: int
    values: tuple[tuple[str, tuple[int | float, ...]], ...]

    def __init__(
        self,
        resolution: int,
        depths: Iterable[float] = (),
        kernel_sizes: Iterable[float] = (),
        expand_ratios: Iterable[float] = (),
        width_mults: Iterable[float] = (),
        *,
        values: Mapping[str, Iterable[float]] | Iterable[tuple[str, Iterable[float]]] = (),
    ) -> None:
        given: dict[str, Iterable[float]] = dict(
            zip(STANDARD_FIELDS, (depths, kernel_sizes, expand_ratios, width_mults))
        )
        given.update(dict(values.items() if isinstance(values, Mapping) else values))
        order = [f for f in STANDARD_FIELDS] + sorted(set(given) - set(STANDARD_FIELDS))
        fields = tuple((name, tuple(_convert(name, v) for v in given[name])) for name in order)
        object.__setattr__(self, "resolution", int(resolution))
        object.__setattr__(self, "values", tuple((n, v) for n, v in fields if v))

    def get(self, name: str) -> tuple[int | float, ...]:
        """The values of elastic field `name` (() when the arch has none)."""
        return next((v for n, v in self.values if n == name), ())

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.values)

    @property
    def depths(self) -> tuple[int, ...]:
        return self.get("depths")  # type: ignore[return-value]

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        return self.get("kernel_sizes")  # type: ignore[return-value]

    @property
    def expand_ratios(self) -> tuple[float, ...]:
        return self.get("expand_ratios")  # type: ignore[return-value]

    @property
    def width_mults(self) -> tuple[float, ...]:
        return self.get("width_mults")  # type: ignore[return-value]

    def with_resolution(self, resolution: int) -> ArchConfig:
        return ArchConfig(resolution, values=self.values)

    def to_dict(self) -> dict[str, Any]:
        """nasforge's JSON form (the one every artifact stores): resolution, then each field as a list."""
        out: dict[str, Any] = {"resolution": self.resolution}
        if not self.depths:
            out["depths"] = []
        for name, values in self.values:
            out[name] = [_number(v) for v in values] if name not in _INTEGER_FIELDS else list(values)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @property
    def key(self) -> str:
        """Compact, stable string key (timm-style), e.g. ``r224-d2,3,4-k3,5,0-e4,6,0``; other fields as
        ``name=v,v``."""
        parts = [f"r{self.resolution}", "d" + ",".join(map(str, self.depths))]
        for name, values in self.values:
            if name != "depths":
                parts.append(_KEY_LETTERS.get(name, f"{name}=") + ",".join(str(_number(v)) for v in values))
        return "-".join(parts)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={v}" for n, v in self.values)
        return f"ArchConfig(resolution={self.resolution}, {fields})"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        """Parse nasforge's JSON form; fields and values are checked against a space by `SearchSpace.validate`."""
        if not isinstance(data, dict):
            raise ArchError(f"an arch must be a JSON object, got {type(data).__name__}")
        if "resolution" not in data or "depths" not in data:
            raise ArchError("an arch needs at least 'resolution' and 'depths'")
        values: dict[str, tuple[int | float, ...]] = {}
        for name, raw in data.items():
            if name in ("resolution", "macs", "params"):
                continue
            if not isinstance(name, str) or not name.isidentifier():
                raise ArchError(f"unknown arch field {name!r}; fields are names such as {list(STANDARD_FIELDS)}")
            parse = _as_int if name in _INTEGER_FIELDS else _as_float
            values[name] = tuple(parse(v, name) for v in _as_list(raw, name))
        return cls(_as_int(data["resolution"], "resolution"), values=values)

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
