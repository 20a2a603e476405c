"""Files that are either complete or absent: written to a temporary file beside the target, then
renamed over it (``os.replace`` is atomic on one file system)."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["replace_atomically", "write_text_atomic"]


def replace_atomically(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (its folder is created), then rename it to ``path``.

    A reader sees the old file or the complete new one, never a partial one; on any failure the
    temporary file is removed and the old file, if any, is left as it was. The file gets the mode of
    the one it replaces, else what the process's umask gives a new file. Returns the path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:  # the mode a plain open() would give (mkstemp's is 0600), or the replaced file's
        os.fchmod(handle, stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask())
    finally:
        os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`replace_atomically`. Returns the path."""
    return replace_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
