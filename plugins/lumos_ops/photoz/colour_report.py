"""Colour-histogram widths of co-add tables (paper §6.1.2), e.g. LUMOS against aperture photometry.

Each co-add table (``ref_id, band, flux, flux_err`` in nJy, see :mod:`lumos_ops.photoz.tables`) is one
photometry; a table with a ``method`` column holding several methods contributes one photometry per
method (``NAME:METHOD``). With a catalogue holding ``flux_nJy_<band>`` (the simulator's truth) the
true colour is subtracted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd

from lumos_ops.exceptions import CatalogError
from lumos_ops.io.tables import read_table
from lumos_ops.photoz.colours import ColourKind, compare_colour_widths
from lumos_ops.photoz.tables import pivot_coadds

__all__ = ["colour_widths_from_files"]


def colour_widths_from_files(
    tables: Mapping[str, str | os.PathLike[str]],
    band_a: str,
    band_b: str,
    *,
    catalog: str | os.PathLike[str] | None = None,
    kind: ColourKind | str = ColourKind.MAG,
    common: bool = True,
) -> pd.DataFrame:
    """sigma68 / sigma95 of the ``band_a - band_b`` colour for every photometry.

    Parameters
    ----------
    tables : mapping of str to path
        Name -> co-add table (CSV or Parquet).
    band_a, band_b : str
        Narrow bands, e.g. ``"NB785"``, ``"NB795"``.
    catalog : path, optional, keyword-only
        Table with ``ref_id`` and ``flux_nJy_<band>`` true fluxes; its colour is subtracted.
    kind : ColourKind or {"mag", "ratio"}, keyword-only
    common : bool, keyword-only
        Use only sources with a colour in every photometry (default True).

    Returns
    -------
    pandas.DataFrame
        One row per photometry (see :func:`~lumos_ops.photoz.colours.compare_colour_widths`).
    """
    photometries: dict[str, pd.DataFrame] = {}
    for name, path in tables.items():
        source = os.fspath(path)
        table = read_table(path, what="co-add table")
        methods = sorted(table["method"].dropna().astype(str).unique()) if "method" in table.columns else [None]
        for method in methods:
            label = name if method is None or len(methods) == 1 else f"{name}:{method}"
            photometries[label] = pivot_coadds(table, source=source, method=method).flux_frame()
    truth = None
    if catalog is not None:
        source = os.fspath(catalog)
        cat = read_table(catalog, what="catalogue")
        columns = ["ref_id", f"flux_nJy_{band_a}", f"flux_nJy_{band_b}"]
        missing = [c for c in columns if c not in cat.columns]
        if missing:
            raise CatalogError(f"{source}: missing column(s) {missing} needed for the true colour")
        truth = cat[columns].set_index("ref_id").rename(columns={columns[1]: band_a, columns[2]: band_b})
    for label, frame in photometries.items():
        for band in (band_a, band_b):
            if band not in frame.columns:
                raise CatalogError(f"photometry {label!r} has no band {band} (bands: {list(frame.columns)})")
    return compare_colour_widths(photometries, band_a, band_b, truth=truth, kind=kind, common=common)
