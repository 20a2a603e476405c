"""PAUCam-like filter throughputs, zero points and sky levels used by the simulator.

The narrow bands are "top-hat-ish" Butterworth curves (centre 455...845 nm, FWHM 13 nm); the
i band is a broad Butterworth curve standing in for Subaru i+ (the COSMOS ``i_auto`` band).
Zero points are AB magnitudes of a source giving 1 e-/s, tuned so that a flat-spectrum
(constant f_nu) galaxy with i_AB = 21.7 gives 4.9 e-/s in NB685 (``shared/GUIDE.md``); the
wavelength dependence follows a smooth telescope x CCD efficiency curve.
"""

from __future__ import annotations

import math

import numpy as np

from lumos_ops.constants import APERTURE_LIGHT_FRACTION, NB_BANDS, band_centre_nm

__all__ = [
    "NB_FWHM_NM",
    "I_BAND_CENTRE_NM",
    "I_BAND_FWHM_NM",
    "REFERENCE_ZP",
    "nb_throughput",
    "i_throughput",
    "band_zero_point",
    "band_sky_rate",
]

NB_FWHM_NM: float = 13.0
"""Full width at half maximum of every narrow band (nm)."""

I_BAND_CENTRE_NM: float = 770.0
"""Centre of the broad i band used to normalise galaxy SEDs (nm)."""

I_BAND_FWHM_NM: float = 150.0
"""Width of the broad i band (nm)."""

REFERENCE_ZP: float = 21.7 + 2.5 * math.log10(4.9 / APERTURE_LIGHT_FRACTION)
"""NB685 zero point (AB mag giving 1 e-/s), 23.94: a flat-spectrum i_AB = 21.7 galaxy gives 4.9 e-/s
inside the PAUS aperture (62.5 % of its light), the median aperture flux of the real NB685 exposure
of ``shared/GUIDE.md``; this reproduces its single-exposure SNR of 2-3."""

_BUTTERWORTH_ORDER_NB = 6
_BUTTERWORTH_ORDER_I = 4


def _butterworth(wavelength_nm: np.ndarray, centre: float, fwhm: float, order: int) -> np.ndarray:
    half = 0.5 * fwhm
    return 1.0 / (1.0 + ((np.asarray(wavelength_nm, dtype=np.float64) - centre) / half) ** (2 * order))


def nb_throughput(band: str, wavelength_nm: np.ndarray) -> np.ndarray:
    """Normalised (peak 1) throughput of a narrow band.

    Parameters
    ----------
    band : str
        ``"NB455"`` ... ``"NB845"``.
    wavelength_nm : ndarray
        Observed-frame wavelengths (nm).

    Returns
    -------
    ndarray, same shape as ``wavelength_nm``
        Throughput in [0, 1]; 0.5 at ``centre +- 6.5 nm``.
    """
    return _butterworth(wavelength_nm, band_centre_nm(band), NB_FWHM_NM, _BUTTERWORTH_ORDER_NB)


def i_throughput(wavelength_nm: np.ndarray) -> np.ndarray:
    """Normalised throughput of the broad i band (centre 770 nm, FWHM 150 nm)."""
    return _butterworth(wavelength_nm, I_BAND_CENTRE_NM, I_BAND_FWHM_NM, _BUTTERWORTH_ORDER_I)


def _efficiency(centre_nm: float) -> float:
    """Relative telescope x filter x CCD efficiency (peak near 650 nm, ~0.7 at the ends)."""
    return math.exp(-0.5 * ((centre_nm - 650.0) / 230.0) ** 2)


def band_zero_point(band: str, *, reference: float = REFERENCE_ZP) -> float:
    """Nominal AB zero point (magnitude giving 1 e-/s) of a narrow band.

    ``flux[e-/s] = 10**(-0.4 * (m_AB - ZP))``. NB685 gets ``reference`` (default
    :data:`REFERENCE_ZP` = 23.94); other bands follow the efficiency curve. Individual exposures
    scatter around it (transparency, airmass).
    """
    if band not in NB_BANDS:
        raise ValueError(f"unknown band {band!r}: expected one of NB455...NB845")
    centre = band_centre_nm(band)
    return reference + 2.5 * math.log10(_efficiency(centre) / _efficiency(685.0))


def band_sky_rate(band: str, *, typical: float = 6.0) -> float:
    """Nominal dark-sky level of a band (e-/s per pixel), rising from blue to red.

    ``typical`` is the NB685 level (GUIDE: about 6 e-/s/pixel); NB455 gets 0.75x and NB845
    1.35x of it (airglow lines in the red).
    """
    centre = band_centre_nm(band)
    return typical * (0.75 + 0.6 * (centre - 455.0) / 390.0) / (0.75 + 0.6 * (685.0 - 455.0) / 390.0)
