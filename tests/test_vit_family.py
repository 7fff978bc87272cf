"""The `vit` family against an oracle nobody here wrote: timm's own `VisionTransformer` forward on the same weights.

Weights are made non-trivial (random LayerNorm affine and biases, not timm's init) and every comparison first
asserts that the logits depend on the input, so an equality cannot hold by both sides being constant.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch.utils.flop_counter import FlopCounterMode

from nasforge.space import SearchSpace
from nasforge.supernet import build_supernet
from nasforge.supernet.vit import timm_to_supernet

# vit-tiny-like: embed dim fixed; autoformer-like: elastic embed dim (largest = heads x head_dim, as timm needs)
VIT_LIKE = {"name": "vit-like", "family": "vit", "resolutions": [16, 24, 32], "num_classes": 10, "patch": 4,
            "head_dim": 8, "embed_dims": [24], "depths": [2, 3], "heads": [1, 2, 3], "mlp_ratios": [1.0, 2.0, 4.0]}
AUTOFORMER_LIKE = {**VIT_LIKE, "name": "autoformer-like", "resolutions": [32], "embed_dims": [16, 20, 24],
                   "mlp_ratios": [3.5, 4.0], "heads": [2, 3]}


def _space(d: dict) -> SearchSpace:
    return SearchSpace.from_dict(d, source=d["name"])


def _timm(d: dict, **kw) -> VisionTransformer:
    """timm's ViT of the space's largest network, with random non-trivial weights."""
    torch.manual_seed(0)
    model = VisionTransformer(img_size=max(d["resolutions"]), patch_size=d["patch"], num_classes=d["num_classes"],
                              embed_dim=max(d["embed_dims"]), depth=max(d["depths"]), num_heads=max(d["heads"]),
                              mlp_ratio=max(d["mlp_ratios"]), **kw)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.5) + (1.0 if "norm" in name and
                                                                               name.endswith("weight") else 0.0))
    return model.eval()


def _images(resolution: int, n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))


def _supernet_from(d: dict, model: VisionTransformer):
    net = build_supernet(_space(d)).eval()
    net.load_state_dict(timm_to_supernet(model.state_dict()), strict=True)
    return net


def _assert_input_sensitive(logits: torch.Tensor) -> None:
    assert (logits[0] - logits[1]).abs().max() > 1e-2 and logits.abs().max() > 1e-2


@pytest.mark.parametrize("d", [VIT_LIKE, AUTOFORMER_LIKE], ids=lambda d: d["name"])
def test_largest_subnet_equals_timm_forward(d):
    model = _timm(d)
    net = _supernet_from(d, model)
    x = _images(max(d["resolutions"]))
    with torch.no_grad():
        expected = model(x)
        _assert_input_sensitive(expected)
        assert torch.allclose(net(x), expected, atol=1e-5, rtol=0)
        assert torch.allclose(net.extract(net.space.largest()).eval()(x), expected, atol=1e-5, rtol=0)


def test_smaller_resolution_equals_timm_dynamic_img_size():
    """Elastic resolution: position embeddings resampled as timm resamples them (`dynamic_img_size=True`)."""
    model = _timm(VIT_LIKE, dynamic_img_size=True)
    net = _supernet_from(VIT_LIKE, model)
    space = net.space
    for resolution in (16, 24):
        x = _images(resolution)
        arch = space.largest(resolution)
        with torch.no_grad():
            expected = model(x)
            _assert_input_sensitive(expected)
            with net.active(arch):
                assert torch.allclose(net(x), expected, atol=1e-5, rtol=0), resolution
            assert torch.allclose(net.extract(arch).eval()(x), expected, atol=1e-5, rtol=0), resolution


def _timm_with_dropped(model: VisionTransformer, space: SearchSpace, arch) -> VisionTransformer:
    """timm's own model computing `arch`: dropped heads' value rows/bias and proj columns zeroed (a head whose
    values are zero adds nothing), dropped MLP units' fc1 rows/bias and fc2 columns zeroed (GELU(0) = 0), the
    dropped blocks removed."""
    import copy

    cfg = space.config
    out = copy.deepcopy(model)
    inner = max(cfg.heads) * cfg.head_dim
    dim = max(cfg.embed_dims)
    with torch.no_grad():
        for blk, choice in zip(out.blocks, space.block_choices(arch)[0]):
            used, hidden = int(choice["heads"]) * cfg.head_dim, round(dim * choice["mlp"])
            blk.attn.qkv.weight[2 * inner + used:] = 0
            blk.attn.qkv.bias[2 * inner + used:] = 0
            blk.attn.proj.weight[:, used:] = 0
            blk.mlp.fc1.weight[hidden:] = 0
            blk.mlp.fc1.bias[hidden:] = 0
            blk.mlp.fc2.weight[:, hidden:] = 0
    out.blocks = out.blocks[: arch.depths[0]]
    return out.eval()


def test_subnets_equal_timm_forward_with_dropped_parts_zeroed():
    """>= 10 random subnets, supernet forward and extracted static subnet, against timm's code on zeroed weights."""
    model = _timm(VIT_LIKE)
    net = _supernet_from(VIT_LIKE, model)
    space = net.space
    archs = [space.smallest(32), *space.sample_many(np.random.default_rng(5), 12)]
    archs = [a.with_resolution(32) for a in archs]
    assert len(set(archs)) >= 10
    x = _images(32)
    with torch.no_grad():
        for arch in archs:
            expected = _timm_with_dropped(model, space, arch)(x)
            _assert_input_sensitive(expected)
            with net.active(arch):
                assert torch.allclose(net(x), expected, atol=1e-5, rtol=0), arch.key
            assert torch.allclose(net.extract(arch).eval()(x), expected, atol=1e-5, rtol=0), arch.key


def test_extracted_subnets_equal_supernet_with_elastic_embed_dim():
    model = _timm(AUTOFORMER_LIKE)
    net = _supernet_from(AUTOFORMER_LIKE, model)
    space = net.space
    archs = [space.largest(), space.smallest(), *space.sample_many(np.random.default_rng(6), 12)]
    assert len({a.get("embed_dims") for a in archs}) == 3
    x = _images(32)
    with torch.no_grad():
        for arch in archs:
            with net.active(arch):
                expected = net(x)
            _assert_input_sensitive(expected)
            sub = net.extract(arch).eval()
            assert torch.allclose(sub(x), expected, atol=1e-5, rtol=0), arch.key
            assert sum(p.numel() for p in sub.parameters()) == space.params(arch)


@pytest.mark.parametrize("d", [VIT_LIKE, AUTOFORMER_LIKE], ids=lambda d: d["name"])
def test_reorder_keeps_the_largest_function_and_sorts_heads_and_units(d):
    net = _supernet_from(d, _timm(d))
    x = _images(32)
    with torch.no_grad():
        before = net(x)
        net.reorder_channels()
        after = net(x)
    _assert_input_sensitive(before)
    assert torch.allclose(after, before, atol=1e-5, rtol=0)
    head_dim = d["head_dim"]
    for blk in net.blocks:
        w = blk.attn.proj.weight.abs()
        per_head = w.reshape(w.shape[0], -1, head_dim).sum((0, 2))
        assert torch.all(per_head[:-1] >= per_head[1:])
        units = blk.mlp.fc2.weight.abs().sum(0)
        assert torch.all(units[:-1] >= units[1:])


@pytest.mark.parametrize("d", [VIT_LIKE, AUTOFORMER_LIKE], ids=lambda d: d["name"])
def test_analytic_macs_and_params_equal_flop_counter_and_numel(d):
    """nasforge's convention: MACs = FlopCounterMode's flops / 2 (convs, linears and the two attention matmuls)."""
    space = _space(d)
    net = build_supernet(space).eval()
    for arch in [space.largest(), space.smallest(), *space.sample_many(np.random.default_rng(7), 5)]:
        sub = net.extract(arch).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            sub(_images(arch.resolution, 1))
        assert counter.get_total_flops() // 2 == space.macs(arch), arch.key
        assert sum(p.numel() for p in sub.parameters()) == space.params(arch), arch.key


def test_shipped_vit_base_macs_match_timm_vit_base():
    """vit-base-dynast's largest network is ViT-B/16: its parameter count is timm's `vit_base_patch16_224`'s."""
    from nasforge.space import load_space

    space = load_space("vit-base-dynast")
    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_224", pretrained=False)
    assert space.params(space.largest()) == sum(p.numel() for p in model.parameters())


def test_onnx_export_of_an_extracted_subnet_equals_torch(tmp_path):
    from nasforge.export.onnx import export_onnx, run_onnx

    net = _supernet_from(AUTOFORMER_LIKE, _timm(AUTOFORMER_LIKE))
    arch = net.space.sample_many(np.random.default_rng(8), 1)[0]
    sub = net.extract(arch).eval()
    x = _images(32)
    export_onnx(sub, tmp_path / "sub.onnx", 32, check_inputs=x[:1], tolerance=1e-4)
    with torch.no_grad():
        expected = sub(x[:1]).numpy()
    got = run_onnx(tmp_path / "sub.onnx", x[:1].numpy())
    assert np.abs(got - expected).max() <= 1e-4


# ---------------------------------------------------------------------------------------------- timm import
def _cli(args):
    from typer.testing import CliRunner

    from nasforge.cli import app

    return CliRunner().invoke(app, args)


@pytest.fixture
def vit_like_yaml(tmp_path):
    import yaml

    path = tmp_path / "vit-like.yaml"
    path.write_text(yaml.safe_dump(VIT_LIKE))
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_import_from_timm_round_trip(tmp_path, vit_like_yaml, suffix):
    """timm's model saved in its own formats -> `nasforge import --from timm` -> run folder -> timm's logits."""
    from safetensors.torch import save_file

    from nasforge.train.runs import load_run

    model = _timm(VIT_LIKE)
    weights = tmp_path / f"vit{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(weights))
    else:
        torch.save({"state_dict": state}, weights)
    run_dir = tmp_path / "run"
    result = _cli(["import", "--from", "timm", "vit_tiny_patch16_224", "--weights", str(weights), "--space",
                   str(vit_like_yaml), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    run = load_run(run_dir, device="cpu")
    assert run.import_record()["project"] == "timm"
    x = _images(32)
    with torch.no_grad():
        expected = model(x)
        _assert_input_sensitive(expected)
        net = run.supernet.eval()
        with net.active(run.space.largest()):
            assert torch.allclose(net(x), expected, atol=1e-5, rtol=0)


def test_import_from_timm_mismatch_is_one_line_naming_the_tensor(tmp_path, vit_like_yaml):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in _timm(VIT_LIKE).state_dict().items()}
    state["blocks.1.mlp.fc1.weight"] = state["blocks.1.mlp.fc1.weight"][:-1].contiguous()
    save_file(state, str(tmp_path / "bad.safetensors"))
    result = _cli(["import", "--from", "timm", "vit_tiny_patch16_224", "--weights", str(tmp_path / "bad.safetensors"),
                   "--space", str(vit_like_yaml), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "'blocks.1.mlp.fc1.weight'" in lines[0], lines
    assert "(95, 24)" in lines[0] and "(96, 24)" in lines[0], lines
    assert not (tmp_path / "run" / "supernet.pt").exists()
