"""Every registered block family: its spaces encode, lay out, cost and build consistently."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge.blocksum import BlockSum
from nasforge.families import FAMILIES
from nasforge.layers import layer_macs, layer_params
from nasforge.testing.conformance._spaces import example_space, example_spaces, small_spaces, space_id
from nasforge.testing.conformance.blocks import example_input
from nasforge.testing.search import all_encodings

SPACES = example_spaces()
SMALL = small_spaces()


@pytest.mark.parametrize("family", FAMILIES.names())
def test_every_family_has_an_example_space(family):
    """A family nobody can load cannot be tested: ship (or add to nasforge/testing/spaces) one space of it."""
    assert any(example_space(p).family.name == family for p in SPACES), f"no example space for family {family!r}"


@pytest.mark.parametrize("path", SPACES, ids=space_id)
def test_encoding_round_trips(path):
    space = example_space(path)
    rng = np.random.default_rng(0)
    archs = [space.largest(), space.smallest(), *space.sample_many(rng, 50)]
    for arch in archs:
        assert space.validate(arch) == arch  # decode/sample give canonical archs
        assert space.decode(space.encode(arch)) == arch
        for form in space.foreign_forms(arch).values():
            assert space.parse_arch(form) == arch
    genes = space.encode_batch(archs)
    assert space.decode_batch(genes) == archs
    assert space.features(archs).shape == (len(archs), space.num_features)


@pytest.mark.parametrize("path", SPACES, ids=space_id)
def test_plan_places_layers_on_active_blocks(path):
    """`plan` tags each layer with the block it realises, exactly the active (stage, position) pairs."""
    space = example_space(path)
    for arch in [space.largest(), space.smallest(), *space.sample_many(np.random.default_rng(1), 20)]:
        placed = space.plan(arch)
        blocks = {(p.stage, p.position) for p in placed if p.stage is not None}
        expected = {(s, i) for s, d in enumerate(arch.depths) for i in range(d)}
        assert blocks <= expected
        assert [len(c) for c in space.block_choices(arch)] == list(arch.depths)
        shapes = [p.spec.input_shape for p in placed]
        assert arch.resolution in shapes[0] and all(d > 0 for shape in shapes for d in shape)


@pytest.mark.parametrize("path", SPACES, ids=space_id)
def test_block_tables_equal_layer_sums(path):
    space = example_space(path)
    summer = BlockSum(space, lambda spec: (layer_macs(spec), layer_params(spec)))
    genes = space.sample_genes(np.random.default_rng(2), 40)
    sums, counts = summer(genes)
    for row, total, n in zip(genes, sums, counts):
        layers = space.layers(space.decode(row))
        assert int(round(total[0])) == sum(layer_macs(s) for s in layers)
        assert int(round(total[1])) == sum(layer_params(s) for s in layers)
        assert n == len(layers)


@pytest.mark.parametrize("path", [p for p in SMALL if example_space(p).num_subnets() <= 5000], ids=space_id)
def test_subnet_count_is_the_number_of_distinct_encodings(path):
    space = example_space(path)
    assert len(all_encodings(space)) == space.num_subnets(include_resolution=True)


@pytest.mark.parametrize("path", SMALL, ids=space_id)
def test_extracted_subnets_equal_the_supernet(path):
    from nasforge.supernet import build_supernet

    space = example_space(path)
    space = space if space.num_classes <= 10 else space.with_options(num_classes=10)
    torch.manual_seed(0)
    net = build_supernet(space).eval()
    with torch.no_grad():
        for arch in [space.largest(), space.smallest(), *space.sample_many(np.random.default_rng(3), 4)]:
            xi = example_input(space.layers(arch)[0], 2)
            with net.active(arch):
                expected = net(xi)
            sub = net.extract(arch).eval()
            assert torch.allclose(sub(xi), expected, atol=1e-5)
            assert sum(p.numel() for p in sub.parameters()) == space.params(arch)


@pytest.mark.parametrize("path", [p for p in SMALL if example_space(p).num_subnets(include_resolution=True) <= 5000],
                         ids=space_id)
def test_table_enumeration_is_exact(path):
    """`distinct_layers` (a latency table's entries) holds exactly the union of every subnet's layers: no block
    a subnet can have is missing from the table, whatever gene groups the family declares."""
    from nasforge.latency.enumerate import distinct_layers

    space = example_space(path)
    every = {spec.key for genes in all_encodings(space) for spec in space.layers(space.decode(genes))}
    assert {spec.key for spec in distinct_layers(space)} == every


@pytest.mark.parametrize("path", SMALL, ids=space_id)
def test_functional_block_bodies_equal_the_module_forward(path):
    """Blocks that also run as a pure function of their weights (compiled training steps) compute what their
    modules compute: the two definitions are held equal here for every family, not by hand."""
    from nasforge.supernet import build_supernet

    space = example_space(path)
    space = space if space.num_classes <= 10 else space.with_options(num_classes=10)
    torch.manual_seed(0)
    net = build_supernet(space).eval()
    ctx = net.step_context()
    with torch.no_grad():
        for arch in [space.largest(), space.smallest(), *space.sample_many(np.random.default_rng(4), 4)]:
            xi = example_input(space.layers(arch)[0], 2)
            with net.active(arch):
                expected = net(xi)
                ctx.runner = lambda fn, tensors, static: fn(*tensors, **static)
                try:
                    with net.shared_step():
                        through_bodies = net(xi)
                finally:
                    ctx.runner = None
            assert torch.allclose(through_bodies, expected, atol=1e-5), arch.key
