import math

import numpy as np
import pytest

from nasforge.arch import ArchConfig
from nasforge.errors import ArchError, SpaceError
from nasforge.foreign.ofa import arch_to_ofa
from nasforge.space import SearchSpace, list_spaces, load_space
from nasforge.testing import tiny_space

SHIPPED = list_spaces()  # every shipped space is tested for free


def test_shipped_spaces_are_listed():
    assert {"mobilenetv3-ofa", "mobilenetv3-ofa-cifar", "resnet-ofa", "mobilenetv3-tiny"} <= set(SHIPPED)


def test_mobilenetv3_subnet_count_is_ofa():
    space = load_space("mobilenetv3-ofa")
    assert space.num_subnets() == 7371**5
    assert math.isclose(space.num_subnets(), 2.2e19, rel_tol=0.02)
    assert space.num_subnets(include_resolution=True) == 7371**5 * 25
    assert space.resolutions == tuple(range(128, 225, 4))


def test_resnet_subnet_count():
    space = load_space("resnet-ofa")
    per_stage = [sum(3**d for d in depths) for depths in ([2, 3, 4], [2, 3, 4], [4, 5, 6], [2, 3, 4])]
    assert space.num_subnets() == 2 * math.prod(per_stage) * 3**6


def test_exhaustive_count_matches_on_tiny_space():
    space = tiny_space("tiny-mbv3")
    sizes = space.gene_sizes.copy()
    sizes[0] = 1  # one resolution
    seen = set()
    for flat in range(int(np.prod(sizes))):
        genes = np.array(np.unravel_index(flat, sizes))
        seen.add(space.decode(genes))
    assert len(seen) == space.num_subnets()


@pytest.mark.parametrize("name", SHIPPED + ["tiny-mbv3", "tiny-resnet"])
def test_encode_decode_round_trip(name, rng):
    space = tiny_space(name) if name.startswith("tiny") else load_space(name)
    archs = space.sample_many(rng, 200) + [space.largest(), space.smallest()]
    for arch in archs:
        genes = space.encode(arch)
        assert genes.shape == (space.num_genes,)
        assert np.all(genes < space.gene_sizes) and np.all(genes >= 0)
        assert space.decode(genes) == arch
    batch = space.encode_batch(archs)
    assert space.decode_batch(batch) == archs


@pytest.mark.parametrize("name", SHIPPED)
def test_canonical_form_masks_inactive_blocks(name, rng):
    space = load_space(name)
    arch = space.sample(rng)
    genes = space.encode(arch)
    mask = space.active_mask(genes)[0]
    noisy = genes.copy()
    noisy[~mask] = space.gene_sizes[~mask] - 1  # change only genes of skipped blocks
    assert space.decode(noisy) == arch


def test_features_zero_skipped_blocks():
    space = load_space("mobilenetv3-ofa")
    small, large = space.smallest(), space.largest()
    f = space.features([small, large])
    assert f.shape == (2, space.num_features)
    # largest: every gene contributes one 1; smallest: skipped slots contribute nothing
    n_multi = int((space.gene_sizes > 1).sum())
    assert f[1].sum() == n_multi
    skipped = sum(1 for s in space.kernel_slots if small.depths[s.stage] <= s.position) * 2
    assert f[0].sum() == n_multi - skipped
    assert np.array_equal(space.features(space.encode_batch([small, large])), f)


def test_largest_and_smallest_bound_macs(rng):
    space = load_space("mobilenetv3-ofa")
    lo, hi = space.macs(space.smallest()), space.macs(space.largest())
    for arch in space.sample_many(rng, 50):
        assert lo <= space.macs(arch) <= hi


def test_mutate_genes_resamples_each_gene_at_its_rate(rng):
    """The one mutation of the encoding (the evolution engine breeds through it): per gene, not per row."""
    space = load_space("resnet-ofa")
    parents = space.sample_genes(rng, 4000)
    kids = space.mutate_genes(parents, rng, prob=0.3)
    assert kids.shape == parents.shape and np.all((kids >= 0) & (kids < space.gene_sizes))
    # a resampled gene keeps its value with chance 1/size: changed = prob * (1 - 1/size), gene by gene
    expected = 0.3 * (1 - 1 / space.gene_sizes)
    assert np.allclose((kids != parents).mean(axis=0), expected, atol=0.04)
    assert np.array_equal(space.mutate_genes(parents, rng, prob=0.0), parents)
    assert all(space.contains(a) for a in space.decode_batch(kids[:50]))


def test_crossover_genes_takes_each_gene_from_either_parent(rng):
    space = load_space("resnet-ofa")
    a, b = space.sample_genes(rng, 4000), space.sample_genes(rng, 4000)
    kids = space.crossover_genes(a, b, rng)
    assert np.all((kids == a) | (kids == b))
    differ = a != b
    assert abs((kids == a)[differ].mean() - 0.5) < 0.02  # uniform: each parent half the time
    assert all(space.contains(k) for k in space.decode_batch(kids[:50]))


def test_stratified_sampling_covers_macs_range(rng):
    space = load_space("mobilenetv3-ofa-cifar")
    uniform = space.sample_many(rng, 100)
    strat = space.sample_stratified(rng, 100)
    assert len(set(strat)) == 100
    lo, hi = space.macs(space.smallest()), space.macs(space.largest())
    low_bin = lo + 0.2 * (hi - lo)
    n_low_uniform = sum(space.macs(a) < low_bin for a in uniform)
    n_low_strat = sum(space.macs(a) < low_bin for a in strat)
    assert n_low_strat > n_low_uniform


def test_ofa_dict_round_trip(rng):
    space = load_space("mobilenetv3-ofa")
    for arch in space.sample_many(rng, 20):
        d = arch_to_ofa(arch, space)
        assert len(d["ks"]) == 20 and len(d["e"]) == 20 and len(d["d"]) == 5
        assert all(k in (3, 5, 7) for k in d["ks"])
        assert space.parse_arch(d) == arch
    # OFA writes arbitrary values into skipped slots; they must not matter
    d = arch_to_ofa(space.smallest(), space)
    d["ks"] = [k if i % 4 < 2 else 7 for i, k in enumerate(d["ks"])]  # slots 2, 3 of each stage are skipped
    assert space.parse_arch(d) == space.smallest()
    assert space.parse_arch({**d, "r": [128]}) == space.smallest()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"resolution": 130}, "resolution 130"),
        ({"depths": [2, 2, 2, 2]}, "'depths' has 4 entries"),
        ({"depths": [5, 2, 2, 2, 2]}, r"depths\[0\] = 5"),
        ({"kernel_sizes": [4] + [3] * 19}, r"kernel_sizes\[0\] = 4 .*3, 5, 7"),
        ({"expand_ratios": [5] + [3] * 19}, r"expand_ratios\[0\] = 5"),
    ],
)
def test_out_of_space_values_are_named(change, message):
    space = load_space("mobilenetv3-ofa")
    base = space.largest().to_dict()
    with pytest.raises(ArchError, match=message):
        space.parse_arch({**base, **change})


def test_unknown_space_lists_shipped():
    with pytest.raises(SpaceError, match="unknown search space 'nope'.*mobilenetv3-ofa"):
        load_space("nope")


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: [unclosed", "not valid YAML at line"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("name: x\nfamily: vgg\nresolutions: [32]\n", "field 'family': expected one of"),
        ("name: x\nfamily: mobilenetv3\nresolutions: [32]\n", "field 'stem': expected a mapping"),
    ],
)
def test_bad_yaml_names_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message) as info:
        SearchSpace.from_yaml(path)
    assert str(path) in str(info.value)


def test_bad_stage_field_is_named(tmp_path):
    src = (tiny_space().source)
    text = open(src).read().replace("kernel_sizes: [3, 5]", "kernel_sizes: [3, 4]")
    path = tmp_path / "even.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=r"field 'stages\[0\]\.kernel_sizes': expected odd kernel sizes"):
        load_space(path)


def test_fingerprint_tracks_build_options():
    a = load_space("mobilenetv3-ofa")
    b = load_space("mobilenetv3-ofa", width_mult=1.2)
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == load_space("mobilenetv3-ofa").fingerprint
    assert b.macs(b.largest()) > a.macs(a.largest())
    with pytest.raises(SpaceError, match="width multiplier 1.5"):
        load_space("mobilenetv3-ofa", width_mult=1.5)


def test_arch_from_pareto_entry():
    space = tiny_space()
    arch = space.largest()
    assert space.parse_arch({"arch": arch.to_dict(), "accuracy": 90.0}) == arch
    assert isinstance(space.parse_arch(arch.to_json()), ArchConfig)
