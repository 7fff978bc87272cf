"""One registry mechanism for every pluggable kind (timm's `register_model`, generalised).

A `Registry` maps names to entries of one kind: block families, block kinds, search engines,
accuracy predictors, datasets, data sources, timing backends, shrink schedules. An entry joins
with a decorator where it is defined::

    ENGINES = Registry("engine", modules=("nasforge.search.engines.pymoo_engines", ...))

    @ENGINES.register("nsga2", summary="pymoo's NSGA-II")
    class PymooEngine: ...

The built-in modules named in `modules` are imported on the first lookup, then any installed plugin
that declares an entry point in the group ``nasforge.<kind>s`` (e.g. ``nasforge.engines``). Where
importing a module is expensive (torch), `modules` maps each module to the names it registers, so
`names()` (the CLI's help) costs nothing and `get(name)` imports only the module that defines it.
Nothing outside a registry branches on an entry's name: the CLI lists `names()` in its help and
errors, and the conformance suites in `nasforge.testing.conformance` run over every entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from nasforge.errors import ConfigError, NasforgeError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str
    module: str


class Registry(Generic[T]):
    """Named entries of one kind; `get(name)` fails with one line that lists the choices."""

    def __init__(
        self,
        kind: str,
        *,
        modules: Sequence[str] | Mapping[str, Sequence[str]] = (),
        error: type[NasforgeError] = ConfigError,
        plural: str | None = None,
    ) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.error = error
        self._declared: dict[str, str] = {}  # name -> the module that registers it (lazy built-ins)
        if isinstance(modules, Mapping):
            self._declared = {name: module for module, names in modules.items() for name in names}
            self._modules: tuple[str, ...] = ()
        else:
            self._modules = tuple(modules)
        self._entries: dict[str, Entry[T]] = {}
        self._plugins: dict[str, object] = {}  # name -> entry point, loaded on first `get`
        self._loaded = False
        self._loading = False

    # ------------------------------------------------------------------ registering
    def register(self, name: str, *, summary: str = "") -> Callable[[T], T]:
        """Decorator: add the decorated class or function under `name`."""

        def add(obj: T) -> T:
            self.add(name, obj, summary=summary)
            return obj

        return add

    def add(self, name: str, obj: T, *, summary: str = "") -> None:
        if not name or name != name.strip() or " " in name:
            raise ValueError(f"{self.kind} name {name!r}: use a non-empty name without spaces")
        old = self._entries.get(name)
        module = getattr(obj, "__module__", "") or ""
        if old is not None and old.obj is not obj and old.module != module:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({old.module} and {module})")
        doc = summary or _first_line(getattr(obj, "__doc__", None))
        self._entries[name] = Entry(name, obj, doc, module)

    # ------------------------------------------------------------------ looking up
    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for module in self._modules:
                importlib.import_module(module)
            self._load_plugins()
            self._loaded = True
        finally:
            self._loading = False

    def _load_plugins(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=f"nasforge.{self.plural}"):
            if ep.name not in self._entries and ep.name not in self._declared:
                self._plugins[ep.name] = ep

    def _resolve(self, name: str) -> Entry[T] | None:
        """The entry `name`, importing the module (or loading the plugin) that defines it if needed."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        if name in self._declared:
            importlib.import_module(self._declared[name])
            entry = self._entries.get(name)
            if entry is None:
                raise RuntimeError(f"{self._declared[name]} does not register the {self.kind} {name!r} it declares")
            return entry
        ep = self._plugins.get(name)
        if ep is not None:
            try:
                self.add(name, ep.load())  # type: ignore[attr-defined]
            except Exception as exc:  # a broken plugin is named, not a traceback
                raise self.error(f"the {self.kind} plugin {name!r} failed to load: {exc}") from None
            return self._entries[name]
        return None

    def get(self, name: str) -> T:
        self._load()
        entry = self._resolve(name)
        if entry is None:
            raise self.error(f"unknown {self.kind} {name!r}; expected one of {', '.join(self.names())}")
        return entry.obj

    def names(self) -> tuple[str, ...]:
        """Every name: built-ins first (in their declared/registration order), then plugins."""
        self._load()
        return tuple(dict.fromkeys([*self._declared, *self._entries, *self._plugins]))

    def entries(self) -> tuple[Entry[T], ...]:
        """Every entry, imported (lists that need the objects themselves: conformance suites)."""
        self._load()
        return tuple(e for e in (self._resolve(n) for n in self.names()) if e is not None)

    def summary(self, name: str) -> str:
        self.get(name)
        return self._entries[name].summary

    def choices_help(self) -> str:
        """`a | b | c`, for CLI help texts."""
        return " | ".join(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


__all__ = ["Entry", "Registry"]
