"""Other projects' ways of writing a subnet (foreign arch forms), looked up by `SearchSpace.parse_arch`.

Each form is registered by name and answers for the spaces it knows: `parse` turns a dict written in that
project's form into a canonical arch (None: not this form, or not for this space), `write` gives the form of
an arch (None: the space has none). `--arch` accepts every registered form; export sidecars carry each one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from nasforge.arch import ArchConfig
from nasforge.errors import ArchError
from nasforge.registry import Registry

if TYPE_CHECKING:
    from nasforge.space import SearchSpace


class ForeignForm(Protocol):
    def parse(self, space: SearchSpace, data: dict[str, Any]) -> ArchConfig | None: ...

    def write(self, space: SearchSpace, arch: ArchConfig) -> dict[str, Any] | None: ...


FOREIGN_FORMS: Registry[type[ForeignForm]] = Registry(
    "foreign arch form", modules=("nasforge.foreign.forms",), error=ArchError
)


@FOREIGN_FORMS.register("ofa", summary="Once-for-All's subnet dict ({ks, e, d, r} / {d, e, w, image_size})")
class OFAForm:
    def parse(self, space: SearchSpace, data: dict[str, Any]) -> ArchConfig | None:
        from nasforge.foreign.ofa_families import adapter

        found = adapter(space)
        return found.parse(space, data) if found is not None else None

    def write(self, space: SearchSpace, arch: ArchConfig) -> dict[str, Any] | None:
        from nasforge.foreign.ofa_families import adapter

        found = adapter(space)
        return found.write(space, arch) if found is not None else None


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
