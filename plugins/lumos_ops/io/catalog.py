"""Read and validate the external (detection) catalogue of ``shared/GUIDE.md``.

One row per target: ``ref_id`` (int), ``ra``/``dec`` (deg) and/or ``x``/``y`` (0-based pixel,
x = column), ``r50`` (arcsec, circularised half-light radius), ``sersic_n``, ``q`` (b/a in (0, 1]),
``pa`` (deg, counter-clockwise from +x), ``i_auto`` (AB mag), optional ``zspec``.

``r50`` is the half-light radius of the round profile before its area-preserving shear, ``sqrt(a b)``
of the half-light ellipse (GalSim's ``half_light_radius`` before ``.shear(q=...)``). Catalogues of
Sersic fits (GALFIT and most survey pipelines) give the semi-major axis ``a`` instead: such a
catalogue names its column ``r50_major`` (arcsec) and :func:`validate_catalog` adds
``r50 = r50_major * sqrt(q)``. A semi-major radius read as ``r50`` widens every model by
``1 / sqrt(q)`` and reads the galaxy high: +8 % to +13 % at q = 0.7 and +32 % to +46 % at
q = 0.3 for r50 0.4-0.8 arcsec under a 0.8 arcsec PSF (``reports/lumos/knots-catalogue/semi_major.py``).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from lumos_ops.exceptions import CatalogError
from lumos_ops.io.tables import read_table

log = logging.getLogger(__name__)

__all__ = ["read_catalog", "validate_catalog", "target_pixels", "SHAPE_COLUMNS", "MAJOR_AXIS_RADIUS", "POSITION_TOLERANCE_PX"]

SHAPE_COLUMNS: tuple[str, ...] = ("r50", "sersic_n", "q", "pa", "i_auto")
"""Columns every catalogue needs besides ``ref_id`` and a position (``r50_major`` may stand for ``r50``)."""

MAJOR_AXIS_RADIUS = "r50_major"
"""The semi-major-axis half-light radius (arcsec) a catalogue may give instead of ``r50``."""

_RANGES: dict[str, tuple[float, float]] = {
    "r50": (0.0, 60.0),
    "sersic_n": (0.05, 20.0),
    "q": (0.0, 1.0),
    "i_auto": (5.0, 35.0),
}

POSITION_TOLERANCE_PX = 1.0
"""Median disagreement (pixels) between a catalogue's x/y and its ra/dec beyond which
:func:`target_pixels` warns."""

_OPTIONAL_RANGES: tuple[tuple[str, tuple[float, float], str], ...] = (
    ("pa", (-360.0, 360.0), " deg"),
    ("ra", (-360.0, 360.0), " deg"),
    ("dec", (-90.0, 90.0), " deg"),
    ("zspec", (-1e6, 1e6), ""),
)
"""Ranges of the columns that may be empty where a row does not use them (``pa`` never is: it is a
shape column, checked finite first): a finite value outside them, or an infinite one, is an error.
``zspec`` keeps the sentinels catalogues use for "no spectrum" (-99, -999; the photo-z check takes
``zspec > -1`` only) and refuses what a database ``real`` cannot hold."""


def read_catalog(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV or Parquet catalogue and validate it with :func:`validate_catalog`.

    Raises
    ------
    InputFileError
        Missing, empty or unparsable file, or an unknown extension.
    CatalogError
        Missing columns, duplicated ``ref_id`` or invalid values; the message names the row.
    """
    path = os.fspath(path)
    table = read_table(path, what="catalogue")
    return validate_catalog(table, source=path)


def validate_catalog(table: pd.DataFrame, *, source: str = "<catalogue>") -> pd.DataFrame:
    """Check columns, types and ranges; return a copy with canonical dtypes.

    Row numbers in messages are 1-based data rows (row 1 is the first line after a CSV header).
    Without ``r50``, a ``r50_major`` column (semi-major axis, arcsec) is checked in its place and
    gives ``r50 = r50_major * sqrt(q)``.
    """
    table = table.copy()
    table.columns = [str(c).strip() for c in table.columns]
    radius = MAJOR_AXIS_RADIUS if "r50" not in table.columns and MAJOR_AXIS_RADIUS in table.columns else "r50"
    shape = [radius if c == "r50" else c for c in SHAPE_COLUMNS]
    missing = [c if c != "r50" else f"r50 (or {MAJOR_AXIS_RADIUS})" for c in ["ref_id", *shape]
               if c not in table.columns]
    has_sky = {"ra", "dec"} <= set(table.columns)
    has_pix = {"x", "y"} <= set(table.columns)
    if not (has_sky or has_pix):
        missing.append("ra/dec or x/y")
    if missing:
        raise CatalogError(f"{source}: missing column(s) {', '.join(missing)}; see the catalogue contract")
    numeric = shape + [c for c in ("ra", "dec", "x", "y", "zspec") if c in table.columns]
    for column in ["ref_id"] + numeric:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
            raise CatalogError(
                f"{source}: row {row}: column {column}={table[column].iloc[row - 1]!r} is not a number"
            )
        table[column] = values
    required = ["ref_id", *shape] + (["ra", "dec"] if has_sky and not has_pix else []) + (
        ["x", "y"] if has_pix and not has_sky else []
    )
    for column in required:
        bad = ~np.isfinite(table[column].to_numpy(dtype=float))
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise CatalogError(f"{source}: row {row}: column {column} is empty or not finite")
    if has_sky and has_pix:
        def finite(*columns: str) -> np.ndarray:
            return np.all([np.isfinite(table[c].to_numpy(dtype=float)) for c in columns], axis=0)

        placed = finite("ra", "dec") | finite("x", "y")
        if not placed.all():
            row = int(np.flatnonzero(~placed)[0]) + 1
            raise CatalogError(f"{source}: row {row}: no position: neither ra/dec nor x/y are both finite")
    if (table["ref_id"] % 1 != 0).any():
        row = int(np.flatnonzero((table["ref_id"] % 1 != 0).to_numpy())[0]) + 1
        raise CatalogError(f"{source}: row {row}: ref_id must be an integer")
    table["ref_id"] = table["ref_id"].astype(np.int64)
    duplicated = table["ref_id"].duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0]) + 1
        raise CatalogError(f"{source}: row {row}: duplicated ref_id {table['ref_id'].iloc[row - 1]}")
    for key, (low, high) in _RANGES.items():
        column = radius if key == "r50" else key
        values = table[column].to_numpy(dtype=float)
        bad = ~((values > low) & (values <= high)) if key in ("q", "r50") else ~((values >= low) & (values <= high))
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise CatalogError(
                f"{source}: row {row}: {column}={float(values[row - 1])!r} outside its valid range ({low}, {high}]"
            )
    for column, (low, high), unit in _OPTIONAL_RANGES:
        if column not in table.columns:
            continue
        values = table[column].to_numpy(dtype=float)
        bad = ~(np.isnan(values) | ((values >= low) & (values <= high)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise CatalogError(f"{source}: row {row}: {column}={float(values[row - 1])!r} outside its valid range "
                               f"[{low}, {high}]{unit}")
    if radius == MAJOR_AXIS_RADIUS:
        table["r50"] = table[MAJOR_AXIS_RADIUS] * np.sqrt(table["q"])
    return table.reset_index(drop=True)


def target_pixels(catalog: pd.DataFrame, wcs: object | None, *, source: str = "<exposure>") -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions (x = column, y = row) of every catalogue target on an image.

    Sky positions are used when the image has a celestial WCS and the catalogue has ``ra``/``dec``;
    a row whose ``ra``/``dec`` are empty then takes its ``x``/``y``. Without a WCS, the catalogue's
    ``x``/``y`` columns. Where a row gives both and they disagree by more than
    :data:`POSITION_TOLERANCE_PX` (median over the rows that give both), a warning names the
    exposure: ``x``/``y`` of another image, or a wrong WCS, would otherwise go unnoticed.

    Returns
    -------
    x, y : ndarray of float64, shape (n_targets,)
    """
    has_sky = {"ra", "dec"} <= set(catalog.columns)
    has_pix = {"x", "y"} <= set(catalog.columns)
    if wcs is not None and has_sky:
        x, y = wcs.world_to_pixel_values(catalog["ra"].to_numpy(float), catalog["dec"].to_numpy(float))  # type: ignore[attr-defined]
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if has_pix:
            px, py = catalog["x"].to_numpy(np.float64), catalog["y"].to_numpy(np.float64)
            unplaced = ~(np.isfinite(x) & np.isfinite(y))
            x, y = np.where(unplaced, px, x), np.where(unplaced, py, y)
            both = ~unplaced & np.isfinite(px) & np.isfinite(py)
            if both.any():
                offset = float(np.median(np.hypot(x[both] - px[both], y[both] - py[both])))
                if offset > POSITION_TOLERANCE_PX:
                    log.warning("%s: the catalogue's x/y and its ra/dec through the image's WCS differ by a median "
                                "%.1f px over %d targets; ra/dec are used (drop x/y, or ra/dec, if they belong to "
                                "another image)", source, offset, int(both.sum()))
        return x, y
    if has_pix:
        return catalog["x"].to_numpy(np.float64), catalog["y"].to_numpy(np.float64)
    raise CatalogError(
        f"{source}: the catalogue has only ra/dec but the image has no celestial WCS; "
        "add a WCS to the header or x/y columns to the catalogue"
    )
