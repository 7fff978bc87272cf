"""Training checkpoints: atomic writes, a previous copy kept, corrupt files skipped on load.

`checkpoints/last.pt` is written as temp-file-then-rename (nasforge.io), after the old one has
been renamed to `prev.pt`; a write killed midway leaves only a stray temp file (removed by the next
save or load), and a `last.pt` that fails to load (truncated, garbage) is skipped in favour of
`prev.pt`; one from another space is an error (an older copy would be just as foreign).
Everything stored is a tensor or plain Python value, so `torch.load(weights_only=True)` works.
A multi-process run also stores every rank's RNG state (`rng_per_rank`), so each rank resumes its own
dropout stream; `rng` stays rank 0's, so older readers and older checkpoints work as before.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import warnings
from pathlib import Path
from typing import Any

import torch

from nasforge.errors import CheckpointError, CheckpointMismatchError
from nasforge.io import atomic_write_bytes, remove_stale_temps

FORMAT = "nasforge-train-checkpoint/1"
SUPERNET_FORMAT = "nasforge-supernet/1"
OWN_NAMES = ("last.pt", "prev.pt", "phase-*.pt")  # globs of the files this module writes
REQUIRED = ("format", "model", "optimizer", "scheduler", "phase", "epoch", "step", "iteration", "rng",
            "space_fingerprint")


def rng_state() -> dict[str, Any]:
    """Global RNG states (torch CPU/CUDA for dropout; python) as weights_only-safe values."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _py_state_to_plain(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_for_rank(payload: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """The RNG state rank `rank` resumes with: its own (`rng_per_rank`, written by multi-process runs), else
    the checkpoint's `rng` (rank 0's; all that single-process runs and older checkpoints hold)."""
    per_rank = payload.get("rng_per_rank")
    if isinstance(per_rank, list) and len(per_rank) == world_size:
        return per_rank[rank]  # type: ignore[no-any-return]
    return payload["rng"]  # type: ignore[no-any-return]


def set_rng_state(state: dict[str, Any]) -> None:
    # RNG states must be CPU byte tensors, whatever map_location the checkpoint was loaded with
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_py_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _py_state_to_plain(state: tuple) -> list:  # type: ignore[type-arg]
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_state_from_plain(plain: list) -> tuple:  # type: ignore[type-arg]
    version, internal, gauss = plain
    return (int(version), tuple(int(v) for v in internal), gauss)


def to_bytes(obj: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(directory: Path, payload: dict[str, Any], name: str = "last.pt") -> Path:
    """Write `payload` as `directory/name`, keeping the previous `last.pt` as `prev.pt`."""
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(directory)
    data = to_bytes({"format": FORMAT, **payload})
    path = directory / name
    if name == "last.pt" and path.exists():
        os.replace(path, directory / "prev.pt")
    atomic_write_bytes(path, data)
    return path


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu", fingerprint: str | None = None
                    ) -> dict[str, Any]:
    """Load and check one checkpoint file; CheckpointError if unreadable, incomplete or from another space."""
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # truncated zip, garbage bytes, unpickling refusal
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or any(k not in obj for k in REQUIRED):
        raise CheckpointError(f"{path}: not a nasforge training checkpoint")
    if fingerprint is not None and obj["space_fingerprint"] != fingerprint:
        raise CheckpointMismatchError(f"{path}: checkpoint is for space {obj['space_fingerprint']}, not {fingerprint}")
    return obj


def _remove_stale_temps(directory: Path) -> None:
    """Drop partial `.last.pt.*.tmp` (etc.) files of writers killed mid-write; never another file."""
    for name_glob in OWN_NAMES:
        remove_stale_temps(directory, name_glob)


class NoCheckpointError(CheckpointError):
    """A folder holds no good checkpoint; `refused` says why each one found was refused (empty: none was saved),
    so a caller can say what fits its command (resume: start afresh; evaluate: train the run first)."""

    def __init__(self, message: str, refused: list[str]) -> None:
        super().__init__(message)
        self.refused = refused


def load_latest(directory: Path, map_location: str | torch.device = "cpu", fingerprint: str | None = None
                ) -> tuple[dict[str, Any], Path]:
    """The newest good checkpoint: `last.pt`, else `prev.pt` (a bad file is skipped with a warning)."""
    problems = []
    _remove_stale_temps(directory)
    for name in ("last.pt", "prev.pt"):
        path = directory / name
        if not path.exists():
            continue
        try:
            return read_checkpoint(path, map_location, fingerprint), path
        except CheckpointMismatchError:
            raise
        except CheckpointError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            problems.append(str(exc))
    detail = f" ({'; '.join(problems)})" if problems else " (none was saved)"
    raise NoCheckpointError(f"{directory}: no usable checkpoint to resume from{detail}", problems)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
