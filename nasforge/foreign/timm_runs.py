"""A timm `VisionTransformer` checkpoint as a nasforge run folder of a `vit` space, nothing downloaded.

    import_timm_checkpoint("vit_tiny_patch16_224", "vit.safetensors", "vit-tiny", "runs/vit")

timm builds `model_name` offline (`pretrained=False`) at the space's largest network (image size, patch, embed
dim, depth, heads, MLP ratio, classes), so a name whose layout the family cannot hold (register tokens, layer
scale, average pooling, ...) is refused by its tensors; the file's tensors are then checked, name and shape,
against that model and the supernet (one line names the first that disagrees). The run folder holds what
`import-ofa` writes: config.yaml, space.yaml, data.json, supernet.pt and import.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasforge.errors import CheckpointError, ConfigError
from nasforge.foreign.imported_run import check_import_destination, write_imported_run
from nasforge.space import SearchSpace, load_space


@dataclass(frozen=True)
class TimmImport:
    run_dir: Path
    model_name: str
    space: SearchSpace
    sha256: str
    tensors: int


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors` or a torch file (bare, or under `state_dict` / `model`)."""
    if not path.is_file():
        raise ConfigError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return data


def first_mismatch(found: Mapping[str, torch.Tensor], expected: Mapping[str, Any], what: str) -> str | None:
    """One line naming the first tensor of `found` that `expected` lacks or shapes differently, or one it misses."""
    for name, tensor in found.items():
        if name not in expected:
            return f"tensor {name!r} {tuple(tensor.shape)} is not in {what}"
        if tuple(tensor.shape) != tuple(expected[name].shape):
            return f"tensor {name!r} is {tuple(tensor.shape)}, {what} has {tuple(expected[name].shape)}"
    missing = [n for n in expected if n not in found]
    return f"tensor {missing[0]!r} {tuple(expected[missing[0]].shape)} of {what} is missing" if missing else None


def timm_model(model_name: str, space: SearchSpace) -> torch.nn.Module:
    """timm's `model_name` at the space's largest network, built offline on the meta device (shapes only)."""
    import timm

    from nasforge.families.vit import ViTFile

    cfg = space.config
    if not isinstance(cfg, ViTFile):
        raise ConfigError(f"space {space.name!r} is of family {space.family.name!r}; a timm ViT needs a vit space")
    kwargs = {"img_size": max(space.resolutions), "patch_size": cfg.patch, "num_classes": space.num_classes,
              "embed_dim": max(cfg.embed_dims), "depth": max(cfg.depths), "num_heads": max(cfg.heads),
              "mlp_ratio": max(cfg.mlp_ratios)}
    if max(cfg.heads) * cfg.head_dim != max(cfg.embed_dims):
        raise ConfigError(f"space {space.name!r}: timm's ViT has embed dim = heads x head dim; the largest network "
                          f"has {max(cfg.embed_dims)} != {max(cfg.heads)} x {cfg.head_dim}")
    try:
        with torch.device("meta"):
            return timm.create_model(model_name, pretrained=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - unknown names and refused kwargs are one line
        raise ConfigError(f"timm cannot build {model_name!r} as a ViT ({type(exc).__name__}: {exc})") from None


def import_timm_checkpoint(model_name: str, weights: str | Path, space_name: str, out: str | Path, *,
                           force: bool = False) -> TimmImport:
    """Write a run folder holding timm's `model_name` weights from the local file `weights` in space `space_name`."""
    from nasforge.supernet import build_supernet
    from nasforge.supernet.vit import timm_to_supernet
    from nasforge.train.config import TrainConfig, apply_overrides

    weights, out = Path(weights), Path(out)
    check_import_destination(out, force)
    space = load_space(space_name)
    model = timm_model(model_name, space)
    state = read_weights(weights)
    problem = first_mismatch(state, model.state_dict(), f"timm's {model_name} for space {space.name}")
    with torch.device("meta"):
        supernet = build_supernet(space).state_dict()
    mapped = timm_to_supernet(state)
    problem = problem or first_mismatch(mapped, supernet, f"the {space.name} supernet")
    if problem:
        raise CheckpointError(f"{weights}: {problem}")
    cfg = apply_overrides(TrainConfig(), {"space": space_name, "data.dataset": "imagefolder", "data.loader": "stream",
                                          "data.normalization": "imagenet"})
    sha = write_imported_run(out, space, cfg, mapped, source=weights, dataset="imagefolder", record={
        "project": "timm", "net": model_name, "space": space.name, "space_fingerprint": space.fingerprint,
        "tensors": len(state),
    })
    return TimmImport(out, model_name, space, sha, len(state))


__all__ = ["TimmImport", "first_mismatch", "import_timm_checkpoint", "read_weights", "timm_model"]
