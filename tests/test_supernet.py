"""Extraction is exact: a static subnet computes what the supernet computes for that arch."""

import re

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nasforge.arch import ArchConfig
from nasforge.families import FAMILIES
from nasforge.space import list_spaces, load_space
from nasforge.supernet import build_supernet, permute_optimizer_state
from nasforge.supernet.ops import ElasticDepthwiseConv2d
from nasforge.testing import tiny_space
from nasforge.testing.conformance._spaces import FAMILY_PREFIX, example_space
from nasforge.testing.ofa import calibrate_bn_, randomize_

SHIPPED = list_spaces()  # every shipped space is tested for free
# each registered family's own example space, so a family without a shipped YAML is checked too
FAMILY_EXAMPLES = [f"{FAMILY_PREFIX}{e.name}" for e in FAMILIES.entries() if e.obj.example_space is not None]
EXTRACTED = SHIPPED + ["tiny-mbv3", "tiny-resnet"] + FAMILY_EXAMPLES


def _space(name: str):
    if name.startswith(FAMILY_PREFIX):
        space = example_space(name)
    else:
        space = tiny_space(name) if name.startswith("tiny") else load_space(name)
    return space.with_options(num_classes=10) if space.num_classes != 10 else space


def _archs(space, n: int, seed: int = 0) -> list[ArchConfig]:
    rng = np.random.default_rng(seed)
    archs = [space.largest(), space.smallest()] + space.sample_many(rng, n)
    if space.name == "resnet-ofa":  # keep the 7.5 GMAC largest affordable on CPU: small inputs
        archs = [ArchConfig(128, a.depths, a.kernel_sizes, a.expand_ratios, a.width_mults) for a in archs]
    return archs


def _check_extraction(net, space, archs, generator: torch.Generator) -> None:
    """Each arch's extracted subnet computes the supernet's logits on a batch both depend on.

    `net` carries `randomize_`'s weights (non-identity kernel transforms, random BN affine); before each
    comparison its BN statistics are estimated for the arch on that batch and perturbed (`calibrate_bn_`),
    so every tensor the subnet uses shows in the logits and the logits differ between the two images.
    """
    net.eval()
    for arch in archs:
        x = torch.randn(2, 3, arch.resolution, arch.resolution, generator=generator)
        net.set_active(arch)
        with torch.no_grad():
            calibrate_bn_(net, x, generator)
            expected = net(x)
            subnet = net.extract().eval()
            got = subnet(x)
        assert subnet.arch == arch
        assert not any("Elastic" in type(m).__name__ for m in subnet.modules())
        assert (expected[0] - expected[1]).abs().max() > 0.05, "the logits barely depend on the input"
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def _random_supernet(space, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    net = randomize_(build_supernet(space), generator)
    transforms = [p for n, p in net.named_parameters() if re.fullmatch(r"\d+to\d+", n.rsplit(".", 1)[-1])]
    assert all(not torch.equal(p, torch.eye(p.shape[0])) for p in transforms)
    return net, generator


@pytest.mark.parametrize("name", EXTRACTED)
def test_extracted_subnet_equals_supernet(name):
    space = _space(name)
    assert space.family.name in FAMILIES.names()
    net, generator = _random_supernet(space)
    _check_extraction(net, space, _archs(space, 8), generator)


def test_every_family_is_checked_for_extraction():
    families = {_space(name).family.name for name in EXTRACTED}
    assert families == set(FAMILIES.names())


@pytest.mark.parametrize("name", ["mobilenetv3-ofa-cifar", "tiny-mbv3", "tiny-resnet"])
def test_reordering_keeps_function_and_extraction_exact(name):
    space = _space(name)
    net, generator = _random_supernet(space)
    net.eval()
    largest = space.largest()
    x = torch.randn(2, 3, largest.resolution, largest.resolution, generator=generator)
    net.set_active(largest)
    with torch.no_grad():
        before = net(x)
        small_before = None
        with net.active(space.smallest()):
            xs = torch.randn(2, 3, space.smallest().resolution, space.smallest().resolution, generator=generator)
            small_before = net(xs)
        perms = net.reorder_channels()
        after = net(x)
        with net.active(space.smallest()):
            small_after = net(xs)
    assert perms
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(small_after, small_before)  # subnets now use the important channels
    _check_extraction(net, space, _archs(space, 8, seed=3), generator)


def test_reordering_sorts_by_importance():
    torch.manual_seed(0)
    space = tiny_space()
    net = build_supernet(space)
    net.reorder_channels()
    block = net.stages[0][0]
    importance = block.project_conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


def test_optimizer_state_follows_permutation():
    torch.manual_seed(0)
    space = tiny_space()
    net = build_supernet(space)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(4, 3, 24, 24)
    net(x).sum().backward()
    opt.step()
    block = net.stages[0][0]
    w = block.project_conv.weight
    buf_before = opt.state[w]["momentum_buffer"].clone()
    perms = net.reorder_channels()
    permute_optimizer_state(opt, perms)
    order = [idx for t, d, idx in perms if t is w][0]
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], buf_before.index_select(1, order))


def test_kernel_transform_starts_as_centre_crop_and_is_learnable():
    torch.manual_seed(0)
    conv = ElasticDepthwiseConv2d(8, (3, 5, 7))
    torch.testing.assert_close(conv.active_weight(8, 3), conv.weight[:, :, 2:5, 2:5])
    torch.testing.assert_close(conv.active_weight(8, 5), conv.weight[:, :, 1:6, 1:6])
    with torch.no_grad():
        conv.kernel_transforms["5to3"].mul_(2.0)
    torch.testing.assert_close(conv.active_weight(8, 3), 2 * conv.weight[:, :, 2:5, 2:5])
    assert conv.active_weight(8, 7).shape == (8, 1, 7, 7)
    # the 25x25 and 9x9 matrices of OFA
    assert conv.kernel_transforms["7to5"].shape == (25, 25) and conv.kernel_transforms["5to3"].shape == (9, 9)


def test_elastic_depth_skips_last_blocks():
    space = tiny_space()
    net = build_supernet(space).eval()
    arch = space.smallest()
    net.set_active(arch)
    used = {id(b) for b, _, _ in net._blocks_plan}
    assert len(used) == sum(arch.depths)
    for stage, d in zip(net.stages, arch.depths):
        assert all(id(stage[p]) in used for p in range(d))
        assert all(id(stage[p]) not in used for p in range(d, len(stage)))


def test_active_context_restores_previous_subnet():
    space = tiny_space()
    net = build_supernet(space)
    net.set_active(space.smallest())
    with net.active(space.largest()):
        assert net.active_arch == space.largest()
    assert net.active_arch == space.smallest()


def test_gradients_reach_only_active_weights():
    torch.manual_seed(0)
    space = tiny_space()
    net = build_supernet(space)
    net.set_active(space.smallest())
    a = space.smallest()
    net(torch.randn(2, 3, a.resolution, a.resolution)).sum().backward()
    skipped = net.stages[0][1]  # depth 1: the second block is skipped
    assert all(p.grad is None for p in skipped.parameters())
    dw = net.stages[0][0].depthwise.weight.grad
    assert dw[:, :, 0].abs().sum() == 0  # kernel 3 of a 5x5: outer ring unused at init transform
    assert dw.abs().sum() > 0


@pytest.mark.parametrize("name", SHIPPED + ["tiny-mbv3", "tiny-resnet"])
def test_cost_model_matches_flop_counter_and_numel(name):
    torch.manual_seed(0)
    space = _space(name)
    net = build_supernet(space)
    for arch in _archs(space, 4, seed=7):
        subnet = net.extract(arch).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            subnet(torch.randn(1, 3, arch.resolution, arch.resolution))
        assert counter.get_total_flops() == 2 * space.macs(arch)
        assert sum(p.numel() for p in subnet.parameters()) == space.params(arch)
