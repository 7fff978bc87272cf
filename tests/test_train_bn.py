"""BN recalibration: it really recomputes the statistics, and makes an extracted subnet match the supernet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge.data import calibration_batches, load_dataset
from nasforge.supernet import build_supernet, resize_to
from nasforge.testing import tiny_space
from nasforge.train.bn import preserved_bn, recalibrate_bn
from nasforge.train.evaluate import accuracy, evaluate_archs

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    space = tiny_space()
    data = load_dataset("digits", max(space.resolutions), train_limit=300)
    torch.manual_seed(0)
    net = build_supernet(space)
    # a few SGD steps so the weights are not at init, with BN stats polluted by many subnets
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    x_all = data.normalize(data.train.images[:64])
    y_all = data.train.labels[:64]
    for arch in space.sample_many(rng, 6):
        net.set_active(arch)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(resize_to(x_all, arch.resolution)), y_all).backward()
        opt.step()
    return space, data, net


def test_recalibration_recomputes_running_stats(setup):
    space, data, net = setup
    arch = space.smallest()
    calib = calibration_batches(data, 128, 64)
    bn = net.stem[1] if hasattr(net.stem, "__getitem__") else next(m for m in net.modules()
                                                                    if isinstance(m, torch.nn.BatchNorm2d))
    with preserved_bn(net), net.active(arch):
        before = bn.running_mean.clone()
        n = recalibrate_bn(net, calib, forward=lambda x: net(resize_to(x, arch.resolution)))
        assert n == 128 and not torch.allclose(before, bn.running_mean)
        # the cumulative average over the batches equals the mean over all calibration images
        feats = []
        hook = bn.register_forward_hook(lambda m, i, o: feats.append(i[0].detach()))
        with torch.no_grad():
            net.eval()
            for x in calib:
                net(resize_to(x, arch.resolution))
        hook.remove()
        expected = torch.cat(feats).mean((0, 2, 3))
        assert torch.allclose(bn.running_mean, expected, atol=1e-5)
        assert bn.momentum == 0.1 and net.training is False
    assert torch.equal(bn.running_mean, before)  # preserved_bn restored the buffers


def test_extracted_subnet_matches_supernet_after_recalibration(setup):
    space, data, net = setup
    arch = space.sample(np.random.default_rng(3))
    calib = calibration_batches(data, 128, 64)
    with preserved_bn(net), net.active(arch):
        recalibrate_bn(net, calib, forward=lambda x: net(resize_to(x, arch.resolution)))
        sub = net.extract(arch).eval()
        net.eval()
        acc_super = accuracy(net, data, "val", arch.resolution)
        x = resize_to(data.normalize(data.val.images[:32]), arch.resolution)
        with torch.no_grad():
            assert torch.allclose(net(x), sub(x), atol=1e-4)
    acc_sub = accuracy(sub, data, "val", arch.resolution)
    assert acc_sub == pytest.approx(acc_super)
    # evaluate_archs does the same recalibration itself and leaves no trace in the buffers
    state = {k: v.clone() for k, v in net.state_dict().items()}
    accs = evaluate_archs(net, data, [arch, space.largest()], "val", calib_images=128, calib_batch_size=64)
    assert accs[0] == pytest.approx(acc_super)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
