"""Output locations of the photo-z commands: checked before any work, written atomically.

A check leaves nothing behind (no folder is created, the write probe is removed); the folders are
created only when the outputs are written, each through a temporary file and a rename.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from lumos_ops.exceptions import InputFileError

__all__ = ["check_output_file", "check_output_folder"]


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (the current folder at worst)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_folder(folder: Path, what: str, target: Path) -> None:
    """``folder`` is (or can be created as) a folder in which files can be written.

    Raises
    ------
    InputFileError
        The folder, or the closest existing ancestor, is a file, or nothing can be written there.
    """
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise InputFileError(f"{what} {target}: {existing} is a file, not a folder; choose another location")
    try:
        handle, probe = tempfile.mkstemp(prefix=".lumos-write-probe.", dir=existing)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputFileError(f"{what} {target}: cannot write in {existing} ({reason}); choose a writable location") from exc
    os.close(handle)
    Path(probe).unlink(missing_ok=True)


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """Check that ``path`` can be written as a file: not a folder, in a writable (or creatable) folder.

    ``what`` names the output in messages (e.g. ``"--out"``). Returns the path.
    """
    target = Path(path)
    if target.is_dir():
        raise InputFileError(f"{what} {target}: is a folder; give a file name")
    _check_folder(target.parent, what, target)
    return target


def check_output_folder(path: str | os.PathLike[str], what: str, names: Iterable[str] = ()) -> Path:
    """Check that ``path`` is, or can be created as, a writable folder in which none of ``names`` is a folder.

    ``what`` names the output in messages (e.g. ``"--report"``). Returns the path.
    """
    folder = Path(path)
    _check_folder(folder, what, folder)
    for name in names:
        if (folder / name).is_dir():
            raise InputFileError(f"{what} {folder}: {folder / name} is a folder; remove it or choose another folder")
    return folder
