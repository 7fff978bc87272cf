"""Start a supernet from another one's weights: a nasforge run folder or a Once-for-All checkpoint.

Every tensor is kept except the classifier's, which is rebuilt for the new class count (a new dataset's
classes are not ImageNet's, whatever their number; OFA issue 32). Which tensors are the classifier's is found,
not named: those whose shape depends on the class count. The training loop then fine-tunes every subnet
(`TrainConfig.init`; resuming a run ignores it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from nasforge.errors import CheckpointError, ConfigError
from nasforge.space import SearchSpace, load_space
from nasforge.supernet import ElasticSupernet, build_supernet


@dataclass(frozen=True)
class InitSource:
    """Weights to start from, and the space (at its own class count) they belong to."""

    path: Path
    kind: str  # "run" or "ofa"
    space: SearchSpace
    space_ref: str  # what a config names to build this space: a shipped name or a space YAML path
    state: Mapping[str, torch.Tensor]


def read_init(source: str | Path) -> InitSource:
    """A run folder (its final supernet or last checkpoint) or an OFA supernet checkpoint file."""
    path = Path(source)
    if path.is_dir():
        from nasforge.train.runs import load_run

        with torch.random.fork_rng(devices=[]):  # building the run's supernet must not shift the caller's stream
            run = load_run(path, device="cpu")
        state = {k: v.detach() for k, v in run.supernet.state_dict().items()}
        return InitSource(path, "run", run.space, _space_ref(run.config.space, run.space, path), state)
    if not path.is_file():
        raise ConfigError(f"--init {path}: no such run folder or checkpoint file")
    from nasforge.foreign.ofa import ofa_to_nasforge, read_checkpoint, recognise

    ckpt = read_checkpoint(path)
    space = recognise(ckpt).load_space()
    return InitSource(path, "ofa", space, space.name, ofa_to_nasforge(ckpt, space))


def _space_ref(named: str, space: SearchSpace, run_dir: Path) -> str:
    """The run's space by the name its config used when that still builds the same space, else its space.yaml."""
    try:
        same = load_space(named, width_mult=space.width_mult).with_options(num_classes=space.num_classes)
    except Exception:  # moved or edited YAML: the run's own copy is the truth
        same = None
    if same is not None and same.fingerprint == space.fingerprint:
        return named
    return str((run_dir / "space.yaml").resolve())


def classifier_keys(space: SearchSpace) -> set[str]:
    """The supernet tensors whose shape depends on the class count (two CPU builds: 0.1-0.5 s each)."""
    with torch.random.fork_rng(devices=[]):  # their init must not shift the run's random stream
        ours = build_supernet(space).state_dict()
        other = build_supernet(space.with_options(num_classes=space.num_classes + 1)).state_dict()
    return {k for k, v in ours.items() if v.shape != other[k].shape}


@torch.no_grad()
def init_supernet_(net: ElasticSupernet, source: InitSource) -> list[str]:
    """Copy every weight of `source` into `net` but the classifier's (left as `net` initialised it); returns
    the classifier tensors' names. The spaces must be the same network apart from the class count."""
    space = net.space
    theirs = source.space.with_options(num_classes=space.num_classes)
    if theirs.fingerprint != space.fingerprint:
        raise ConfigError(
            f"--init {source.path} holds a supernet of space '{source.space.name}' (width "
            f"{source.space.width_mult:g}), not of this run's '{space.name}' (width {space.width_mult:g}); "
            f"leave --space out to train the init's space"
        )
    head = classifier_keys(space)
    missing, unexpected = net.load_state_dict({k: v for k, v in source.state.items() if k not in head}, strict=False)
    if unexpected or set(missing) != head:
        wrong = sorted(set(unexpected) | (set(missing) ^ head))
        raise CheckpointError(f"--init {source.path}: weights do not fit space '{space.name}' ({wrong[0]})")
    return sorted(head)


__all__ = ["InitSource", "classifier_keys", "init_supernet_", "read_init"]
