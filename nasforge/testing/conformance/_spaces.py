"""The example spaces the suites run on: every shipped space, every test space, and every registered family's
own example (`Family.example_space`), so a new family is tested without shipping a YAML."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from nasforge.families import FAMILIES
from nasforge.space import SPACES_DIR, SearchSpace, load_space
from nasforge.testing import TINY_SPACES_DIR

SMALL_SUBNETS = 20_000  # spaces this small are checked exhaustively where a check enumerates
FAMILY_PREFIX = "family:"


def space_files() -> list[Path]:
    return sorted(SPACES_DIR.glob("*.yaml")) + sorted(TINY_SPACES_DIR.glob("*.yaml"))


@cache
def example_space(path: str) -> SearchSpace:
    if path.startswith(FAMILY_PREFIX):
        name = path[len(FAMILY_PREFIX):]
        return SearchSpace.from_dict(FAMILIES.get(name).example_space, source=f"{name}.example_space")
    return load_space(path)


def example_spaces() -> list[str]:
    """Paths of the shipped and test spaces, then `family:<name>` for each family that declares an example."""
    families = [f"{FAMILY_PREFIX}{e.name}" for e in FAMILIES.entries() if e.obj.example_space is not None]
    return [str(p) for p in space_files()] + families


def small_spaces() -> list[str]:
    """Spaces whose supernet builds and runs in well under a second on a CPU (tests and CPU demos)."""
    return [p for p in example_spaces() if example_space(p).num_subnets(include_resolution=True) <= SMALL_SUBNETS]


def space_id(path: str) -> str:
    return path.replace(":", "-") if path.startswith(FAMILY_PREFIX) else Path(path).stem
