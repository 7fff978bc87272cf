"""Once-for-All's subnet dict as a foreign arch form (the registry and its protocol: `nasforge.arch_forms`).

`SearchSpace.parse_arch` reads an OFA dict through it and export sidecars carry it; the per-family work
(which dict, which tensor names) is in `ofa_families.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasforge.arch import ArchConfig
from nasforge.arch_forms import FOREIGN_FORMS, parse_foreign, write_foreign

if TYPE_CHECKING:
    from nasforge.space import SearchSpace


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


__all__ = ["FOREIGN_FORMS", "OFAForm", "parse_foreign", "write_foreign"]
