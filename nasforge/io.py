"""Small file helpers: atomic writes (temp file, then rename) and reading arch arguments."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from nasforge.errors import ArchError, ConfigError, NasforgeError

_TEMP_SUFFIX = ".tmp"
_STALE_AFTER_S = 1.0  # a temp file younger than this may belong to a writer that has not locked it yet


def _file_mode(path: Path) -> int:
    """The mode a plain `open(path, "w")` would leave: the existing file's, else 0666 less the umask.

    The umask is applied by the kernel when the temp file is created (`os.open(..., 0o666)`), so it is
    never read or changed here (`os.umask` is process-wide and racy); only an existing file's mode is copied.
    """
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return -1


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, exclusive temp file `.NAME.XXXXXXXX.tmp` next to `path`, created with mode 0666 & ~umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{_TEMP_SUFFIX}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temp file name for {path.name}")


def _lock_nowait(fd: int) -> bool:
    """Exclusive advisory lock without waiting; True where locks are unsupported (nothing to honour)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without flock: treat as unlocked
        return True
    return True


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file.

    The file gets the mode a normal `open()` would give it (0666 & ~umask, or the replaced file's mode),
    not `mkstemp`'s 0600. The writer holds an advisory lock on its temp file until the rename, so
    `remove_stale_temps` can tell a dead writer's leftover from a live writer's file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(path)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            _lock_nowait(fh.fileno())  # a fresh, exclusive file: nobody else can hold its lock
            if mode >= 0:
                with contextlib.suppress(OSError):  # a file system without modes (FAT) keeps its own
                    os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            os.replace(tmp, path)  # still locked: a cleaner never removes a temp file being renamed
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | Path, busy: NasforgeError) -> Iterator[None]:
    """Hold an exclusive `flock` on the lock file `path` for the block; raise `busy` at once if another
    process (or another open of it in this one) holds it. The file is removed on exit, while still locked,
    and a lock taken on a file its holder removed meanwhile is dropped and taken again on the new one.
    """
    path = Path(path)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise type(busy)(f"{path}: cannot create the lock file ({exc.strerror})") from None
        if not _lock_nowait(fd):
            os.close(fd)
            raise busy
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # its holder removed it between our open and our lock: lock the file there now
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def remove_stale_temps(directory: str | Path, name_glob: str) -> list[Path]:
    """Remove temp files that a killed `atomic_write_bytes` of `directory/NAME` left behind.

    `name_glob` matches NAME (e.g. "last.pt" or "phase-*.pt"); only `.NAME.*.tmp` in `directory`
    itself is considered, and only files no live writer holds locked (and older than a second, so a
    writer between creating and locking its file is spared). Returns the files removed; a file that
    cannot be removed (a read-only folder) is left alone.
    """
    directory = Path(directory)
    removed: list[Path] = []
    for tmp in directory.glob(f".{name_glob}.*{_TEMP_SUFFIX}"):
        try:
            if not tmp.is_file() or tmp.is_symlink() or time.time() - tmp.stat().st_mtime < _STALE_AFTER_S:
                continue
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _lock_nowait(fd):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN or infinite float made None: standard JSON (`allow_nan=False`) that any reader takes."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_writable_parent(path: Path, flag: str) -> None:
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise ConfigError(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {ancestor} is not writable")


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """Fail before any work if `path` cannot become a file: it is a folder, or its folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path} is not writable")
    _check_writable_parent(path, flag)
    return path


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Fail before any work if `path` cannot become (or be written as) a folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file; give a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {path} is not writable")
        return path
    _check_writable_parent(path, flag)
    return path


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
        except RecursionError:
            raise ArchError("--arch is not an arch: JSON nested too deeply") from None
    path_text, _, index_text = text.partition("#")
    path = Path(path_text)
    if not path.is_file():
        raise ArchError(f"--arch {text!r} is neither a JSON object nor an existing file")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ArchError(f"--arch {path}: not a text file (expected JSON or JSON lines)") from None
    except OSError as exc:
        raise ArchError(f"--arch {path}: cannot read ({exc.strerror})") from None
    if index_text:
        try:
            index = int(index_text)
        except ValueError:
            raise ArchError(f"--arch {text!r}: the part after '#' must be an integer index") from None
        entries = arch_entries(content, path)
        if not -len(entries) <= index < len(entries):
            raise ArchError(f"--arch {text!r}: {path} has {len(entries)} entries (valid indices 0..{len(entries) - 1})")
        return entries[index]
    try:
        return json.loads(content)
    except json.JSONDecodeError:
        entries = arch_entries(content, path)
        if len(entries) == 1:
            return entries[0]
        raise ArchError(f"{path}: holds {len(entries)} archs; pick one with {path}#i") from None


def arch_entries(content: str, path: Path) -> list[Any]:
    """The arch objects a file holds: a JSON list, a `pareto.json` (`{front: [...]}`), one object, or JSON lines."""
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
