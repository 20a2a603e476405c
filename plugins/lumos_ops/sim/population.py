"""Draw galaxy and star populations with COSMOS-like statistics (paper Fig. 2, GUIDE).

Galaxies: i-band counts rising as ``dN/dm ~ 10**(0.33 m)``; a magnitude-dependent redshift
distribution ``n(z) ~ z**2 exp(-(z/z0)**1.5)`` truncated at ``z_max`` (median ~0.6 at i = 22);
continuous CWW template type (bright galaxies more often early-type) with Calzetti reddening;
Sersic index tied to the type; half-light radius growing with brightness and Sersic index
(median 0.57 arcsec, clipped 0.14-2.2); axis ratio and position angle uniform.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lumos_ops.constants import NB_BANDS
from lumos_ops.exceptions import LumosValueError
from lumos_ops.sim.seds import EBV_MAX, galaxy_band_fluxes

__all__ = [
    "COUNT_SLOPE",
    "R50_RANGE",
    "SERSIC_RANGE",
    "draw_magnitudes",
    "draw_galaxies",
    "draw_stars",
    "njy_columns",
]

COUNT_SLOPE: float = 0.33
"""Slope of the galaxy number counts, d log10 N / dm."""

R50_RANGE: tuple[float, float] = (0.14, 2.2)
"""Clip range of the circularised half-light radius (arcsec)."""

SERSIC_RANGE: tuple[float, float] = (0.3, 6.5)
"""Clip range of the Sersic index."""


def njy_columns(bands: tuple[str, ...] = NB_BANDS) -> list[str]:
    """Catalogue column names holding the true band flux density (nJy): ``flux_nJy_NB455``..."""
    return [f"flux_nJy_{band}" for band in bands]


def draw_magnitudes(rng: np.random.Generator, n: int, *, low: float, high: float, slope: float = COUNT_SLOPE) -> np.ndarray:
    """Magnitudes with ``dN/dm ~ 10**(slope * m)`` between ``low`` and ``high``.

    ``slope = 0`` gives magnitudes uniform in ``[low, high)``.

    Returns
    -------
    ndarray, shape (n,), float64
        AB magnitudes.
    """
    if not high > low:
        raise LumosValueError(f"magnitude range must have high > low, got ({low}, {high})")
    if slope == 0.0:
        return rng.uniform(low, high, size=n)
    a = 10.0 ** (slope * low)
    b = 10.0 ** (slope * high)
    u = rng.uniform(size=n)
    return np.log10(a + u * (b - a)) / slope


def _draw_redshifts(rng: np.random.Generator, i_mag: np.ndarray, *, z_max: float) -> np.ndarray:
    z0 = 0.12 + 0.07 * (np.clip(i_mag, 16.0, 26.0) - 17.0)
    z = np.empty_like(z0)
    todo = np.arange(len(z0))
    while len(todo):
        # u ~ u**2 exp(-u**1.5) is a Gamma(2, 1) variable raised to the power 2/3.
        u = rng.gamma(2.0, 1.0, size=len(todo)) ** (2.0 / 3.0)
        candidate = z0[todo] * u
        ok = (candidate >= 0.02) & (candidate <= z_max)
        z[todo[ok]] = candidate[ok]
        todo = todo[~ok]
    return z


def draw_galaxies(
    rng: np.random.Generator,
    n: int,
    *,
    i_range: tuple[float, float] = (17.5, 23.0),
    z_max: float = 1.5,
    count_slope: float = COUNT_SLOPE,
) -> pd.DataFrame:
    """Draw intrinsic galaxy properties (no positions).

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
        Number of galaxies.
    i_range : (float, float), keyword-only
        Total i-band magnitude range (AB).
    z_max : float, keyword-only
        Largest redshift (<= 2).
    count_slope : float, keyword-only
        d log10 N / dm of the i-band magnitudes (default the COSMOS-like counts; 0 draws them
        uniformly in ``i_range``, e.g. for a training set balanced in brightness).

    Returns
    -------
    pandas.DataFrame, n rows
        ``i_auto`` (AB), ``zspec``, ``sed_type`` (0 = E ... 3 = Im), ``ebv`` (mag), ``r50``
        (arcsec), ``sersic_n``, ``q``, ``pa`` (deg) and ``flux_nJy_<band>`` for the 40 bands.
    """
    if n < 0:
        raise LumosValueError(f"n must be >= 0, got {n}")
    i_mag = draw_magnitudes(rng, n, low=i_range[0], high=i_range[1], slope=count_slope)
    z = _draw_redshifts(rng, i_mag, z_max=z_max)
    early_prob = np.clip(0.35 - 0.045 * (i_mag - 18.0), 0.12, 0.4)
    early = rng.uniform(size=n) < early_prob
    sed_type = np.where(early, rng.uniform(0.0, 0.45, size=n), rng.uniform(0.6, 3.0, size=n))
    ebv = np.where(
        early,
        rng.uniform(0.0, 0.05, size=n),
        np.minimum(rng.exponential(0.12, size=n), EBV_MAX),
    )
    log_n = np.where(early, np.log10(3.5) + 0.15 * rng.normal(size=n), np.log10(0.95) + 0.18 * rng.normal(size=n))
    sersic_n = np.clip(10.0**log_n, *SERSIC_RANGE)
    log_r50 = (
        np.log10(0.53)
        - 0.11 * (i_mag - 22.1)
        + 0.15 * np.log10(sersic_n)
        + 0.17 * rng.normal(size=n)
    )
    r50 = np.clip(10.0**log_r50, *R50_RANGE)
    q = np.where(early, rng.uniform(0.5, 1.0, size=n), rng.uniform(0.15, 1.0, size=n))
    pa = rng.uniform(0.0, 180.0, size=n)
    table = pd.DataFrame(
        {
            "i_auto": i_mag,
            "zspec": z,
            "sed_type": sed_type,
            "ebv": ebv,
            "r50": r50,
            "sersic_n": sersic_n,
            "q": q,
            "pa": pa,
        }
    )
    fluxes = galaxy_band_fluxes(i_auto=i_mag, z=z, sed_type=sed_type, ebv=ebv)
    return pd.concat([table, pd.DataFrame(fluxes, columns=njy_columns())], axis=1)


def draw_stars(
    rng: np.random.Generator, n: int, *, mag_range: tuple[float, float] = (14.0, 22.5)
) -> pd.DataFrame:
    """Draw stars: i magnitude (counts ``~10**(0.15 m)``) and a smooth spectral slope.

    Returns
    -------
    pandas.DataFrame, n rows
        ``i_mag`` (AB) and ``flux_nJy_<band>`` for the 40 bands: f_nu ~ lambda**slope with a
        slope in [-1, 3] (hot blue to cool red stars) normalised at 770 nm.
    """
    i_mag = draw_magnitudes(rng, n, low=mag_range[0], high=mag_range[1], slope=0.15)
    slope = rng.uniform(-1.0, 3.0, size=n)
    centres = np.array([float(b[2:]) for b in NB_BANDS])
    fluxes = (10.0 ** (-0.4 * (i_mag - 31.4)))[:, None] * (centres[None, :] / 770.0) ** slope[:, None]
    return pd.concat([pd.DataFrame({"i_mag": i_mag}), pd.DataFrame(fluxes, columns=njy_columns())], axis=1)
