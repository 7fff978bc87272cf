"""The timing-backend registry, apart from the backends themselves so targets can name them (torch-free)."""

from __future__ import annotations

from typing import Any

from nasforge.errors import LatencyError
from nasforge.registry import Registry

TIMING_BACKENDS: Registry[Any] = Registry(
    "timing backend", modules={"nasforge.latency.backends": ("ort", "torch-cuda")}, error=LatencyError)
