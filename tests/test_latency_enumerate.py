"""distinct_layers(space) is exact: equal to the union over every arch on the tiny spaces."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nasforge.arch import ArchConfig
from nasforge.latency.enumerate import distinct_layers
from nasforge.space import SearchSpace, load_space
from nasforge.testing import tiny_space


def all_archs(space: SearchSpace):
    """Every canonical arch of a (tiny) space: inactive slots 0, active slots over their choices."""
    for r in space.resolutions:
        for widths in itertools.product(*space.width_choices):
            for depths in itertools.product(*(s.depths for s in space.stages)):
                k_act = [s for s in space.kernel_slots if depths[s.stage] > s.position]
                e_act = [s for s in space.expand_slots if depths[s.stage] > s.position]
                for ks in itertools.product(*(s.choices for s in k_act)):
                    for es in itertools.product(*(s.choices for s in e_act)):
                        kmap = dict(zip(map(id, k_act), ks))
                        emap = dict(zip(map(id, e_act), es))
                        yield ArchConfig(
                            r,
                            depths,
                            tuple(kmap.get(id(s), 0) for s in space.kernel_slots),
                            tuple(emap.get(id(s), 0.0) for s in space.expand_slots),
                            widths,
                        )


@pytest.mark.parametrize("name", ["tiny-mbv3", "tiny-resnet"])
def test_enumeration_equals_exhaustive_union(name):
    space = tiny_space(name)
    union: set[str] = set()
    count = 0
    for arch in all_archs(space):
        union.update(spec.key for spec in space.layers(arch))
        count += 1
    assert count == space.num_subnets() * len(space.resolutions)
    keys = [s.key for s in distinct_layers(space)]
    assert len(keys) == len(set(keys))
    assert set(keys) == union


@pytest.mark.parametrize("name", ["mobilenetv3-ofa-cifar", "resnet-ofa"])
def test_sampled_layers_are_enumerated(name):
    space = load_space(name)
    keys = {s.key for s in distinct_layers(space)}
    rng = np.random.default_rng(0)
    for arch in space.sample_many(rng, 300) + [space.smallest(), space.largest()]:
        for spec in space.layers(arch):
            assert spec.key in keys, spec.key
