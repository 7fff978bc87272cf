"""One typed loader for every YAML nasforge reads: YAML mapping -> frozen dataclass, checked on the way.

Training, search and quickstart configs, hardware targets and search spaces are frozen dataclasses.
`load_dataclass(cls, raw, source=...)` builds one from a parsed YAML mapping, converting and checking
every field by its type hint, and raises one line naming the file and the field:

    configs/x.yaml: field 'optim.lr': expected a finite number, got nan
    configs/x.yaml: field 'schedule': unknown key(s) ['bogus']; expected some of ['name', ...]

Bounds and choices ride on the fields (`field(default=..., metadata=check(gt=0))`, `Literal[...]`,
or `check(choices=REGISTRY)` for a registry's names); checks that span fields live in the class's
`__post_init__`, which raises `ConfigError` for a field with `field_error`. Non-finite numbers
(YAML's `.nan`, `.inf`) are refused everywhere unless a field says `check(finite=False)`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from nasforge.errors import ConfigError, NasforgeError

T = TypeVar("T")

def check(
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: Any = None,
    finite: bool = True,
    nonempty: bool = False,
) -> dict[str, Any]:
    """Field metadata: numeric bounds, allowed values (a sequence or a `Registry`), non-empty lists."""
    return {"nasforge_check": {"gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices, "finite": finite,
                               "nonempty": nonempty}}


class FieldError(ConfigError):
    """A field's value is wrong; `path` names it, the loader adds the file."""

    def __init__(self, path: str, message: str, expected: str | None = None) -> None:
        super().__init__(f"field '{path}': {message}" if path else message)
        self.path = path
        self.detail = message
        self.expected = expected


def field_error(path: str, expected: str, got: Any) -> FieldError:
    """The error for a field (used by `__post_init__` checks): `field 'a.b': expected X, got Y`."""
    shown = repr(got)
    if len(shown) > 60:  # a 400-digit number or a pasted blob: the start says enough
        shown = shown[:57] + "..."
    return FieldError(path, f"expected {expected}, got {shown}", expected)


def load_dataclass(
    cls: type[T],
    raw: Any,
    *,
    source: str | None = "<memory>",
    error: type[NasforgeError] = ConfigError,
) -> T:
    """Build `cls` from a YAML mapping; every problem is one `error` naming `source` (if any) and the field."""
    try:
        return _build(cls, raw, "")
    except ConfigError as exc:
        raise error(f"{source}: {exc}" if source else str(exc)) from None


def replace_path(obj: T, dotted: str, value: Any) -> T:
    """`dataclasses.replace` at a dotted path (`"schedule.name"`), converting `value` by the field's type."""
    try:
        return _replace(obj, dotted.split("."), value, dotted)
    except FieldError as exc:
        raise ConfigError(str(exc)) from None


def to_plain(obj: Any) -> Any:
    """A dataclass (tree) as plain dicts/lists, for YAML and JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------- internals
def _build(cls: type[T], raw: Any, where: str) -> T:
    if isinstance(raw, cls):
        return raw  # type: ignore[return-value]
    if raw is None and not where:
        raw = {}  # an empty YAML file: every default
    if not isinstance(raw, Mapping):
        raise field_error(where, "a mapping", raw) if where else ConfigError(
            f"expected a YAML mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in raw if k not in fields)
    if unknown:
        msg = f"unknown key(s) {unknown}; expected some of {sorted(fields)}"
        raise FieldError(where, msg) if where else ConfigError(msg)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():  # declaration order: the first wrong field is the one reported
        path = f"{where}.{name}" if where else name
        rules = f.metadata.get("nasforge_check")
        if name in raw:
            kwargs[name] = _convert(hints[name], raw[name], path, rules)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            _convert(hints[name], None, path, rules)  # says what was expected
            raise FieldError(path, "is required")
    try:
        return cls(**kwargs)
    except FieldError as exc:
        if where and not exc.path.startswith(where):
            raise FieldError(f"{where}.{exc.path}" if exc.path else where, exc.detail) from None
        raise


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(hint)
    return None


def _same_shape(hint: Any, value: Any) -> bool:
    """Whether `value` has the container shape of `hint` (a list for tuples, a mapping for dataclasses)."""
    if dataclasses.is_dataclass(hint) or typing.get_origin(hint) in (dict, Mapping):
        return isinstance(value, Mapping)
    if typing.get_origin(hint) is tuple:
        return isinstance(value, (list, tuple))
    return not isinstance(value, (Mapping, list, tuple))


def _convert(hint: Any, value: Any, path: str, rules: dict[str, Any] | None = None) -> Any:
    union = _union_args(hint)
    if union is not None:
        if value is None and type(None) in union:
            return None
        inner = [a for a in union if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path, rules)
        errors: list[FieldError] = []
        for option in inner:
            try:
                return _convert(option, value, path, rules)
            except FieldError as exc:
                errors.append(exc)
        shaped = [e for o, e in zip(inner, errors) if _same_shape(o, value)]
        if len(shaped) == 1:
            raise shaped[0]
        if all(e.expected and e.path == path for e in errors):
            raise field_error(path, " or ".join(e.expected for e in errors), value)  # type: ignore[misc]
        raise FieldError(path, " or ".join(e.detail for e in errors))
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in args:
            raise field_error(path, f"one of {list(args)}", value)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise field_error(path, "a list", value)
        if rules and rules.get("nonempty") and not value:
            raise field_error(path, "a non-empty list", value)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is None:
            if len(value) != len(args):
                raise field_error(path, f"a list of {len(args)} values", value)
            return tuple(_convert(a, v, f"{path}[{i}]", rules) for i, (a, v) in enumerate(zip(args, value)))
        try:
            return tuple(_convert(item, v, f"{path}[{i}]", rules) for i, v in enumerate(value))
        except FieldError as exc:
            if exc.expected and not dataclasses.is_dataclass(item):  # name the list, not one item
                raise field_error(path, f"a list of items each {exc.expected}", list(value)) from None
            raise
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise field_error(path, "a mapping", value)
        return dict(value)
    if hint is Any:
        return value
    return _scalar(hint, value, path, rules or {})


def _scalar(hint: Any, value: Any, path: str, rules: dict[str, Any]) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise field_error(path, "true or false", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise field_error(path, "an integer", value)
        _bounds(value, path, rules)
    elif hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1.28e12 (no exponent sign) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise field_error(path, "a number", value)
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float range
            raise field_error(path, "a finite number", value) from None
        if rules.get("finite", True) and not math.isfinite(value):
            raise field_error(path, "a finite number", value)
        _bounds(value, path, rules)
    elif hint is str:
        if not isinstance(value, str):
            raise field_error(path, "a string", value)
    _choices(value, path, rules)
    return value


def _bounds(value: float, path: str, rules: dict[str, Any]) -> None:
    gt, ge, lt, le = rules.get("gt"), rules.get("ge"), rules.get("lt"), rules.get("le")
    ok = (gt is None or value > gt) and (ge is None or value >= ge) and (lt is None or value < lt) and (
        le is None or value <= le)
    if ok:
        return
    noun = "integer" if isinstance(value, int) else "number"
    if gt == 0 and ge is None and lt is None and le is None:
        raise field_error(path, f"a positive {noun}", value)
    if ge == 0 and gt is None and lt is None and le is None:
        raise field_error(path, f"a non-negative {noun}", value)
    low = f"[{ge}" if ge is not None else (f"({gt}" if gt is not None else "(-inf")
    high = f"{le}]" if le is not None else (f"{lt})" if lt is not None else "inf)")
    raise field_error(path, f"a {noun} in {low}, {high}", value)


def validate_fields(obj: Any) -> None:
    """Check a dataclass's current values against its fields' `check(...)` rules (any construction path).

    Call it from `__post_init__`: configs built in Python, or changed with `dataclasses.replace`,
    get the same one-line errors as configs read from YAML.
    """
    for f in dataclasses.fields(obj):
        rules = f.metadata.get("nasforge_check")
        if rules:
            _check_value(getattr(obj, f.name), f.name, rules)


def _check_value(value: Any, path: str, rules: dict[str, Any]) -> None:
    if isinstance(value, (list, tuple)):
        if rules.get("nonempty") and not value:
            raise field_error(path, "a non-empty list", list(value))
        try:
            for i, v in enumerate(value):
                _check_value(v, f"{path}[{i}]", rules)
        except FieldError as exc:
            if exc.expected:
                raise field_error(path, f"a list of items each {exc.expected}", list(value)) from None
            raise
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float) and rules.get("finite", True) and not math.isfinite(value):
        raise field_error(path, "a finite number", value)
    if isinstance(value, (int, float)):
        _bounds(value, path, rules)
    _choices(value, path, rules)


def _choices(value: Any, path: str, rules: dict[str, Any]) -> None:
    choices = rules.get("choices")
    if choices is None:
        return
    allowed = choices.names() if hasattr(choices, "names") else tuple(choices)
    if value not in allowed:
        kind = getattr(choices, "kind", None)
        if kind:
            raise FieldError(path, f"unknown {kind} {value!r}; expected one of {', '.join(map(str, allowed))}")
        raise field_error(path, f"one of {list(allowed)}", value)


class Validated:
    """Mixin for config dataclasses: field rules are checked however the instance was made."""

    def __post_init__(self) -> None:
        validate_fields(self)


def _replace(obj: Any, parts: list[str], value: Any, dotted: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if parts[0] not in fields:
        raise ConfigError(f"unknown config key {dotted!r}")
    if len(parts) == 1:
        hint = typing.get_type_hints(type(obj))[parts[0]]
        converted = _convert(hint, value, dotted, fields[parts[0]].metadata.get("nasforge_check"))
        return dataclasses.replace(obj, **{parts[0]: converted})
    inner = getattr(obj, parts[0])
    return dataclasses.replace(obj, **{parts[0]: _replace(inner, parts[1:], value, dotted)})


__all__ = [
    "FieldError",
    "Validated",
    "check",
    "field_error",
    "load_dataclass",
    "replace_path",
    "to_plain",
    "validate_fields",
]
