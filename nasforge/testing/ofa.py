"""Once-for-All's own supernets with random weights under which a comparison can fail.

With PyTorch's default init and random BN statistics, a deep net's logits barely depend on its input,
and two different networks "agree" to 1e-4. Here every kind of tensor shows in the logits: He fan-out
convs, random BN and LayerNorm affine and biases, non-identity kernel-transform matrices, and BN running statistics
estimated for the subnet under comparison and then perturbed. Needs the `ofa` package (test extra).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from nasforge.arch import ArchConfig
from nasforge.foreign.ofa import PUBLISHED, arch_to_ofa, ofa_to_nasforge, read_checkpoint
from nasforge.space import SearchSpace
from nasforge.supernet import ElasticSupernet


def ofa_supernet(name: str) -> nn.Module:
    """OFA's own class for a published net, built as `ofa.model_zoo.ofa_net` builds it (nothing downloaded)."""
    from ofa.imagenet_classification.elastic_nn import networks

    net = PUBLISHED[name]
    return getattr(networks, net.ofa_class)(**net.ofa_kwargs)


@torch.no_grad()
def randomize_(net: nn.Module, generator: torch.Generator) -> nn.Module:
    """Random weights for any OFA or nasforge net (see the module docstring); returns `net`."""

    def normal(shape: torch.Size, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * std

    for module in net.modules():
        if isinstance(module, _BatchNorm):
            n = module.num_features
            module.weight.copy_(0.5 + torch.rand(n, generator=generator))
            module.bias.copy_(normal(module.bias.shape, 0.2))
            module.running_mean.copy_(normal(module.running_mean.shape, 0.2))  # type: ignore[union-attr]
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))  # type: ignore[union-attr]
            continue
        if isinstance(module, nn.LayerNorm) and module.elementwise_affine:  # transformers: as BN's affine
            module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
            module.bias.copy_(normal(module.bias.shape, 0.2))
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.dim() == 4:  # conv: He fan-out, as OFA's init_models
                fan_out = param.shape[0] * param.shape[2] * param.shape[3]
                param.copy_(normal(param.shape, math.sqrt(2.0 / fan_out)))
            elif param.dim() == 2 and re.search(r"\d+to\d+", name):  # kernel transform: identity plus noise
                param.copy_(torch.eye(param.shape[0]) + normal(param.shape, 0.1))
            elif param.dim() == 2:  # linear
                param.copy_(normal(param.shape, 1.0 / math.sqrt(param.shape[1])))
            else:  # biases
                param.copy_(normal(param.shape, 0.1))
    return net


@torch.no_grad()
def calibrate_bn_(net: nn.Module, images: torch.Tensor, generator: torch.Generator, spread: float = 0.2) -> None:
    """Set BN running statistics to what each BN's input has for the active subnet, then perturb them.

    One eval-mode forward on `images`; each BN sets its statistics from its own input just before it runs,
    so it sees its predecessors' final statistics and the perturbations do not compound with depth.
    Elastic BN (OFA's and nasforge's alike) reads the leading slice, which is the slice set here.
    """

    def set_stats(bn: _BatchNorm) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0]
            c = x.shape[1]
            mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
            bn.running_mean[:c] = mean + var.sqrt() * torch.randn(c, generator=generator) * spread  # type: ignore[index]
            bn.running_var[:c] = var * torch.exp(torch.randn(c, generator=generator) * spread)  # type: ignore[index]

        return hook

    handles = []
    for module in net.modules():
        if isinstance(module, _BatchNorm):
            handles.append(module.register_forward_pre_hook(set_stats(module)))
        elif isinstance(getattr(module, "bn", None), _BatchNorm) and len(list(module.children())) == 1:
            # OFA's DynamicBatchNorm2d: below full width it calls F.batch_norm on its `bn`, not the module
            handles.append(module.register_forward_pre_hook(set_stats(module.bn)))  # type: ignore[arg-type]
    was_training = net.training
    try:
        net.eval()(images)
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class Gap:
    """Max |logit difference| OFA vs nasforge, and how much the logits depend on the input at all."""

    supernet: float  # OFA set_active_subnet + forward vs nasforge set_active + forward
    extracted: float  # OFA get_active_subnet() vs nasforge extract()
    spread: float  # max |logits(image 0) - logits(image 1)| of nasforge's supernet (the least, over batches)


@torch.no_grad()
def logit_gap(ofa_net: nn.Module, supernet: ElasticSupernet, space: SearchSpace, arch: ArchConfig,
              images: torch.Tensor) -> Gap:
    """Compare one subnet both ways on `images` (at any resolution; both nets in eval mode)."""
    ofa_net.eval()
    supernet.eval()
    ofa_net.set_active_subnet(**arch_to_ofa(arch, space))  # type: ignore[operator]
    supernet.set_active(replace(arch, resolution=images.shape[-1]))
    ours = supernet(images)
    theirs_static = ofa_net.get_active_subnet(preserve_weight=True).eval()  # type: ignore[operator]
    ours_static = supernet.extract().eval()
    return Gap(
        supernet=float((ofa_net(images) - ours).abs().max()),
        extracted=float((theirs_static(images) - ours_static(images)).abs().max()),
        spread=float((ours[0] - ours[1]).abs().max()),
    )


@torch.no_grad()
def compare_subnet(ofa_net: nn.Module, supernet: ElasticSupernet, space: SearchSpace, arch: ArchConfig,
                   resolutions: Sequence[int], generator: torch.Generator, *, batch: int = 2,
                   tamper: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> Gap:
    """The worst gap of `arch` over `resolutions`; at each, on a batch of random images, OFA's BN statistics
    are estimated for `arch`, OFA's weights go through OFA's file format and the filter into `supernet`
    (`tamper` may spoil them, to show a wrong mapping fails), and both nets run that batch.

    Statistics estimated on the compared images keep this random net well-conditioned: on other images its
    deep activations grow, and so does fp32 rounding (still ~1e-5 relative, but no longer << 1e-4).
    """
    gaps = []
    for resolution in resolutions:
        images = torch.randn(batch, 3, resolution, resolution, generator=generator)
        ofa_net.set_active_subnet(**arch_to_ofa(arch, space))  # type: ignore[operator]
        calibrate_bn_(ofa_net, images, generator)
        file = io.BytesIO()  # through OFA's file format, as a published checkpoint arrives
        torch.save({"state_dict": ofa_net.state_dict()}, file)
        file.seek(0)
        state = ofa_to_nasforge(read_checkpoint(file), space)
        supernet.load_state_dict(tamper(state) if tamper else state)
        gaps.append(logit_gap(ofa_net, supernet, space, arch, images))
    return Gap(max(g.supernet for g in gaps), max(g.extracted for g in gaps), min(g.spread for g in gaps))


# ---------------------------------------------------------------------------------------- accuracy predictors


def ofa_accuracy_predictor(name: str, image_sizes: Sequence[int], seed: int = 6, base_acc: float = 0.75) -> nn.Module:
    """OFA's own `ofa.nas.accuracy_predictor.AccuracyPredictor` for a published net's space, random weights.

    ProxylessNAS's 21 blocks take the encoder's MobileNetV2 layout (`SPACE_TYPE = "mbv2"`, 6 stages).
    """
    from ofa.nas import accuracy_predictor as acc

    net = PUBLISHED[name]
    kw = net.ofa_kwargs
    if net.ofa_class == "OFAResNets":
        encoder = acc.ResNetArchEncoder(image_size_list=list(image_sizes), depth_list=kw["depth_list"],
                                        expand_list=kw["expand_ratio_list"], width_mult_list=kw["width_mult_list"])
    else:
        cls = acc.MobileNetArchEncoder
        if net.ofa_class == "OFAProxylessNASNets":
            cls = type("ProxylessArchEncoder", (acc.MobileNetArchEncoder,), {"SPACE_TYPE": "mbv2"})
        encoder = cls(image_size_list=list(image_sizes), ks_list=kw["ks_list"], expand_list=kw["expand_ratio_list"],
                      depth_list=kw["depth_list"])
    with torch.random.fork_rng():  # OFA's class draws its init from the global generator
        torch.manual_seed(seed)
        predictor = acc.AccuracyPredictor(encoder, hidden_size=400, n_layers=3, device="cpu")
    with torch.no_grad():
        predictor.base_acc.fill_(base_acc)
    return predictor.eval()


def ofa_tutorial_predictor(seed: int = 6) -> object:
    """OFA's tutorial `AccuracyPredictor` (the form of its published `acc_predictor.pth`), random weights.

    Loaded from its file: `ofa.tutorial`'s package import pulls in the model zoo's download helpers.
    """
    import importlib.util
    from pathlib import Path

    import ofa

    path = Path(ofa.__file__).parent / "tutorial" / "accuracy_predictor.py"
    spec = importlib.util.spec_from_file_location("_ofa_tutorial_accuracy_predictor", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return module.AccuracyPredictor(pretrained=False, device="cpu")


__all__ = ["Gap", "calibrate_bn_", "compare_subnet", "logit_gap", "ofa_accuracy_predictor", "ofa_supernet",
           "ofa_tutorial_predictor", "randomize_"]
