"""Read CSV / Parquet tables with one-line errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lumos_ops.exceptions import InputFileError

__all__ = ["read_table", "write_table", "TABLE_SUFFIXES", "OUTPUT_SUFFIXES"]

TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")
"""File extensions :func:`read_table` understands."""

OUTPUT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")
"""File extensions :func:`write_table` writes."""


def read_table(path: str | os.PathLike[str], *, what: str = "table") -> pd.DataFrame:
    """Read a CSV or Parquet file.

    Parameters
    ----------
    path : path-like
        ``.csv``, ``.parquet`` or ``.pq`` file.
    what : str, keyword-only
        What the table is (``"catalogue"``, ``"co-add table"``...), used in error messages.

    Raises
    ------
    InputFileError
        Missing, empty or unparsable file, or another extension.
    """
    path = os.fspath(path)
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{path}: no such {what} file")
    if p.stat().st_size == 0:
        raise InputFileError(f"{path}: the {what} file is empty")
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputFileError(f"{path}: unknown {what} format {suffix!r}; use .csv or .parquet")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputFileError(f"{path}: cannot parse the {what} ({exc})") from None


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a DataFrame to ``.csv`` or ``.parquet`` through a temporary file and an atomic rename.

    An existing file at ``path`` is replaced only once the new one is complete.

    Raises
    ------
    InputFileError
        Another extension, or the folder does not exist.
    """
    from lumos_ops.io.atomic import replace_atomically

    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise InputFileError(f"{path}: unknown output format {suffix or '(none)'!r}; use .csv or .parquet")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InputFileError(f"{path}: the output directory {directory} does not exist")
    if suffix == ".csv":
        replace_atomically(target, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        replace_atomically(target, lambda tmp: frame.to_parquet(tmp, index=False))
