"""File-level photo-z step: co-add table in, photo-z table out (what ``lumos photoz run`` does)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.io.tables import write_table
from lumos_ops.photoz.fit import PhotozConfig, fit_photoz
from lumos_ops.photoz.outputs import check_output_file
from lumos_ops.photoz.prior import MagnitudePrior
from lumos_ops.photoz.tables import read_coadds, read_magnitude_catalog
from lumos_ops.photoz.templates import TemplateGridConfig, build_template_grid

__all__ = ["run_photoz"]

log = logging.getLogger(__name__)


def run_photoz(
    coadds: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str | None = None,
    flux_column: str = "flux",
    err_column: str = "flux_err",
    catalog: str | os.PathLike[str] | None = None,
    prior: MagnitudePrior | None = None,
    config: PhotozConfig | None = None,
    grid_config: TemplateGridConfig | None = None,
) -> pd.DataFrame:
    """Fit photo-z to every source of a co-add table and write the result.

    Parameters
    ----------
    coadds : path
        Co-add table (CSV or Parquet): ``ref_id, band, flux, flux_err`` in nJy, one row per source
        x band (see :func:`lumos_ops.photoz.tables.pivot_coadds`).
    out : path
        Output ``.parquet`` or ``.csv``: ``ref_id`` and :data:`~lumos_ops.photoz.fit.RESULT_COLUMNS`.
    method : str, optional, keyword-only
        Photometry method to use when the table holds several.
    flux_column, err_column : str, keyword-only
        Flux and error columns (nJy), e.g. ``pdf_peak`` / ``pdf_sigma68`` for LUMOS PDF co-adds.
    catalog : path, optional, keyword-only
        Catalogue with ``ref_id`` and ``i_auto`` (AB mag) giving the prior's magnitudes; requires
        ``prior``. Sources it lacks (or with NaN ``i_auto``) use the fitted i-band magnitude, as do
        all sources without a catalogue.
    prior : MagnitudePrior, optional, keyword-only
        Redshift prior; ``None`` is flat.
    config, grid_config : optional, keyword-only
        Fit and template-grid options.

    Returns
    -------
    pandas.DataFrame
        The table written to ``out``.
    """
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise InputFileError(f"{out}: the photo-z output must end in .parquet or .csv")
    if catalog is not None and prior is None:
        raise LumosValueError(
            f"--catalog {os.fspath(catalog)}: the catalogue only gives the prior's magnitudes; add --prior or drop --catalog"
        )
    check_output_file(out, "--out")
    fluxes = read_coadds(coadds, method=method, flux_column=flux_column, err_column=err_column)
    i_mag = None if catalog is None else _catalog_magnitudes(catalog, fluxes.ref_id)
    start = time.perf_counter()
    grid = build_template_grid(grid_config, bands=fluxes.bands)
    result = fit_photoz(fluxes.flux, fluxes.flux_err, grid=grid, i_mag=i_mag, prior=prior, config=config)
    log.info("photo-z of %d sources in %d bands: %.1f s", len(fluxes.ref_id), len(fluxes.bands), time.perf_counter() - start)
    frame = result.to_frame(fluxes.ref_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(frame, out)
    return frame


def _catalog_magnitudes(catalog: str | os.PathLike[str], ref_id: np.ndarray) -> np.ndarray:
    """The catalogue's ``i_auto`` (AB mag) of each source, NaN (= use the fitted i) where it has none:
    absent, NaN, or a sentinel outside 0-40 mag (-99, 99).

    Logs a warning with the number of sources that fall back to the fitted i-band magnitude.
    """
    i_auto = read_magnitude_catalog(catalog).reindex(ref_id).to_numpy(dtype=np.float64, copy=True)
    i_auto[~((i_auto > 0.0) & (i_auto < 40.0))] = np.nan
    n_missing = int(np.count_nonzero(np.isnan(i_auto)))
    if n_missing:
        log.warning("%s: %d of %d sources have no i_auto (absent, NaN or a sentinel such as -99); their prior uses "
                    "the fitted i magnitude", os.fspath(catalog), n_missing, len(ref_id))
    return i_auto
