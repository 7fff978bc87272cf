"""Every distinct block (LayerSpec) a space can produce, without enumerating its archs.

A family promises (`Family.probe_archs`) a handful of archs whose layers together hold every distinct block:
by default every context (resolution and every other gene that is not a block slot) x, per block gene group,
each choice index at once, with every stage at its largest depth. That is exact when a block's layer depends
only on the context, its stage, its position and its own slot genes (block 0 and block 1 of a stage cover all
later positions), as in every shipped family; a family whose blocks depend on their neighbours' genes
overrides `probe_archs`. The conformance suite checks the union against an exhaustive one on a small space
of every family (`nasforge/testing/conformance/families.py`).
"""

from __future__ import annotations

from nasforge.layers import LayerSpec
from nasforge.space import SearchSpace


def distinct_layers(space: SearchSpace) -> list[LayerSpec]:
    """Every distinct block x input shape of `space` (stem, head and every resolution), in a stable order."""
    seen: dict[str, LayerSpec] = {}
    for arch in space.family.probe_archs(space):
        for spec in space.layers(arch):
            seen.setdefault(spec.key, spec)
    return list(seen.values())
