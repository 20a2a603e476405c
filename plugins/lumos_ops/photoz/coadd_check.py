"""Photo-z validation of one photometry method's co-adds (paper §6.4), with no I/O.

:func:`check_method` fits template photo-z (:func:`lumos_ops.photoz.fit.fit_photoz`) to the
co-added narrow-band fluxes (nJy) of the sources with a spectroscopic redshift and scores
``dz = (z_phot - z_spec) / (1 + z_spec)`` overall and per i_auto bin; a method whose co-adds cover
too few bands is not fitted and one where no source gets a photo-z is not scored, each with the
reason. :mod:`lumos_ops.pipeline.photoz_check` reads the co-adds from PostgreSQL, runs it for every
method and records the results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MIN_SURVEY_BANDS", "CHECKED", "TOO_FEW_BANDS", "NONE_FITTED", "STATUSES", "MethodPhotoz", "check_method"]

MIN_SURVEY_BANDS = 10
"""Fewest bands a method's co-adds must cover for its photo-z check to be recorded.

Measured on 400 simulated galaxies (i_auto 18-21) with the default template grid and bands spread
evenly over NB455-NB845: with 2 % flux errors and no noise (the band coverage alone), sigma68 and
the outlier fraction (``|dz| > 0.02``) are 0.10 and 71 % with 3 bands, 0.009 and 19 % with 5,
0.0035 and 5 % with 8, 0.0029 and 1.8 % with 10, 0.0011 and 0 % with all 40; with 5 % Gaussian
noise, 0.045 / 56 % (5 bands), 0.012 / 24 % (10), 0.003 / 1.8 % (40). Below about 10 narrow bands
the metrics measure which bands have co-adds rather than the photometry.
"""

CHECKED, TOO_FEW_BANDS, NONE_FITTED = "checked", "too_few_bands", "none_fitted"
STATUSES = (CHECKED, TOO_FEW_BANDS, NONE_FITTED)
"""Outcomes of a method's check: scored, not fitted (too few bands), fitted but no photo-z."""


@dataclasses.dataclass(frozen=True)
class MethodPhotoz:
    """Photo-z of one method's co-adds against the spectroscopic redshifts.

    Attributes
    ----------
    method : str
    bands : tuple of str
        Bands covered by the co-adds (any source).
    n_sources : int
        Sources with a spectroscopic redshift and at least one co-added band.
    bands_per_source : ndarray of int, shape (n_sources,)
    z_phot, z_spec : ndarray, shape (n_sources,)
        Photo-z mode (NaN where not fitted) and spectroscopic redshift.
    status : str
        One of :data:`STATUSES`.
    reason : str or None
        Why the method was not checked, with the counts and the fix; None when checked.
    overall : dict
        ``photoz_metrics`` of dz over every source (sigma68, nmad, outlier_fraction, bias...).
    table : DataFrame
        ``binned_photoz_metrics`` per i_auto bin over the fitted sources (empty when none).
    """

    method: str
    bands: tuple[str, ...]
    n_sources: int
    bands_per_source: np.ndarray
    z_phot: np.ndarray
    z_spec: np.ndarray
    status: str
    reason: str | None
    overall: dict[str, Any]
    table: pd.DataFrame

    @property
    def fitted(self) -> np.ndarray:
        """Sources with a photo-z."""
        return np.isfinite(self.z_phot)


def check_method(
    method: str,
    coadds: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    grid: Any,
    min_bands: int = 3,
    min_survey_bands: int = MIN_SURVEY_BANDS,
    outlier_threshold: float = 0.02,
) -> MethodPhotoz:
    """Fit and score the photo-z of one method's co-adds.

    Parameters
    ----------
    method : str
        Name of the photometry method (messages).
    coadds : DataFrame
        Its co-adds, one row per source and band, as :func:`~lumos_ops.photoz.tables.pivot_coadds`
        reads them (``ref_id``, ``band``, fluxes and errors in nJy); a ``method`` column is dropped.
    truth : DataFrame
        Indexed by ``ref_id``: ``zspec`` and ``i_auto`` (AB) of every source of ``coadds``.
    grid : TemplateGrid or callable
        The template grid, or a function building it (called only when a fit is needed).
    min_bands : int, keyword-only
        Fewest co-added bands for a source's photo-z.
    min_survey_bands : int, keyword-only
        Fewest bands the co-adds must cover to be fitted at all.
    outlier_threshold : float, keyword-only
        ``|dz|`` above which a source is an outlier.

    Returns
    -------
    MethodPhotoz
    """
    from lumos_ops.photoz.fit import PhotozConfig, fit_photoz
    from lumos_ops.photoz.metrics import binned_photoz_metrics, photoz_metrics
    from lumos_ops.photoz.tables import pivot_coadds

    wide = pivot_coadds(coadds.drop(columns=["method"], errors="ignore"), source=f"lumos.latest_coadds[{method}]")
    bands_per_source = np.isfinite(wide.flux).sum(axis=1)
    n_sources = int(len(wide.ref_id))
    z_spec = truth.loc[wide.ref_id, "zspec"].to_numpy(np.float64)
    i_auto = truth.loc[wide.ref_id, "i_auto"].to_numpy(np.float64)
    if len(wide.bands) < max(min_survey_bands, min_bands):
        z_phot = np.full(n_sources, np.nan)
    else:
        fit = fit_photoz(wide.flux, wide.flux_err, grid=grid() if callable(grid) else grid, bands=wide.bands,
                         config=PhotozConfig(min_bands=min_bands))
        z_phot = np.asarray(fit.z_mode, dtype=np.float64)
    fitted = np.isfinite(z_phot)
    status, reason = _status(method, n_sources=n_sources, bands=wide.bands, n_fitted=int(fitted.sum()),
                             bands_per_source=bands_per_source, min_bands=min_bands,
                             min_survey_bands=min_survey_bands)
    table = binned_photoz_metrics(z_phot[fitted], z_spec[fitted], i_auto[fitted], fractions=(1.0,),
                                  outlier_threshold=outlier_threshold) if fitted.any() else pd.DataFrame()
    return MethodPhotoz(
        method=method, bands=tuple(wide.bands), n_sources=n_sources, bands_per_source=bands_per_source,
        z_phot=z_phot, z_spec=z_spec, status=status, reason=reason,
        overall=photoz_metrics(z_phot, z_spec, outlier_threshold=outlier_threshold), table=table,
    )


def _status(
    method: str,
    *,
    n_sources: int,
    bands: Sequence[str],
    n_fitted: int,
    bands_per_source: np.ndarray,
    min_bands: int,
    min_survey_bands: int,
) -> tuple[str, str | None]:
    """Status of one method's check and, unless ``checked``, the reason with the counts and the fix."""
    n_bands = len(bands)
    if n_bands < max(min_survey_bands, min_bands):
        return TOO_FEW_BANDS, (
            f"the co-adds of the {n_sources} sources with a spectroscopic redshift cover {n_bands} band(s) "
            f"({', '.join(bands)}), fewer than min_survey_bands={max(min_survey_bands, min_bands)}, so no "
            f"photo-z was fitted (n_sources={n_sources}, n_bands={n_bands}, n_fitted=0); run it once the "
            f"nights processed with {method!r} cover at least {max(min_survey_bands, min_bands)} bands, or "
            "lower min_survey_bands knowing that the metrics then measure the band coverage"
        )
    if n_fitted == 0:
        n_enough = int((bands_per_source >= min_bands).sum())
        why = (f"every source has fewer than min_bands={min_bands} co-added bands (median "
               f"{float(np.median(bands_per_source)):g})" if n_enough == 0 else
               f"the fit returned no finite redshift for the {n_enough} sources with >= {min_bands} bands")
        return NONE_FITTED, (
            f"0 of {n_sources} sources with a spectroscopic redshift got a photo-z although the co-adds cover "
            f"{n_bands} bands (n_sources={n_sources}, n_bands={n_bands}, n_fitted=0): {why}; check the "
            f"{method!r} co-adds of these sources (lumos db query latest_coadds_for_source) and rerun"
        )
    return CHECKED, None
