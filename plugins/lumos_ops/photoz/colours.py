"""Colour-histogram widths (paper §6.1.2): narrower NB colour distributions mean better photometry.

For two bands the colour of each source is a magnitude difference ``m_a - m_b = -2.5 log10(f_a / f_b)``
(sources with a non-positive flux are dropped) or a flux ratio ``f_a / f_b``. The widths are
``sigma68 = (q84 - q16) / 2`` and ``sigma95 = (q97.5 - q2.5) / 2``; when true fluxes are known the true
colour is subtracted first, so only the photometric scatter remains.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError

__all__ = ["ColourKind", "ColourWidth", "colour", "colour_width", "compare_colour_widths"]


class ColourKind(str, enum.Enum):
    """How a colour is formed from two fluxes."""

    MAG = "mag"
    """``-2.5 log10(f_a / f_b)`` (AB mag); needs both fluxes > 0."""
    RATIO = "ratio"
    """``f_a / f_b``; needs ``f_b > 0``."""


@dataclasses.dataclass(frozen=True)
class ColourWidth:
    """Width of one colour distribution.

    Attributes
    ----------
    n : int
        Sources with a defined colour.
    n_dropped : int
        Sources without one (missing or non-positive flux).
    median, sigma68, sigma95 : float
        Median, ``(q84 - q16) / 2`` and ``(q97.5 - q2.5) / 2`` (mag or ratio units).
    """

    n: int
    n_dropped: int
    median: float
    sigma68: float
    sigma95: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict for JSON reports."""
        return dataclasses.asdict(self)


def colour(flux_a: np.ndarray, flux_b: np.ndarray, *, kind: ColourKind | str = ColourKind.MAG) -> np.ndarray:
    """Colour of every source, shape (n,); NaN where undefined.

    Parameters
    ----------
    flux_a, flux_b : array_like, shape (n,)
        Fluxes of the two bands in the same unit (nJy or e-/s on a common zero point).
    kind : ColourKind or {"mag", "ratio"}, keyword-only
    """
    kind = ColourKind(kind)
    a = np.asarray(flux_a, dtype=np.float64)
    b = np.asarray(flux_b, dtype=np.float64)
    if a.shape != b.shape:
        raise LumosValueError(f"flux_a and flux_b must have the same shape, got {a.shape} and {b.shape}")
    if kind is ColourKind.MAG:
        ok = (a > 0) & (b > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ok, -2.5 * np.log10(np.where(ok, a / np.where(ok, b, 1.0), 1.0)), np.nan)
    ok = np.isfinite(a) & (b > 0)
    return np.where(ok, a / np.where(ok, b, 1.0), np.nan)


def colour_width(values: np.ndarray, *, truth: np.ndarray | None = None) -> ColourWidth:
    """sigma68 and sigma95 of a colour distribution.

    Parameters
    ----------
    values : array_like, shape (n,)
        Colours (NaN = undefined).
    truth : array_like, shape (n,), optional, keyword-only
        True colours, subtracted before measuring the widths.
    """
    c = np.asarray(values, dtype=np.float64)
    if truth is not None:
        t = np.asarray(truth, dtype=np.float64)
        if t.shape != c.shape:
            raise LumosValueError(f"truth must have the shape of the colours {c.shape}, got {t.shape}")
        c = c - t
    ok = np.isfinite(c)
    d = c[ok]
    if d.size == 0:
        return ColourWidth(n=0, n_dropped=int(c.size), median=float("nan"), sigma68=float("nan"), sigma95=float("nan"))
    q025, q16, q50, q84, q975 = np.percentile(d, [2.5, 16.0, 50.0, 84.0, 97.5])
    return ColourWidth(
        n=int(d.size),
        n_dropped=int(c.size - d.size),
        median=float(q50),
        sigma68=float(0.5 * (q84 - q16)),
        sigma95=float(0.5 * (q975 - q025)),
    )


def compare_colour_widths(
    photometries: Mapping[str, pd.DataFrame],
    band_a: str,
    band_b: str,
    *,
    truth: pd.DataFrame | None = None,
    kind: ColourKind | str = ColourKind.MAG,
    common: bool = True,
) -> pd.DataFrame:
    """Colour widths of several photometries of the same sources.

    Parameters
    ----------
    photometries : mapping of str to DataFrame
        Name -> wide table indexed by ``ref_id`` with one flux column per band (column = band
        name, e.g. ``"NB785"``), as returned by :func:`lumos_ops.photoz.tables.pivot_coadds`.
    band_a, band_b : str
        Column names of the two bands.
    truth : DataFrame, optional, keyword-only
        Same layout with true fluxes; its colours are subtracted (sources absent from it dropped).
    kind : ColourKind or {"mag", "ratio"}, keyword-only
    common : bool, keyword-only
        Measure every photometry on the sources where all of them have a colour (default True),
        so the widths compare like with like.

    Returns
    -------
    pandas.DataFrame
        One row per photometry: ``name`` and the fields of :class:`ColourWidth`.
    """
    if not photometries:
        raise LumosValueError("photometries must name at least one table")
    colours: dict[str, pd.Series] = {}
    for name, table in photometries.items():
        for band in (band_a, band_b):
            if band not in table.columns:
                raise LumosValueError(f"photometry {name!r} has no column {band!r} (columns: {list(table.columns)[:8]}...)")
        colours[name] = pd.Series(colour(table[band_a], table[band_b], kind=kind), index=table.index)
    true_colour = None
    if truth is not None:
        for band in (band_a, band_b):
            if band not in truth.columns:
                raise LumosValueError(f"truth table has no column {band!r}")
        true_colour = pd.Series(colour(truth[band_a], truth[band_b], kind=kind), index=truth.index)
    frame = pd.DataFrame(colours)
    if true_colour is not None:
        frame = frame.join(true_colour.rename("__truth__"), how="inner")
    if common:
        frame = frame[frame.notna().all(axis=1)]
    rows = []
    for name in photometries:
        t = frame["__truth__"].to_numpy() if true_colour is not None else None
        width = colour_width(frame[name].to_numpy(), truth=t)
        rows.append({"name": name, **width.to_dict()})
    return pd.DataFrame(rows)
