"""A standalone torch checkpoint of one subnet: weights + arch + the space's YAML, no supernet needed.

Loaded with `torch.load(weights_only=True)`: the file holds tensors and plain JSON-able values only.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from nasforge.arch import ArchConfig
from nasforge.errors import CheckpointError
from nasforge.io import atomic_write_bytes
from nasforge.space import SearchSpace
from nasforge.supernet.static import StaticSubnet

FORMAT = "nasforge-subnet-v1"


def save_standalone(
    path: str | Path, subnet: StaticSubnet, space: SearchSpace, extra: dict[str, Any] | None = None
) -> None:
    if subnet.arch is None:
        raise CheckpointError("a standalone checkpoint needs the subnet's arch")
    payload = {
        "format": FORMAT,
        "arch": subnet.arch.to_json(),
        "space": json.dumps(
            {
                "raw": space.definition,
                "source": space.source,
                "width_mult": space.width_mult,
                "num_classes": space.num_classes,
            }
        ),
        "space_fingerprint": space.fingerprint,
        "extra": json.dumps(extra or {}),
        "state_dict": {k: v.detach().cpu() for k, v in subnet.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_standalone(path: str | Path) -> tuple[StaticSubnet, SearchSpace, dict[str, Any]]:
    """Rebuild the subnet from the checkpoint alone; returns (subnet in eval mode, space, extra)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a nasforge standalone subnet (expected format {FORMAT})")
    info = json.loads(payload["space"])
    space = SearchSpace.from_dict(info["raw"], source=info["source"], width_mult=info["width_mult"])
    if info["num_classes"] != space.num_classes:
        space = space.with_options(num_classes=info["num_classes"])
    if space.fingerprint != payload["space_fingerprint"]:
        raise CheckpointError(f"{path}: space fingerprint mismatch (file altered?)")
    arch = space.validate(ArchConfig.from_json(payload["arch"]))
    subnet = StaticSubnet(space.layers(arch), arch, bn_eps=space.bn_eps)
    try:
        subnet.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the arch ({str(exc).splitlines()[0]})") from None
    return subnet.eval(), space, json.loads(payload["extra"])
