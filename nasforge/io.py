"""Small file helpers: atomic writes (temp file, then rename) and reading arch arguments."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from nasforge.errors import ArchError, NasforgeError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_yaml(path: str | Path, error: type[NasforgeError], what: str) -> Any:
    """`yaml.safe_load` of a user file; a missing file or bad YAML raises `error` with one line naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path}: not valid YAML{where}") from None


def read_arch_argument(text: str) -> Any:
    """The JSON object an `--arch` argument names: a JSON string, a JSON file, or `FILE#i`.

    `FILE#i` picks entry i of a JSON list (e.g. a `pareto.json`) or line i of a JSON-lines file.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"--arch is not valid JSON: {exc.msg} at position {exc.pos}") from None
    path_text, _, index_text = text.partition("#")
    path = Path(path_text)
    if not path.is_file():
        raise ArchError(f"--arch {text!r} is neither a JSON object nor an existing file")
    content = path.read_text()
    if index_text:
        try:
            index = int(index_text)
        except ValueError:
            raise ArchError(f"--arch {text!r}: the part after '#' must be an integer index") from None
        entries = _entries(content, path)
        if not -len(entries) <= index < len(entries):
            raise ArchError(f"--arch {text!r}: {path} has {len(entries)} entries (valid indices 0..{len(entries) - 1})")
        return entries[index]
    try:
        return json.loads(content)
    except json.JSONDecodeError:
        entries = _entries(content, path)
        if len(entries) == 1:
            return entries[0]
        raise ArchError(f"{path}: holds {len(entries)} archs; pick one with {path}#i") from None


def _entries(content: str, path: Path) -> list[Any]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        try:
            return [json.loads(line) for line in content.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ArchError(f"{path}: neither JSON nor JSON lines ({exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("front"), list):
        return data["front"]
    if isinstance(data, list):
        return data
    return [data]
