"""The pixel-free baseline of ``lumos validate``: the band flux predicted from ``i_auto`` alone.

Per band, a power law ``log10 f = a + b * i_auto`` fitted by least squares on the stamps with
``f > 0``. It is fitted and evaluated by two-fold cross-fitting on the evaluation stamps themselves
(even ``stamp_id`` predicts odd and vice versa), so it shows the best a predictor that ignores the
pixels can do on *this* flux distribution: when fluxes come from each galaxy's own SED it is
strong; with the paper's independent per-band draws (``flux_source="band_distribution"``) it is
useless. A network that does not beat it is not reading the pixels.
"""

from __future__ import annotations

import numpy as np

from lumos_ops.exceptions import LumosValueError

__all__ = ["prior_only_flux"]


def _fit(mag: np.ndarray, flux: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(mag) & (flux > 0)
    if ok.sum() < 2 or np.ptp(mag[ok]) == 0:
        return (float(np.log10(np.median(flux[ok]))) if ok.any() else float("nan"), 0.0)
    slope, intercept = np.polyfit(mag[ok], np.log10(flux[ok]), 1)
    return float(intercept), float(slope)


def prior_only_flux(band: np.ndarray, i_auto: np.ndarray, flux: np.ndarray, stamp_id: np.ndarray) -> np.ndarray:
    """Cross-fitted per-band power-law prediction of the flux from ``i_auto``.

    Parameters
    ----------
    band : array_like of str, shape (n,)
        Band of every stamp.
    i_auto : array_like, shape (n,)
        Catalogue magnitude (AB).
    flux : array_like, shape (n,)
        True flux (e-/s), used for the fit only.
    stamp_id : array_like of int, shape (n,)
        Parity chooses the fold: a stamp's prediction never uses its own flux.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Predicted flux (e-/s); NaN where a band has too few stamps in the other fold.
    """
    band = np.asarray(band).astype(str)
    i_auto = np.asarray(i_auto, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    fold = np.asarray(stamp_id, dtype=np.int64) % 2
    if not (band.shape == i_auto.shape == flux.shape == fold.shape):
        raise LumosValueError("band, i_auto, flux and stamp_id must have the same shape (n,)")
    out = np.full(flux.shape, np.nan)
    for name in np.unique(band):
        for k in (0, 1):
            fit = (band == name) & (fold != k)
            use = (band == name) & (fold == k)
            intercept, slope = _fit(i_auto[fit], flux[fit])
            out[use] = 10.0 ** (intercept + slope * i_auto[use])
    return out
