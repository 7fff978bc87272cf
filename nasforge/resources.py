"""Where data lives: the shipped search spaces, configs and tables, and the user's own folder.

Shipped data: in a source checkout (or an editable install) the repository's top-level folders, which is
where users edit and add them; a built wheel carries copies under `nasforge/_data/` (see pyproject's
hatch `force-include`), so `pip install nasforge` finds the same files without the repository.

User data (what nasforge measures on the user's machines, e.g. latency tables) never goes into either:
it lives under `$NASFORGE_HOME` (default `$XDG_CACHE_HOME/nasforge`, else `~/.cache/nasforge`).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
PACKAGED_DIR = Path(__file__).resolve().parent / "_data"


def shipped_dir(*parts: str) -> Path:
    """The shipped folder `parts` (e.g. "configs", "targets"): the wheel's copy, else the checkout's."""
    packaged = PACKAGED_DIR.joinpath(*parts)
    # The wheel's copy first: an installed package's parent is site-packages, whose "configs/" may be anyone's.
    return packaged if packaged.is_dir() else REPO_DIR.joinpath(*parts)


def user_dir(*parts: str) -> Path:
    """The user folder `parts` (e.g. "latency"), read from the environment on every call (not created)."""
    home = os.environ.get("NASFORGE_HOME")
    if home:
        base = Path(home).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME")
        base = (Path(cache).expanduser() if cache else Path.home() / ".cache") / "nasforge"
    return base.joinpath(*parts)
