"""Once-for-All's published supernets as nasforge supernets: a checkpoint filter and OFA's arch dicts.

OFA (mit-han-lab/once-for-all, `ofa` on PyPI) publishes four elastic supernets. Each is, tensor for tensor,
the supernet of a shipped nasforge space; only the names differ. OFA's names are derived from nasforge's by
the family's adapter (`ofa_families.OFAAdapter.layout`: a table of rename rules, which OFA block a nasforge
(stage, position) is, and which OFA modules are "dynamic", nesting one more `conv.`/`bn.`/`linear.`); this
module applies it::

    space = load_space("mobilenetv3-ofa", width_mult=1.2)
    supernet = build_supernet(space)
    supernet.load_state_dict(ofa_to_nasforge(read_checkpoint("ofa_mbv3_d234_e346_k357_w1.2"), space))

Checkpoint forms read (what OFA's own `load_state_dict` reads, plus DataParallel's prefix): a dict holding
`state_dict` or a bare state dict; keys with or without `module.`; MobileNet blocks as `.mobile_inverted_conv.`
or `.conv.`; a dynamic module's tensors as `conv.conv.weight` or `conv.weight`. Exports use the names OFA's
modules have today, so `OFAMobileNetV3(...).load_state_dict(nasforge_to_ofa(...), strict=True)` works.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from nasforge.arch import ArchConfig
from nasforge.errors import ArchError, CheckpointError, NasforgeError
from nasforge.foreign.ofa_families import OFALayout, adapter
from nasforge.space import SearchSpace, load_space

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OFANet:
    """One of OFA's published supernets: how OFA builds it, and the nasforge space equal to it (if any yet)."""

    name: str
    family: str
    width: float
    space: str | None
    ofa_class: str
    ofa_kwargs: Mapping[str, Any]

    def load_space(self) -> SearchSpace:
        if self.space is None:
            raise CheckpointError(f"{self.name}: no nasforge space equals this OFA supernet yet")
        return load_space(self.space, width_mult=self.width)


_MBV3_ARGS = {"dropout_rate": 0, "ks_list": [3, 5, 7], "expand_ratio_list": [3, 4, 6], "depth_list": [2, 3, 4]}

# As `ofa.model_zoo.ofa_net` builds them.
PUBLISHED: dict[str, OFANet] = {
    net.name: net
    for net in (
        OFANet(
            "ofa_mbv3_d234_e346_k357_w1.0",
            "mobilenetv3",
            1.0,
            "mobilenetv3-ofa",
            "OFAMobileNetV3",
            {**_MBV3_ARGS, "width_mult": 1.0},
        ),
        OFANet(
            "ofa_mbv3_d234_e346_k357_w1.2",
            "mobilenetv3",
            1.2,
            "mobilenetv3-ofa",
            "OFAMobileNetV3",
            {**_MBV3_ARGS, "width_mult": 1.2},
        ),
        OFANet(
            "ofa_proxyless_d234_e346_k357_w1.3",
            "proxylessnas",
            1.3,
            "proxylessnas-ofa",
            "OFAProxylessNASNets",
            {**_MBV3_ARGS, "width_mult": 1.3},
        ),
        OFANet(
            "ofa_resnet50",
            "resnet",
            1.0,
            "resnet-ofa",
            "OFAResNets",
            {
                "dropout_rate": 0,
                "depth_list": [0, 1, 2],
                "expand_ratio_list": [0.2, 0.25, 0.35],
                "width_mult_list": [0.65, 0.8, 1.0],
            },
        ),
    )
}

# A tensor only one OFA family holds, and its base width: its size / base = the width multiplier.
_SIGNATURES = (
    ("mobilenetv3", "final_expand_layer.conv.weight", 960),
    ("proxylessnas", "feature_mix_layer.bn.weight", 1280),  # MobileNetV3's feature mix has no BN
    ("resnet", "input_stem.2.conv.conv.weight", 64),
)

_LEAF = r"(weight|bias|running_mean|running_var|num_batches_tracked)$"
_DYNAMIC_LEAF = re.compile(r"(?<![^.])(conv|bn|linear)\." + _LEAF)  # conv.weight -> conv.conv.weight
_STATIC_ALIAS = re.compile(r"(?<![^.])(conv|bn|linear)\.\1\." + _LEAF)  # and back


# ---------------------------------------------------------------------------------------- layouts


def _layout(space: SearchSpace, error: type[NasforgeError] = CheckpointError) -> OFALayout:
    found = adapter(space)
    if found is None:
        raise error(f"space '{space.name}' (family {space.family.name}) has no Once-for-All counterpart")
    return found.layout(space)


def _ofa_name(key: str, layout: OFALayout, block_offsets: list[int]) -> str:
    m = re.match(r"stages\.(\d+)\.(\d+)\.", key)
    if m:
        key = f"blocks.{block_offsets[int(m[1])] + int(m[2])}." + key[m.end() :]
    for pattern, template in layout.rules:
        m = re.match(pattern, key)
        if m:
            name = m.expand(template) + key[m.end() :]
            return _DYNAMIC_LEAF.sub(r"\1.\1.\2", name) if re.match(layout.dynamic, name) else name
    raise CheckpointError(f"no Once-for-All name for nasforge tensor {key}")


_PLANS: dict[str, list[tuple[str, str, Shape]]] = {}  # by space fingerprint: a space's plan never changes


def _plan(space: SearchSpace) -> list[tuple[str, str, Shape]]:
    """(nasforge key, OFA key, shape) of every tensor of the space's supernet, in network order."""
    from nasforge.supernet import build_supernet

    plan = _PLANS.get(space.fingerprint)
    if plan is None:
        layout = _layout(space)
        depths = [layout.first_block] + [s.max_depth for s in space.stages[layout.skip_stages :]]
        offsets = list(itertools.accumulate(depths))
        # Built on the CPU, not the meta device: initialising meta tensors imports torch._dynamo (~5 s), while
        # a real build takes 0.1-0.5 s and its memory is freed at once. Its init leaves the global RNG alone.
        with torch.random.fork_rng(devices=[]):
            state = build_supernet(space).state_dict()
        plan = [(key, _ofa_name(key, layout, offsets), tuple(t.shape)) for key, t in state.items()]
        _PLANS[space.fingerprint] = plan
    return list(plan)


def ofa_key_map(space: SearchSpace) -> dict[str, str]:
    """nasforge key -> the name OFA's own module gives that tensor."""
    return {nf: ofa for nf, ofa, _ in _plan(space)}


# ---------------------------------------------------------------------------------------- checkpoints


def _unwrap(obj: Any) -> dict[str, torch.Tensor]:
    """A bare state dict with OFA's current key forms (no `module.`, no `.mobile_inverted_conv.`)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError("not an OFA checkpoint: expected a state dict or a dict holding 'state_dict'")
    out: dict[str, torch.Tensor] = {}
    for key, tensor in obj.items():
        key = re.sub(r"^module\.", "", str(key))
        out[re.sub(r"^(blocks\.\d+)\.mobile_inverted_conv\.", r"\1.conv.", key)] = tensor
    return out


def _find(ckpt: Mapping[str, torch.Tensor], ofa_key: str) -> str | None:
    """The checkpoint's key for a tensor: OFA's current name, or the static-layer spelling of it."""
    for key in (ofa_key, _STATIC_ALIAS.sub(r"\1.\2", ofa_key)):
        if key in ckpt:
            return key
    return None


def _shape(shape: Shape | None) -> str:
    return "missing" if shape is None else str(list(shape))


def read_checkpoint(path: str | Path | BinaryIO) -> dict[str, torch.Tensor]:
    """An OFA checkpoint file as a bare state dict (loaded with weights_only: no code is unpickled)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file") from None
    except PermissionError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    except Exception as exc:  # torch.load raises anything for junk: IndexError, KeyError, EOFError, zip errors...
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (torch.load failed: {type(exc).__name__})") from None
    return _unwrap(obj)


def ofa_to_nasforge(state_dict: Mapping[str, Any], space: SearchSpace) -> dict[str, torch.Tensor]:
    """OFA supernet tensors under nasforge's names; CheckpointError names the first tensor that disagrees."""
    ckpt = _unwrap(state_dict)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for nf_key, ofa_key, shape in _plan(space):
        key = _find(ckpt, ofa_key)
        if key is None and nf_key.endswith("num_batches_tracked"):  # absent from some checkpoints; unused in eval
            out[nf_key] = torch.zeros((), dtype=torch.long)
            continue
        got = None if key is None else tuple(ckpt[key].shape)
        if got != shape:
            raise _mismatch(space, ckpt, ofa_key, shape, got)
        out[nf_key] = ckpt[key]  # type: ignore[index]
        used.add(key)  # type: ignore[arg-type]
    extra = [key for key in ckpt if key not in used]
    if extra:
        raise CheckpointError(
            f"OFA checkpoint does not fit space '{space.name}' (width {space.width_mult:g}): "
            f"unexpected tensor {extra[0]} {list(ckpt[extra[0]].shape)}{_hint(ckpt)}"
        )
    return out


def nasforge_to_ofa(state_dict: Mapping[str, Any], space: SearchSpace) -> dict[str, torch.Tensor]:
    """nasforge supernet tensors under the names OFA's modules have (save as {"state_dict": ...} for OFA)."""
    if isinstance(state_dict.get("model"), Mapping):  # a nasforge supernet.pt
        state_dict = state_dict["model"]
    plan = _plan(space)
    out: dict[str, torch.Tensor] = {}
    for nf_key, ofa_key, shape in plan:
        tensor = state_dict.get(nf_key)
        got = None if tensor is None else tuple(tensor.shape)
        if got != shape:
            raise CheckpointError(
                f"nasforge weights do not fit space '{space.name}': {nf_key} expected {list(shape)}, got {_shape(got)}"
            )
        out[ofa_key] = tensor  # type: ignore[assignment]
    extra = sorted(set(state_dict) - {nf for nf, _, _ in plan})
    if extra:
        raise CheckpointError(f"nasforge weights do not fit space '{space.name}': unexpected tensor {extra[0]}")
    return out


def _guess(ckpt: Mapping[str, torch.Tensor]) -> OFANet:
    """The published net a checkpoint's family marker and width point to (no full shape check)."""
    for family, marker, base in _SIGNATURES:
        key = _find(ckpt, marker)
        if key is None:
            continue
        width = round(ckpt[key].shape[0] / base, 2)
        for net in PUBLISHED.values():
            if net.family == family and abs(net.width - width) < 1e-6:
                return net
        widths = [net.width for net in PUBLISHED.values() if net.family == family]
        raise CheckpointError(
            f"an OFA {family} supernet of width {width:g} is not a published one (published widths: {widths})"
        )
    raise CheckpointError("not an OFA supernet checkpoint: no first_conv/final_expand_layer/input_stem tensors")


def _hint(ckpt: Mapping[str, torch.Tensor]) -> str:
    try:
        return f"; the checkpoint looks like {_guess(ckpt).name}"
    except CheckpointError:
        return ""


def _mismatch(
    space: SearchSpace, ckpt: Mapping[str, torch.Tensor], ofa_key: str, expected: Shape, got: Shape | None
) -> CheckpointError:
    return CheckpointError(
        f"OFA checkpoint does not fit space '{space.name}' (width {space.width_mult:g}): "
        f"{ofa_key} expected {list(expected)}, got {_shape(got)}{_hint(ckpt)}"
    )


def recognise(state_dict: Mapping[str, Any]) -> OFANet:
    """The published net an OFA checkpoint's family marker and width point to (its tensors are not checked yet:
    `ofa_to_nasforge` with the net's space does that)."""
    return _guess(_unwrap(state_dict))


def identify(state_dict: Mapping[str, Any]) -> tuple[str, float]:
    """(published net name, width multiplier) of an OFA checkpoint, recognised from its tensor shapes.

    The family marker and width pick the net; then every tensor is checked (CheckpointError at the first
    that disagrees).
    """
    ckpt = _unwrap(state_dict)
    net = _guess(ckpt)
    ofa_to_nasforge(ckpt, net.load_space())
    return net.name, net.width


# ---------------------------------------------------------------------------------------- archs


def arch_to_ofa(arch: ArchConfig, space: SearchSpace) -> dict[str, Any]:
    """OFA's subnet dict: `set_active_subnet(**d)` takes it, and so do OFA's arch encoders (`image_size`).

    MobileNet: ks, e, d (and r, as OFA's tutorial and DyNAS-T write it); ResNet: d, e, w (indices). The family's
    adapter writes it (`ofa_families`); inactive slots get the smallest choice, since OFA needs a value there.
    """
    arch = space.validate(arch)
    found = adapter(space)
    form = found.write(space, arch) if found is not None else None
    if form is None:
        raise ArchError(f"Once-for-All's dict form is not defined for {space.family.name} space '{space.name}'")
    return {**form, "image_size": arch.resolution}


def arch_from_ofa(data: Mapping[str, Any], space: SearchSpace) -> ArchConfig:
    """The canonical nasforge arch of an OFA subnet dict (resolution from image_size, r or resolution)."""
    if not isinstance(data, Mapping):
        raise ArchError(f"an OFA arch must be a dict, got {type(data).__name__}")
    found = adapter(space)
    arch = found.parse(space, dict(data)) if found is not None else None
    if arch is None:
        raise ArchError(f"not an OFA arch dict for {space.family.name} space '{space.name}': keys {sorted(data)}")
    return arch


def published_net(space: SearchSpace) -> OFANet | None:
    """The published OFA net whose class builds `space` (at its width; any class count), if any."""
    for net in PUBLISHED.values():
        if net.space is None:
            continue
        theirs = net.load_space()
        if theirs.width_mult == space.width_mult and (
            theirs.with_options(num_classes=space.num_classes).fingerprint == space.fingerprint
        ):
            return net
    return None


__all__ = [
    "PUBLISHED",
    "OFANet",
    "arch_from_ofa",
    "arch_to_ofa",
    "identify",
    "published_net",
    "recognise",
    "nasforge_to_ofa",
    "ofa_key_map",
    "ofa_to_nasforge",
    "read_checkpoint",
]
