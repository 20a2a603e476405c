"""Read and check the tables of the photo-z step.

* Co-add table (the pipeline's per-band co-adds): one row per source x band with ``ref_id``,
  ``band`` (``NB455`` ... ``NB845``), ``flux`` and ``flux_err`` in nJy (``flux_njy`` /
  ``flux_err_njy``, the database names, are accepted too), optionally ``method``. Pivoted to one row
  per source with NaN for missing bands.
* Redshift catalogue: ``ref_id``, ``zspec`` and optionally ``i_auto`` (e.g. the simulator's
  ``catalog.parquet``).
* Magnitude catalogue (the prior's magnitudes): ``ref_id`` and ``i_auto`` (AB mag; NaN = unknown).
* Photo-z table: ``ref_id`` and the columns of :data:`lumos_ops.photoz.fit.RESULT_COLUMNS`.

Row numbers in messages are 1-based data rows (row 1 is the first line after a CSV header).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lumos_ops.constants import NB_BANDS
from lumos_ops.exceptions import CatalogError
from lumos_ops.io.tables import read_table

__all__ = [
    "CoaddFluxes",
    "pivot_coadds",
    "read_coadds",
    "read_redshift_catalog",
    "read_magnitude_catalog",
    "read_photoz_table",
]

_ALIASES = {"flux_njy": "flux", "flux_err_njy": "flux_err"}


@dataclasses.dataclass(frozen=True)
class CoaddFluxes:
    """Co-added fluxes pivoted to one row per source.

    Attributes
    ----------
    ref_id : ndarray of int64, shape (n,)
        Sorted source ids.
    bands : tuple of str
        Bands present in the table, in :data:`~lumos_ops.constants.NB_BANDS` order.
    flux, flux_err : ndarray, shape (n, n_bands), float64
        nJy; NaN where a source lacks the band.
    """

    ref_id: np.ndarray
    bands: tuple[str, ...]
    flux: np.ndarray
    flux_err: np.ndarray

    def flux_frame(self) -> pd.DataFrame:
        """Fluxes as a DataFrame indexed by ``ref_id`` with one column per band."""
        return pd.DataFrame(self.flux, index=pd.Index(self.ref_id, name="ref_id"), columns=list(self.bands))


def _require(table: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CatalogError(f"{source}: missing column(s) {missing}; found {list(table.columns)}")


def _show(value: object) -> str:
    """repr of a cell without numpy's type wrapper (``0.0``, not ``np.float64(0.0)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _first_bad(bad: np.ndarray, file_rows: np.ndarray | None) -> tuple[int, int]:
    """Index of the first True and its 1-based file row."""
    k = int(np.flatnonzero(bad)[0])
    return k, int(file_rows[k]) if file_rows is not None else k + 1


def _numeric(
    table: pd.DataFrame,
    column: str,
    source: str,
    *,
    allow_nan: bool,
    file_rows: np.ndarray | None = None,
    label: str | None = None,
) -> np.ndarray:
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    given = table[column].notna().to_numpy()
    bad = (np.isnan(values) & given) | np.isinf(values)
    if not allow_nan:
        bad |= ~given
    if bad.any():
        k, row = _first_bad(bad, file_rows)
        raise CatalogError(f"{source}: row {row}: column {label or column}={_show(table[column].iloc[k])} is not a finite number")
    return values


def _ref_ids(table: pd.DataFrame, source: str, *, file_rows: np.ndarray | None = None) -> np.ndarray:
    ref = _numeric(table, "ref_id", source, allow_nan=False, file_rows=file_rows)
    frac = ref % 1 != 0
    if frac.any():
        k, row = _first_bad(frac, file_rows)
        raise CatalogError(f"{source}: row {row}: ref_id={_show(ref[k])} must be an integer")
    return ref.astype(np.int64)


def pivot_coadds(
    table: pd.DataFrame,
    *,
    source: str = "<co-adds>",
    method: str | None = None,
    flux_column: str = "flux",
    err_column: str = "flux_err",
) -> CoaddFluxes:
    """Check a long co-add table and pivot it to one row per source.

    Parameters
    ----------
    table : DataFrame
        ``ref_id, band, flux, flux_err`` (nJy), optional ``method``.
    source : str, keyword-only
        Name used in messages (the file path).
    method : str, optional, keyword-only
        Keep only rows of this ``method``; required when the table holds several methods.
    flux_column, err_column : str, keyword-only
        Columns holding the flux and its error (nJy); e.g. ``pdf_peak`` and ``pdf_sigma68`` of a
        LUMOS PDF co-add (the paper's choice, §6.4). Defaults ``flux``, ``flux_err``.

    Raises
    ------
    CatalogError
        Missing column, unknown band, non-numeric value, ``flux_err <= 0`` with a finite flux,
        duplicated (ref_id, band) or several methods; the message names the file, row and column.
    """
    if (flux_column, err_column) == ("flux", "flux_err"):
        table = table.rename(columns={k: v for k, v in _ALIASES.items() if k in table.columns and v not in table.columns})
    _require(table, ("ref_id", "band", flux_column, err_column), source)
    keep = {"ref_id": "ref_id", "band": "band", flux_column: "flux", err_column: "flux_err"}
    if "method" in table.columns:
        keep["method"] = "method"
    table = pd.DataFrame({new: table[old].to_numpy() for old, new in keep.items()})
    if "method" in table.columns:
        methods = sorted(table["method"].dropna().astype(str).unique())
        if method is not None:
            if method not in methods:
                raise CatalogError(f"{source}: column method has no rows with {method!r}; it holds {methods}")
            table = table[table["method"].astype(str) == method]
        elif len(methods) > 1:
            raise CatalogError(f"{source}: column method holds several methods {methods}; choose one (--method)")
    elif method is not None:
        raise CatalogError(f"{source}: no column method to select {method!r} from")
    file_rows = table.index.to_numpy() + 1
    table = table.reset_index(drop=True)
    if len(table) == 0:
        raise CatalogError(f"{source}: the co-add table has no rows")
    band = table["band"].astype(str).str.strip()
    unknown = ~band.isin(NB_BANDS).to_numpy()
    if unknown.any():
        k, row = _first_bad(unknown, file_rows)
        raise CatalogError(f"{source}: row {row}: column band={_show(table['band'].iloc[k])} is not one of NB455...NB845")
    ref = _ref_ids(table, source, file_rows=file_rows)
    flux = _numeric(table, "flux", source, allow_nan=True, file_rows=file_rows, label=flux_column)
    err = _numeric(table, "flux_err", source, allow_nan=True, file_rows=file_rows, label=err_column)
    bad = np.isfinite(flux) & ~(np.isfinite(err) & (err > 0))
    if bad.any():
        k, row = _first_bad(bad, file_rows)
        raise CatalogError(
            f"{source}: row {row}: column {err_column}={_show(table['flux_err'].iloc[k])} must be > 0 where "
            f"{flux_column} is given (leave {flux_column} empty to mark a missing band)"
        )
    key = pd.DataFrame({"ref_id": ref, "band": band})
    dup = key.duplicated().to_numpy()
    if dup.any():
        k, row = _first_bad(dup, file_rows)
        raise CatalogError(f"{source}: row {row}: duplicated (ref_id, band) = ({ref[k]}, {band.iloc[k]})")
    bands = tuple(b for b in NB_BANDS if b in set(band))
    ids, inverse = np.unique(ref, return_inverse=True)
    col = band.map({b: k for k, b in enumerate(bands)}).to_numpy(dtype=np.int64)
    flux_wide = np.full((len(ids), len(bands)), np.nan)
    err_wide = np.full((len(ids), len(bands)), np.nan)
    flux_wide[inverse, col] = flux
    err_wide[inverse, col] = np.where(np.isfinite(flux), err, np.nan)
    return CoaddFluxes(ref_id=ids, bands=bands, flux=flux_wide, flux_err=err_wide)


def _check_unique(ref: np.ndarray, source: str) -> None:
    """Raise a CatalogError naming the first row whose ``ref_id`` repeats an earlier one."""
    dup = pd.Index(ref).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0]) + 1
        raise CatalogError(f"{source}: row {row}: duplicated ref_id {ref[row - 1]}")


def read_coadds(
    path: str | os.PathLike[str], *, method: str | None = None, flux_column: str = "flux", err_column: str = "flux_err"
) -> CoaddFluxes:
    """Read a co-add table (CSV or Parquet) and pivot it with :func:`pivot_coadds`."""
    return pivot_coadds(
        read_table(path, what="co-add table"), source=os.fspath(path), method=method,
        flux_column=flux_column, err_column=err_column,
    )


def read_redshift_catalog(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``ref_id``, ``zspec`` and (if present) ``i_auto``, indexed by ``ref_id``.

    Raises
    ------
    CatalogError
        Missing columns, non-numeric values, ``zspec <= -1`` or duplicated ``ref_id`` (names the row).
    """
    source = os.fspath(path)
    table = read_table(path, what="catalogue")
    _require(table, ("ref_id", "zspec"), source)
    ref = _ref_ids(table, source)
    zspec = _numeric(table, "zspec", source, allow_nan=True)
    low = zspec <= -1
    if low.any():
        row = int(np.flatnonzero(low)[0]) + 1
        raise CatalogError(f"{source}: row {row}: column zspec={_show(zspec[row - 1])} must be > -1")
    out = pd.DataFrame({"zspec": zspec}, index=pd.Index(ref, name="ref_id"))
    if "i_auto" in table.columns:
        out["i_auto"] = _numeric(table, "i_auto", source, allow_nan=True)
    _check_unique(ref, source)
    return out


def read_magnitude_catalog(path: str | os.PathLike[str]) -> pd.Series:
    """Read the prior's magnitudes: ``i_auto`` (AB mag, NaN allowed) indexed by ``ref_id``.

    Only ``ref_id`` and ``i_auto`` are read; other columns (``zspec``...) may be absent.

    Raises
    ------
    CatalogError
        Missing columns, non-numeric or infinite values or duplicated ``ref_id`` (names the row).
    """
    source = os.fspath(path)
    table = read_table(path, what="catalogue")
    _require(table, ("ref_id", "i_auto"), source)
    ref = _ref_ids(table, source)
    i_auto = _numeric(table, "i_auto", source, allow_nan=True)
    _check_unique(ref, source)
    return pd.Series(i_auto, index=pd.Index(ref, name="ref_id"), name="i_auto")


def read_photoz_table(path: str | os.PathLike[str], *, columns: Sequence[str] = ("z_mode",)) -> pd.DataFrame:
    """Read a photo-z table written by ``lumos photoz run``, indexed by ``ref_id``.

    Raises
    ------
    CatalogError
        Missing ``ref_id`` or any of ``columns``, non-numeric values or duplicated ``ref_id``.
    """
    source = os.fspath(path)
    table = read_table(path, what="photo-z table")
    _require(table, ("ref_id", *columns), source)
    ref = _ref_ids(table, source)
    for column in columns:
        table[column] = _numeric(table, column, source, allow_nan=True)
    out = table.drop(columns="ref_id").set_index(pd.Index(ref, name="ref_id"))
    _check_unique(ref, source)
    return out
