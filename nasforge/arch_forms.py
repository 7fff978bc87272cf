"""Other projects' ways of writing a subnet (foreign arch forms): the registry `SearchSpace.parse_arch` reads.

Each form is registered by name and answers for the spaces it knows: `parse` turns a dict written in that
project's form into a canonical arch (None: not this form, or not for this space), `write` gives the form of
an arch (None: the space has none). `--arch` accepts every registered form; export sidecars carry each one.
The registry lives in the core and names its built-in module (`nasforge.foreign.forms`, Once-for-All's form)
only as a string, so the core never imports `foreign/` and `foreign/` may import the core.
"""

from __future__ import annotations

from typing import Any, Protocol

from nasforge.arch import ArchConfig
from nasforge.errors import ArchError
from nasforge.registry import Registry

# `space` is a `nasforge.space.SearchSpace`; typed `Any` here so that this module, which space.py reads, does
# not name space.py back (no import circle, not even a type-checking one).
SearchSpace = Any


class ForeignForm(Protocol):
    def parse(self, space: SearchSpace, data: dict[str, Any]) -> ArchConfig | None: ...

    def write(self, space: SearchSpace, arch: ArchConfig) -> dict[str, Any] | None: ...


FOREIGN_FORMS: Registry[type[ForeignForm]] = Registry(
    "foreign arch form", modules=("nasforge.foreign.forms",), error=ArchError
)


def parse_foreign(space: SearchSpace, data: dict[str, Any]) -> ArchConfig | None:
    """`data` read by the first registered form that recognises it for `space`, or None."""
    for name in FOREIGN_FORMS.names():
        arch = FOREIGN_FORMS.get(name)().parse(space, data)
        if arch is not None:
            return arch
    return None


def write_foreign(space: SearchSpace, arch: ArchConfig) -> dict[str, dict[str, Any]]:
    """`arch` in every registered form that `space` has, by form name."""
    forms = {name: FOREIGN_FORMS.get(name)().write(space, arch) for name in FOREIGN_FORMS.names()}
    return {name: form for name, form in forms.items() if form is not None}


__all__ = ["FOREIGN_FORMS", "ForeignForm", "parse_foreign", "write_foreign"]
