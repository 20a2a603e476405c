"""Radial Fourier-transform tables on a uniform grid in ``ln k`` with a one-parameter family axis.

A circular profile's 2-D Fourier transform depends on ``|k|`` only. The renderer keeps, for each
family (Sérsic index ``n``, Moffat ``beta``), a table of the unit-flux transform on a fine grid of
the family parameter (rows) and of ``ln(k * scale)`` (columns). Per profile it interpolates one row
(:meth:`RadialTable.rows`), then per Fourier pixel it interpolates linearly in ``ln k``.

Building a table takes a few tenths of a CPU second; :func:`stored_table` keeps each one in a file
(``$LUMOS_TABLE_CACHE_DIR``, default ``~/.cache/lumos-ops/render-tables``) named after a hash of
the code that builds it and of the numpy and scipy versions, so later processes read it instead
(a file that cannot be read or written is rebuilt or skipped; an empty variable turns the files off).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["LN_K_MIN", "LN_K_MAX", "LN_K_STEP", "RadialTable", "ln_k_grid", "stored_table"]

LN_K_MIN: float = float(np.log(1e-4))
"""Smallest tabulated ``ln(k * scale)``; below it the transform is interpolated towards 1 at k = 0."""

LN_K_MAX: float = float(np.log(1e4))
"""Largest tabulated ``ln(k * scale)``; above it the last value is used (the PSF has killed it)."""

LN_K_STEP: float = 0.02
"""Column spacing of every table in ``ln k``."""


def ln_k_grid() -> np.ndarray:
    """Column abscissae ``ln(k * scale)`` shared by every table, shape (L,), float64."""
    n_cols = int(round((LN_K_MAX - LN_K_MIN) / LN_K_STEP)) + 1
    return LN_K_MIN + LN_K_STEP * np.arange(n_cols)


_ROWS_BLOCK = 64
"""Profiles whose table rows are interpolated together (:meth:`RadialTable.rows`)."""


@dataclasses.dataclass(frozen=True)
class RadialTable:
    """Unit-flux radial Fourier transforms of a one-parameter profile family.

    Attributes
    ----------
    param : ndarray, shape (P,), float64
        Uniformly spaced family parameter (Sérsic ``n`` or Moffat ``beta``) of the rows.
    values : ndarray, shape (P, L), float64
        Transform at ``ln(k * scale) = ln_k_grid()``; column 0 holds the k = 0 value, exactly 1.
    """

    param: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        if self.values.shape != (self.param.size, ln_k_grid().size):
            raise ValueError(f"table values have shape {self.values.shape}, expected ({self.param.size}, L)")

    def rows(self, p: np.ndarray) -> np.ndarray:
        """Rows interpolated (cubic Catmull-Rom in the family parameter) at ``p``.

        Parameters
        ----------
        p : ndarray, shape (B,)
            Family parameter of each profile, inside ``[param[0], param[-1]]``.

        Returns
        -------
        ndarray, shape (B, L), float64
        """
        p = np.asarray(p, dtype=np.float64)
        step = self.param[1] - self.param[0]
        u = (p - self.param[0]) / step
        i = np.clip(np.floor(u).astype(np.int64), 0, self.param.size - 2)
        t = (u - i)[:, None]
        out = np.empty((p.size, self.values.shape[1]))
        for lo in range(0, p.size, _ROWS_BLOCK):  # a block's work arrays stay in the cache
            block = slice(lo, lo + _ROWS_BLOCK)
            out[block] = self._catmull_rom(i[block], t[block])
        return out

    def _catmull_rom(self, i: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Rows between ``param[i]`` and ``param[i + 1]`` at the fraction ``t`` (B, 1) of the step, shape (B, L)."""
        last = self.param.size - 1
        v0 = self.values[np.clip(i - 1, 0, last)]
        v1 = self.values[i]
        v2 = self.values[i + 1]
        v3 = self.values[np.clip(i + 2, 0, last)]
        # v1 + 0.5 t (v2 - v0 + t (2 v0 - 5 v1 + 4 v2 - v3 + t (3 (v1 - v2) + v3 - v0))) with every
        # operation of that expression as Python evaluates it (the same numbers), in three arrays
        cubic = np.subtract(v1, v2)
        cubic *= 3.0
        cubic += v3
        cubic -= v0
        cubic *= t
        quadratic = np.multiply(v0, 2.0)
        work = np.multiply(v1, 5.0)
        quadratic -= work
        quadratic += np.multiply(v2, 4.0, out=work)
        quadratic -= v3
        quadratic += cubic
        quadratic *= t
        linear = np.subtract(v2, v0, out=work)
        linear += quadratic
        linear *= 0.5 * t
        linear += v1
        return linear


def _table_directory() -> Path | None:
    value = os.environ.get("LUMOS_TABLE_CACHE_DIR")
    if value is None:
        return Path.home() / ".cache" / "lumos-ops" / "render-tables"
    return Path(value) if value else None


def stored_table(name: str, build: Callable[[], RadialTable], sources: Sequence[str]) -> RadialTable:
    """``build()``, read from or written to the table directory (module docstring).

    Parameters
    ----------
    name : str
        File name prefix (``"sersic"``, ``"moffat"``).
    build : callable
        Builds the table.
    sources : sequence of str
        Files of the code that ``build`` runs: their bytes are part of the file's hash.
    """
    import scipy

    directory = _table_directory()
    if directory is None:
        return build()
    digest = hashlib.sha256(f"{np.__version__} {scipy.__version__}".encode())
    for source in (__file__, *sources):
        digest.update(Path(source).read_bytes())
    path = directory / f"{name}-{digest.hexdigest()[:16]}.npz"
    try:
        with np.load(path) as stored:
            return RadialTable(param=stored["param"], values=stored["values"])
    except (OSError, KeyError, ValueError):
        pass
    table = build()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".npz", dir=directory)
        with os.fdopen(handle, "wb") as out:
            np.savez(out, param=table.param, values=table.values)
        os.replace(tmp, path)
    except OSError:
        pass
    return table
