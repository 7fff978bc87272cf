"""The one writer of a table's metadata: where and how its timings were measured.

`nasforge profile` (`profiler.Timer.metadata`) and the bundle's runner on a board both call
`table_metadata`, so a table says the same things in the same words whichever way it was built.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from .session import MAX_UNCERTAINTY, RETRIES, protocol

LUT_FORMAT = "nasforge-lut/1"


def utc_now() -> str:
    """A table's time stamp: UTC, to the second, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def table_metadata(
    *,
    target: str,
    space: str,
    space_fingerprint: str,
    batch: int,
    device: str,
    machine: dict[str, Any],
    provider: str,
    threads: int,
    warmup: int,
    repeats: int,
    cores: list[int] | None = None,
    nice: int | None = None,
    backend: str = "ort",
    max_uncertainty: float = MAX_UNCERTAINTY,
    retries: int = RETRIES,
    date: str | None = None,
    made_by: str | None = None,
) -> dict[str, Any]:
    """A table's metadata before any timing: the target, the machine (with the provider and threads that ran),
    the process's pinning, the protocol and the space. `date` and `made_by` are written only when given."""
    import onnxruntime as ort

    meta: dict[str, Any] = {
        "target": target,
        "device": device,
        "machine": {**machine, "provider": provider, "threads": threads},
        "ort_version": ort.__version__,
        "backend": backend,
        "provider": provider,
        "threads": threads,
        "cores": cores,
        "nice": nice,
        "batch": batch,
    }
    if date is not None:
        meta["date"] = date
    meta["protocol"] = protocol(threads, warmup, repeats, max_uncertainty=max_uncertainty, retries=retries)
    meta.update(space=space, space_fingerprint=space_fingerprint)
    if made_by is not None:
        meta["made_by"] = made_by
    return meta
