"""The example spaces the suites run on: every shipped space and every test space, grouped by family."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from nasforge.space import SPACES_DIR, SearchSpace, load_space
from nasforge.testing import TINY_SPACES_DIR

SMALL_SUBNETS = 20_000  # spaces this small are checked exhaustively where a check enumerates


def space_files() -> list[Path]:
    return sorted(SPACES_DIR.glob("*.yaml")) + sorted(TINY_SPACES_DIR.glob("*.yaml"))


@cache
def example_space(path: str) -> SearchSpace:
    return load_space(path)


def example_spaces() -> list[str]:
    return [str(p) for p in space_files()]


def small_spaces() -> list[str]:
    """Spaces whose supernet builds and runs in well under a second on a CPU (tests and CPU demos)."""
    return [p for p in example_spaces() if example_space(p).num_subnets(include_resolution=True) <= SMALL_SUBNETS]


def space_id(path: str) -> str:
    return Path(path).stem
