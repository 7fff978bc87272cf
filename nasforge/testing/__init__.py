"""Test helpers shipped with the package: tiny spaces that run in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

from nasforge.space import SearchSpace, load_space

TINY_SPACES_DIR = Path(__file__).resolve().parent / "spaces"


def tiny_space(name: str = "tiny-mbv3") -> SearchSpace:
    """`tiny-mbv3` (MobileNetV3 family) or `tiny-resnet` (ResNet family)."""
    return load_space(TINY_SPACES_DIR / f"{name}.yaml")
