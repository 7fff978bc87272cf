"""Handing freed host memory back to the OS: glibc's `malloc_trim`, a no-op where there is none.

glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB), so once a tensor of
a few MiB has been freed, later ones below the threshold come from the heap, and the heap keeps what
they free (holes, and a free top under twice the threshold) instead of returning it. Training reaches
a steady state; an evaluation of 256-image batches at 160 px left ~190 MB of such free heap on top of
it (`BENCHMARKS.md`, issue 22). `malloc_trim(0)` returns every free page at once. nasforge calls it at
coarse points (around and between the subnets an evaluation measures), never per step: a fixed low threshold
(`mallopt`) returns memory as it goes but costs ~14x the page faults of a CPU training step.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim` from the running process, or None (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS; True when glibc released some."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


__all__ = ["release_free_heap"]
