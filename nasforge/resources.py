"""Where the shipped data lives: search spaces, configs and measured tables.

In a source checkout (or an editable install) they are the repository's top-level folders, which is
where users edit and add them; a built wheel carries copies under `nasforge/_data/` (see pyproject's
hatch `force-include`), so `pip install nasforge` finds the same files without the repository.
"""

from __future__ import annotations

from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
PACKAGED_DIR = Path(__file__).resolve().parent / "_data"


def shipped_dir(*parts: str) -> Path:
    """The shipped folder `parts` (e.g. "configs", "targets"): the wheel's copy, else the checkout's."""
    packaged = PACKAGED_DIR.joinpath(*parts)
    # The wheel's copy first: an installed package's parent is site-packages, whose "configs/" may be anyone's.
    return packaged if packaged.is_dir() else REPO_DIR.joinpath(*parts)
