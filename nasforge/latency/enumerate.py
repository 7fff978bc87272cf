"""Every distinct block (LayerSpec) a space can produce, without enumerating its archs.

In both families a block's spec depends on the resolution, the width multipliers, its
stage, whether it is the stage's first block, and its own kernel and expansion, never on
another stage's kernel or expansion. So the union of `space.layers` over a few *probe*
archs is exact: every resolution x every width combination x (per stage, every
kernel/expansion choice), with every stage at its largest depth (block 0 and block 1 of a
stage cover all later positions, whose specs repeat). Probes: resolutions x width
combinations x max kernel choices x max expansion choices, instead of ~10^19 archs.
`tests/test_latency_enumerate.py` checks the claim against exhaustive unions on tiny spaces.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from nasforge.arch import ArchConfig
from nasforge.layers import LayerSpec
from nasforge.space import SearchSpace


def probe_archs(space: SearchSpace) -> Iterator[ArchConfig]:
    """The probe archs whose layers together hold every distinct block of `space`."""
    depths = tuple(max(s.depths) for s in space.stages)
    n_k = max([len(s.choices) for s in space.kernel_slots] or [1])
    n_e = max([len(s.choices) for s in space.expand_slots] or [1])
    for r in space.resolutions:
        for widths in itertools.product(*space.width_choices):
            for i, j in itertools.product(range(n_k), range(n_e)):
                ks = tuple(s.choices[min(i, len(s.choices) - 1)] for s in space.kernel_slots)
                es = tuple(s.choices[min(j, len(s.choices) - 1)] for s in space.expand_slots)
                yield space.validate(ArchConfig(r, depths, ks, es, widths))


def distinct_layers(space: SearchSpace) -> list[LayerSpec]:
    """Every distinct block x input shape of `space` (stem, head and every resolution), in a stable order."""
    seen: dict[str, LayerSpec] = {}
    for arch in probe_archs(space):
        for spec in space.layers(arch):
            seen.setdefault(spec.key, spec)
    return list(seen.values())
