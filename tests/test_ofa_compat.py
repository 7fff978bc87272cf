"""Once-for-All's published supernets load into nasforge's and compute what OFA's own classes compute.

OFA's nets get random weights under which every tensor shows in the logits (nasforge.testing.ofa). Each
comparison runs OFA's own class (set_active_subnet + forward; get_active_subnet) against nasforge's supernet
loaded through the filter (set_active + forward; extract), for the largest, the smallest and 10 random
subnets at two resolutions, each with BN statistics estimated for that subnet. All four published nets:
MobileNetV3 w1.0 and w1.2, ProxylessNAS w1.3 and ResNet50.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import replace

import numpy as np
import ofa.imagenet_classification.elastic_nn.networks  # noqa: F401 - the test extra: missing is an error, not a skip
import pytest
import torch

from nasforge.arch import ArchConfig
from nasforge.errors import ArchError, CheckpointError, PredictorError
from nasforge.foreign.ofa import (
    PUBLISHED,
    arch_from_ofa,
    arch_to_ofa,
    identify,
    nasforge_to_ofa,
    ofa_key_map,
    ofa_to_nasforge,
    read_checkpoint,
)
from nasforge.space import SearchSpace
from nasforge.supernet import ElasticSupernet, build_supernet
from nasforge.testing import tiny_space
from nasforge.testing.ofa import (
    calibrate_bn_,
    compare_subnet,
    logit_gap,
    ofa_accuracy_predictor,
    ofa_supernet,
    ofa_tutorial_predictor,
    randomize_,
)

TOL = 1e-4  # max |logit difference| in fp32
W10, W12, RESNET = "ofa_mbv3_d234_e346_k357_w1.0", "ofa_mbv3_d234_e346_k357_w1.2", "ofa_resnet50"
PROXYLESS = "ofa_proxyless_d234_e346_k357_w1.3"
RESOLUTIONS = {W10: (128, 140), W12: (128, 140), PROXYLESS: (128, 140), RESNET: (128, 144)}  # 2nd: odd maps
ALL = [W10, W12, PROXYLESS, RESNET]


@functools.cache
def _ofa(name: str) -> torch.nn.Module:
    """OFA's own supernet with random weights (shared: tests that compare values set what they compare)."""
    return randomize_(ofa_supernet(name), torch.Generator().manual_seed(0)).eval()


def _space(name: str) -> SearchSpace:
    return PUBLISHED[name].load_space()


@functools.cache
def _supernet(name: str) -> ElasticSupernet:
    return build_supernet(_space(name)).eval()


def _images(n: int, resolution: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(n, 3, resolution, resolution, generator=g)


def _compare(name: str, arch: ArchConfig, g: torch.Generator, tamper=None):
    return compare_subnet(_ofa(name), _supernet(name), _space(name), arch, RESOLUTIONS[name], g, tamper=tamper)


# ---------------------------------------------------------------------------------------- the filter


@pytest.mark.parametrize("name", ALL)
def test_filter_maps_every_tensor(name):
    ofa, space = _ofa(name), _space(name)
    theirs = ofa.state_dict()
    ours = ofa_to_nasforge(theirs, space)
    build_supernet(space).load_state_dict(ours, strict=True)
    names = ofa_key_map(space)
    assert sorted(names.values()) == sorted(theirs), "one OFA tensor per nasforge tensor, all of them"
    assert all(torch.equal(ours[nf], theirs[of]) for nf, of in names.items())
    if name == W10:
        assert len(ours) == 475
    if name == PROXYLESS:
        assert len(ours) == 446


def test_proxylessnas_space_is_ofas():
    """The phase-1 reading of OFAProxylessNASNets, as the space builds it."""
    space = _space(PROXYLESS)
    assert (space.name, space.width_mult, space.bn_eps) == ("proxylessnas-ofa", 1.3, 1e-3)
    assert (len(space.kernel_slots), len(space.expand_slots), len(space.stages)) == (21, 21, 6)
    specs = space.layers(space.largest())
    stem, first, head = specs[0], specs[1], specs[-1]
    assert (stem.kind, stem.in_channels, stem.out_channels, stem.stride, stem.act) == ("conv", 3, 40, 2, "relu6")
    assert (first.mid_channels, first.out_channels, first.shortcut, first.act) == (0, 24, "none", "relu6")
    assert [s.out_channels for s in specs[2:-1:4]][:5] == [32, 56, 104, 128, 248] and specs[-2].out_channels == 416
    assert all(s.act == "relu6" and not s.se for s in specs[2:-1])
    assert (head.kind, head.in_channels, head.out_channels, head.act) == ("mbv2_head", 416, 1664, "relu6")
    ofa = ofa_supernet(PROXYLESS)
    net = _supernet(PROXYLESS)
    eps = {m.eps for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps == {1e-3} == {m.eps for m in ofa.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {m.eps for m in net.extract(space.smallest()).modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}


def _static_form(key: str) -> str:
    """How OFA's static layers name a dynamic module's tensors (OFA's load_state_dict reads both)."""
    return key.replace(".conv.conv.", ".conv.").replace(".bn.bn.", ".bn.").replace(".linear.linear.", ".linear.")


@pytest.mark.parametrize("name", [W10, PROXYLESS, RESNET])
def test_every_checkpoint_form_reads_the_same(name, tmp_path):
    space, theirs = _space(name), _ofa(name).state_dict()
    forms = {
        "dict": {"state_dict": theirs, "epoch": 120, "best_acc": 0.77},
        "module": {f"module.{k}": v for k, v in theirs.items()},
        "static": {_static_form(k): v for k, v in theirs.items()},
    }
    if name in (W10, PROXYLESS):
        forms["mobile_inverted_conv"] = {
            "state_dict": {
                re.sub(r"^(blocks\.\d+)\.conv\.", r"\1.mobile_inverted_conv.", k): v for k, v in theirs.items()
            }
        }
    expected = ofa_to_nasforge(theirs, space)
    for form, obj in forms.items():
        torch.save(obj, tmp_path / form)
        got = ofa_to_nasforge(read_checkpoint(tmp_path / form), space)
        assert list(got) == list(expected), form
        assert all(torch.equal(got[k], expected[k]) for k in expected), form
        if form != "module":  # the forms OFA's own load_state_dict reads too (it knows no `module.`)
            fresh = ofa_supernet(name)
            fresh.load_state_dict(obj.get("state_dict", obj))
            assert all(torch.equal(fresh.state_dict()[k], v) for k, v in theirs.items()), form


def test_identify_each_published_net():
    for name in ALL:
        assert identify({"state_dict": _ofa(name).state_dict()}) == (name, PUBLISHED[name].width)
    with pytest.raises(CheckpointError, match="not an OFA supernet"):
        identify(_supernet(W10).state_dict())


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_mismatched_checkpoint_names_the_first_tensor():
    with pytest.raises(CheckpointError) as exc:
        ofa_to_nasforge(_ofa(W12).state_dict(), _space(W10))
    assert _one_line(exc) == (
        "OFA checkpoint does not fit space 'mobilenetv3-ofa' (width 1): first_conv.conv.weight expected "
        "[16, 3, 3, 3], got [24, 3, 3, 3]; the checkpoint looks like ofa_mbv3_d234_e346_k357_w1.2"
    )
    with pytest.raises(CheckpointError) as exc:
        ofa_to_nasforge({"state_dict": _ofa(RESNET).state_dict()}, _space(W10))
    assert "first_conv.conv.weight expected [16, 3, 3, 3], got missing; " in _one_line(exc)
    assert _one_line(exc).endswith("looks like ofa_resnet50")
    with pytest.raises(CheckpointError) as exc:
        ofa_to_nasforge(_ofa(W10).state_dict(), _space(RESNET))
    assert "input_stem.0.conv.conv.weight expected [32, 3, 3, 3], got missing" in _one_line(exc)
    with pytest.raises(CheckpointError, match=r"tiny-mbv3.*first_conv.conv.weight expected \[8, 3, 3, 3\], got \[16"):
        ofa_to_nasforge(_ofa(W10).state_dict(), tiny_space("tiny-mbv3"))
    extra = {**_ofa(W10).state_dict(), "blocks.99.conv.depth_conv.bn.bn.weight": torch.ones(8)}
    with pytest.raises(CheckpointError, match="unexpected tensor blocks.99"):
        ofa_to_nasforge(extra, _space(W10))
    proxyless = dict(_ofa(PROXYLESS).state_dict())
    proxyless["blocks.21.conv.point_linear.conv.conv.weight"] = torch.zeros(400, 1488, 1, 1)  # a wrong last block
    with pytest.raises(CheckpointError) as exc:
        identify(proxyless)
    assert _one_line(exc) == (
        "OFA checkpoint does not fit space 'proxylessnas-ofa' (width 1.3): "
        "blocks.21.conv.point_linear.conv.conv.weight expected [416, 1488, 1, 1], got [400, 1488, 1, 1]; "
        "the checkpoint looks like ofa_proxyless_d234_e346_k357_w1.3"
    )


def test_read_checkpoint_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing")
    (tmp_path / "garbage").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "garbage")
    torch.save({"epoch": 3}, tmp_path / "other")
    with pytest.raises(CheckpointError, match="not an OFA checkpoint"):
        read_checkpoint(tmp_path / "other")


# ---------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("name", [W10, PROXYLESS, RESNET])
def test_export_loads_strictly_into_ofa_and_computes_the_same(name):
    space, g = _space(name), torch.Generator().manual_seed(3)
    net = randomize_(build_supernet(space), g).eval()  # nasforge's own weights this time
    arch = replace(space.sample(np.random.default_rng(3)), resolution=RESOLUTIONS[name][0])
    images = _images(4, arch.resolution, g)
    net.set_active(arch)
    calibrate_bn_(net, images, g)
    exported = nasforge_to_ofa(net.state_dict(), space)
    fresh = ofa_supernet(name)
    assert set(exported) == set(fresh.state_dict())
    torch.nn.Module.load_state_dict(fresh, exported, strict=True)
    fresh.load_state_dict(exported, strict=True)  # OFA's own override, as ofa.model_zoo calls it
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in exported.items())
    back = ofa_to_nasforge({"state_dict": exported}, space)
    assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())
    gap = logit_gap(fresh, net, space, arch, images)
    assert gap.supernet <= TOL and gap.extracted <= TOL and gap.spread > 1000 * TOL


def test_export_rejects_weights_of_another_space():
    with pytest.raises(CheckpointError, match="nasforge weights do not fit space 'mobilenetv3-ofa': stem.conv.weight"):
        nasforge_to_ofa(build_supernet(_space(W12)).state_dict(), _space(W10))


# ---------------------------------------------------------------------------------------- logits


@pytest.mark.slow
@pytest.mark.parametrize("name", [W10, W12, RESNET])
def test_supernet_and_extracted_logits_equal_ofa(name):
    space, g = _space(name), torch.Generator().manual_seed(1)
    archs = [space.largest(), space.smallest()] + space.sample_many(np.random.default_rng(1), 10)
    gaps = [_compare(name, arch, g) for arch in archs]
    worst = max(max(gap.supernet, gap.extracted) for gap in gaps)
    assert worst <= TOL, f"max |logit difference| {worst:.2e}"
    assert min(gap.spread for gap in gaps) > 1000 * TOL, "logits must depend on the input"


@pytest.mark.slow
@pytest.mark.parametrize("part", [0, 1])
@pytest.mark.parametrize("resolution", RESOLUTIONS[PROXYLESS])
def test_proxylessnas_logits_equal_ofa(resolution, part):
    """As above for ProxylessNAS, split in four (its 21 blocks cost twice MobileNetV3's): one resolution and half
    of the 12 subnets (largest, smallest, 10 random) per test."""
    space, g = _space(PROXYLESS), torch.Generator().manual_seed(1 + part)
    archs = [space.largest(), space.smallest()] + space.sample_many(np.random.default_rng(1), 10)
    archs = archs[:6] if part == 0 else archs[6:]
    gaps = [compare_subnet(_ofa(PROXYLESS), _supernet(PROXYLESS), space, a, (resolution,), g) for a in archs]
    worst = max(max(gap.supernet, gap.extracted) for gap in gaps)
    assert worst <= TOL, f"max |logit difference| {worst:.2e}"
    assert min(gap.spread for gap in gaps) > 1000 * TOL, "logits must depend on the input"


def test_proxylessnas_with_mbv3_bn_eps_is_caught():
    """A space that reads OFA's ProxylessNAS right but keeps PyTorch's BN epsilon (1e-5) fails the comparison."""
    space, g = _space(PROXYLESS), torch.Generator().manual_seed(4)
    wrong_space = SearchSpace.from_dict({**space.definition, "bn_eps": 1e-5}, width_mult=1.3)
    wrong = build_supernet(wrong_space).eval()
    arch = space.smallest()
    assert compare_subnet(_ofa(PROXYLESS), _supernet(PROXYLESS), space, arch, (128,), g).supernet <= TOL
    gap = compare_subnet(_ofa(PROXYLESS), wrong, wrong_space, arch, (128,), g)
    assert gap.supernet > 100 * TOL and gap.extracted > 100 * TOL

@pytest.mark.slow
@pytest.mark.parametrize("name", [W10, PROXYLESS, RESNET])
def test_mapping_is_exact_in_float64(name):
    """fp32 gaps are rounding: in float64 the largest subnet agrees to ~1e-12."""
    ofa, space, net = _ofa(name), _space(name), _supernet(name)
    g = torch.Generator().manual_seed(2)
    arch = space.largest(RESOLUTIONS[name][0])
    images = _images(4, arch.resolution, g)
    ofa.set_active_subnet(**arch_to_ofa(arch, space))
    calibrate_bn_(ofa, images, g)
    net.load_state_dict(ofa_to_nasforge(ofa.state_dict(), space))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # both extractions build fresh layers in the default dtype
    try:
        gap = logit_gap(ofa.double(), net.double(), space, arch, images.double())
    finally:
        torch.set_default_dtype(default)
        ofa.float()
        net.float()
    assert gap.supernet <= 1e-9 and gap.extracted <= 1e-9


def _identity_kernel_transforms(state: dict) -> dict:
    return {k: torch.eye(v.shape[0]) if "kernel_transforms" in k else v for k, v in state.items()}


def _no_running_stats(state: dict) -> dict:
    return {
        k: (torch.ones_like(v) if k.endswith("var") else torch.zeros_like(v)) if "running" in k else v
        for k, v in state.items()
    }


@pytest.mark.parametrize(
    ("name", "tamper"),
    [(W10, _identity_kernel_transforms), (RESNET, _no_running_stats)],
)
def test_a_wrong_mapping_fails_the_same_comparison(name, tamper):
    space, g = _space(name), torch.Generator().manual_seed(4)
    smallest = space.smallest()  # kernel 3 everywhere: both kernel transforms in use
    assert _compare(name, smallest, g).supernet <= TOL
    wrong = _compare(name, smallest, g, tamper)
    assert wrong.supernet > 100 * TOL and wrong.extracted > 100 * TOL


# ---------------------------------------------------------------------------------------- arch dicts


@pytest.mark.parametrize("name", [W10, PROXYLESS, RESNET])
def test_arch_dicts_round_trip_and_read_ofa_samples(name):
    space, rng = _space(name), np.random.default_rng(5)
    for arch in [space.largest(), space.smallest()] + space.sample_many(rng, 30):
        assert arch_from_ofa(arch_to_ofa(arch, space), space) == arch
    ofa, state = _ofa(name), random.getstate()
    random.seed(5)  # OFA's sampler draws from the global `random`
    try:
        samples = [ofa.sample_active_subnet() for _ in range(10)]
    finally:
        random.setstate(state)
    for sampled in samples:  # OFA's own sampler: nasforge reads its dicts, and writes the same active choices
        arch = arch_from_ofa({**sampled, "image_size": 160}, space)
        again = arch_to_ofa(arch, space)
        assert again["d"] == sampled["d"]
        if name == RESNET:
            assert again["w"] == sampled["w"]
            assert [e for e, a in zip(again["e"], arch.expand_ratios) if a] == [
                e for e, a in zip(sampled["e"], arch.expand_ratios) if a
            ]
        else:
            active = [k > 0 for k in arch.kernel_sizes]
            assert [k for k, a in zip(again["ks"], active) if a] == [k for k, a in zip(sampled["ks"], active) if a]


def test_resnet_arch_dict_errors():
    space = _space(RESNET)
    good = arch_to_ofa(space.largest(), space)
    with pytest.raises(ArchError, match=r"d\[0\] = 1 is ambiguous"):
        arch_from_ofa({**good, "d": [1, 2, 2, 2, 2]}, space)
    with pytest.raises(ArchError, match="'w' holds indices"):
        arch_from_ofa({**good, "w": [1.0] * 6}, space)
    with pytest.raises(ArchError, match="'e' needs 18 entries"):
        arch_from_ofa({**good, "e": [0.25] * 20}, space)


# ---------------------------------------------------------------------------------------- accuracy predictor


def _ofa_predictor(name: str, image_sizes: list[int]):
    return ofa_accuracy_predictor(name, image_sizes)


@pytest.mark.parametrize(
    ("name", "image_sizes"),
    [
        (W10, [128, 160, 192, 224]),
        (PROXYLESS, [224, 192, 160, 128]),  # the encoder's order, not sorted
        (RESNET, [128, 144, 160, 176, 192, 224, 240, 256]),
    ],
)
def test_ofa_accuracy_predictor_equals_ofa(name, image_sizes, tmp_path):
    from nasforge.foreign.ofa_predictor import OFAAccuracyPredictor

    space = _space(name)
    theirs = _ofa_predictor(name, image_sizes)
    torch.save(theirs.state_dict(), tmp_path / "acc_predictor.pth")
    ours = OFAAccuracyPredictor.load(tmp_path / "acc_predictor.pth", space, image_sizes)
    pool = space.sample_many(np.random.default_rng(7), 400)
    archs = [a for a in pool if a.resolution in image_sizes][:60] + [space.largest(), space.smallest()]
    dicts = [arch_to_ofa(a, space) for a in archs]
    np.testing.assert_array_equal(ours.features(archs), np.stack([theirs.arch_encoder.arch2feature(d) for d in dicts]))
    with torch.no_grad():
        expected = theirs.predict_acc(dicts).numpy()
    np.testing.assert_allclose(ours.predict(archs), expected, rtol=0, atol=1e-5)
    assert np.ptp(expected) > 1e-2  # the predictions differ between archs


def test_ofa_accuracy_predictor_errors(tmp_path):
    from nasforge.foreign.ofa_predictor import RESNET50_IMAGE_SIZES, OFAAccuracyPredictor

    space = _space(RESNET)
    state = _ofa_predictor(RESNET, list(RESNET50_IMAGE_SIZES)).state_dict()
    ours = OFAAccuracyPredictor.from_state_dict(state, space, RESNET50_IMAGE_SIZES)
    with pytest.raises(PredictorError, match="resolution 208 is not one the OFA predictor encodes"):
        ours.predict([space.largest(208)])
    with pytest.raises(PredictorError, match="reads 82 features, but space 'resnet-ofa' with image sizes"):
        OFAAccuracyPredictor.from_state_dict(state, space, [224])
    with pytest.raises(PredictorError, match="not an OFA accuracy predictor"):
        OFAAccuracyPredictor.from_state_dict({"epoch": torch.tensor(1)}, space, [224])
    with pytest.raises(PredictorError, match="no such OFA predictor file"):
        OFAAccuracyPredictor.load(tmp_path / "missing.pth", space, [224])


def test_ofa_tutorial_predictor_equals_ofa(tmp_path):
    """OFA's published MobileNetV3 predictor form (ofa.tutorial: 128 features, resolution bucket last)."""
    from nasforge.foreign.ofa_predictor import OFAAccuracyPredictor

    space = _space(W12)
    theirs = ofa_tutorial_predictor()
    torch.save(theirs.model.state_dict(), tmp_path / "acc_predictor.pth")
    ours = OFAAccuracyPredictor.load(tmp_path / "acc_predictor.pth", space)
    assert ours.form == "tutorial"
    archs = space.sample_many(np.random.default_rng(8), 60) + [space.largest(), space.smallest(140)]
    population = [{**arch_to_ofa(a, space), "r": [a.resolution]} for a in archs]
    expected = np.stack([theirs.spec2feats(list(p["ks"]), list(p["e"]), list(p["d"]), p["r"][0]).numpy()
                         for p in population])
    np.testing.assert_array_equal(ours.features(archs), expected)
    got = theirs.predict_accuracy(population).numpy().reshape(-1)
    np.testing.assert_allclose(ours.predict(archs), got, rtol=0, atol=1e-5)
    assert np.ptp(got) > 1e-3


@pytest.mark.parametrize(("name", "image_sizes"), [(W10, [128, 160, 192, 224]), (PROXYLESS, [128, 160, 192, 224])])
def test_ofa_mlp_predictor_kind_equals_ofa_on_nasforge_features(name, image_sizes, tmp_path):
    """The registered `ofa-mlp` kind, saved and loaded in nasforge's format, predicts OFA's numbers (in %)."""
    from nasforge.foreign.ofa_predictor import OFAAccuracyPredictor, OFAMLPPredictor
    from nasforge.predictors import load_predictor, save_predictor
    from nasforge.predictors.base import predictor_metadata

    space = _space(name)
    theirs = _ofa_predictor(name, image_sizes)
    ofa = OFAAccuracyPredictor.from_state_dict(theirs.state_dict(), space, image_sizes)
    meta = predictor_metadata(space, checkpoint_sha256="x", dataset="imagenet", num_measurements=0)
    save_predictor(OFAMLPPredictor.from_ofa(ofa), tmp_path / "p", meta)
    ours = load_predictor(tmp_path / "p", space)
    archs = [a for a in space.sample_many(np.random.default_rng(9), 300) if a.resolution in image_sizes][:50]
    with torch.no_grad():
        expected = theirs.predict_acc([arch_to_ofa(a, space) for a in archs]).numpy()
    np.testing.assert_allclose(ours.predict(space.features(archs)) / 100.0, expected, rtol=0, atol=1e-5)
    between = [a for a in space.sample_many(np.random.default_rng(10), 50) if a.resolution not in image_sizes][:5]
    nearest = [replace(a, resolution=min(image_sizes, key=lambda s: (abs(s - a.resolution), s > a.resolution)))
               for a in between]  # resolutions OFA's encoder lacks: predicted as the nearest it has
    np.testing.assert_allclose(ours.predict(space.features(between)), ours.predict(space.features(nearest)))
    with pytest.raises(PredictorError, match="OFA's trained model"):
        ours.fit(space.features(archs), expected)


def test_proxylessnas_arch_dict_takes_ofas_scalars():
    """OFA's `set_max_net` writes d=4 for every stage; its one-block last stage takes it as 1 (OFA clamps too)."""
    space = _space(PROXYLESS)
    assert arch_from_ofa({"ks": 7, "e": 6, "d": 4, "image_size": 224}, space) == space.largest()
    assert arch_to_ofa(space.largest(), space)["d"] == [4, 4, 4, 4, 4, 1]
