"""Galaxy narrow-band fluxes from redshifted, reddened CWW templates.

A galaxy's spectrum is a mixture of two adjacent Coleman-Wu-Weedman templates (continuous
``sed_type`` in [0, 3]: 0 = E, 1 = Sbc, 2 = Scd, 3 = Im), attenuated by a Calzetti (2000) law
with colour excess ``ebv``, redshifted to ``z`` and normalised to the catalogue's total i-band
magnitude. Band fluxes are photon-weighted f_nu averages over :func:`~lumos_ops.sim.bands.nb_throughput`,
tabulated once on a (template, E(B-V), z) grid and interpolated, so millions of galaxies cost
little.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from lumos_ops.constants import NB_BANDS, NJY_ZEROPOINT
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.sim.bands import NB_FWHM_NM, i_throughput, nb_throughput

__all__ = [
    "TEMPLATE_NAMES",
    "Z_MAX",
    "EBV_MAX",
    "load_template",
    "calzetti_k",
    "band_flux_ratios",
    "galaxy_band_fluxes",
    "mag_to_njy",
    "njy_to_mag",
]

TEMPLATE_NAMES: tuple[str, ...] = ("E", "Sbc", "Scd", "Im")
"""Template order of the continuous ``sed_type`` (0 = E ... 3 = Im)."""

Z_MAX: float = 2.0
"""Largest tabulated redshift."""

EBV_MAX: float = 0.5
"""Largest tabulated colour excess E(B-V) (mag)."""

_DATA_DIR = Path(__file__).with_name("data")
_Z_GRID = np.linspace(0.0, Z_MAX, 401)
_EBV_GRID = np.linspace(0.0, EBV_MAX, 6)


def load_template(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CWW template.

    Parameters
    ----------
    name : str
        One of :data:`TEMPLATE_NAMES`.

    Returns
    -------
    wavelength_nm, f_lambda : ndarray, shape (n,)
        Rest-frame wavelength (nm) and F_lambda (arbitrary units).
    """
    if name not in TEMPLATE_NAMES:
        raise LumosValueError(f"template name {name!r} unknown; expected one of {TEMPLATE_NAMES}")
    path = _DATA_DIR / f"CWW_{name}_ext.sed"
    try:
        table = np.loadtxt(path, comments="#")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the SED template ({exc}); reinstall lumos-ops") from None
    return table[:, 0] / 10.0, table[:, 1]


def calzetti_k(wavelength_nm: np.ndarray) -> np.ndarray:
    """Calzetti et al. (2000) starburst attenuation curve k(lambda) (R_V = 4.05).

    Wavelengths outside 120-2200 nm are clipped to that range.
    """
    lam = np.clip(np.asarray(wavelength_nm, dtype=np.float64) / 1000.0, 0.12, 2.2)
    blue = 2.659 * (-2.156 + 1.509 / lam - 0.198 / lam**2 + 0.011 / lam**3) + 4.05
    red = 2.659 * (-1.857 + 1.040 / lam) + 4.05
    return np.where(lam < 0.63, blue, red)


def _mean_fnu(lam: np.ndarray, f_lambda: np.ndarray, throughput: np.ndarray) -> np.ndarray:
    """Photon-weighted f_nu average: int f_lambda lam T dlam / int T / lam dlam (last axis)."""
    num = np.trapezoid(f_lambda * lam * throughput, lam, axis=-1)
    den = np.trapezoid(throughput / lam, lam)
    return num / den


@functools.lru_cache(maxsize=1)
def band_flux_ratios() -> np.ndarray:
    """Table of narrow-band to i-band mean f_nu ratios.

    Returns
    -------
    ndarray, shape (4, 6, 401, 40), float64
        ``[template, ebv, z, band]`` on the grids E(B-V) = 0, 0.1 ... 0.5 and z = 0 ... 2
        (step 0.005), bands in :data:`lumos_ops.constants.NB_BANDS` order.
    """
    nb_lam = np.stack(
        [np.linspace(float(b[2:]) - 1.6 * NB_FWHM_NM, float(b[2:]) + 1.6 * NB_FWHM_NM, 129) for b in NB_BANDS]
    )
    nb_thr = np.stack([nb_throughput(b, nb_lam[k]) for k, b in enumerate(NB_BANDS)])
    i_lam = np.linspace(600.0, 960.0, 361)
    i_thr = i_throughput(i_lam)
    table = np.empty((len(TEMPLATE_NAMES), len(_EBV_GRID), len(_Z_GRID), len(NB_BANDS)))
    one_plus_z = 1.0 + _Z_GRID
    for t, name in enumerate(TEMPLATE_NAMES):
        wave, flux = load_template(name)
        for e, ebv in enumerate(_EBV_GRID):
            attenuated = flux * 10.0 ** (-0.4 * ebv * calzetti_k(wave))
            rest_nb = nb_lam[None, :, :] / one_plus_z[:, None, None]
            f_nb = np.interp(rest_nb, wave, attenuated)
            rest_i = i_lam[None, :] / one_plus_z[:, None]
            f_i = np.interp(rest_i, wave, attenuated)
            mean_nb = _mean_fnu(nb_lam[None], f_nb, nb_thr[None])
            mean_i = _mean_fnu(i_lam[None], f_i, i_thr[None])
            table[t, e] = mean_nb / mean_i[:, None]
    return table


def mag_to_njy(mag: np.ndarray | float) -> np.ndarray:
    """AB magnitude to flux density in nJy (31.4 mag = 1 nJy)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - NJY_ZEROPOINT))


def njy_to_mag(flux_njy: np.ndarray | float) -> np.ndarray:
    """Flux density in nJy to AB magnitude (NaN for non-positive fluxes)."""
    flux = np.asarray(flux_njy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, NJY_ZEROPOINT - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)


def galaxy_band_fluxes(
    *, i_auto: np.ndarray, z: np.ndarray, sed_type: np.ndarray, ebv: np.ndarray
) -> np.ndarray:
    """Narrow-band flux densities of galaxies.

    Parameters
    ----------
    i_auto : array_like, shape (n,)
        Total i-band AB magnitude.
    z : array_like, shape (n,)
        Redshift in [0, 2].
    sed_type : array_like, shape (n,)
        Continuous template index in [0, 3] (0 = E, 1 = Sbc, 2 = Scd, 3 = Im); non-integer
        values mix the two neighbouring templates (each normalised to the same i-band flux).
    ebv : array_like, shape (n,)
        Calzetti colour excess E(B-V) in [0, 0.5] mag.

    Returns
    -------
    ndarray, shape (n, 40), float64
        Flux density (nJy) in every narrow band, :data:`~lumos_ops.constants.NB_BANDS` order.
    """
    i_auto, z, sed_type, ebv = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (i_auto, z, sed_type, ebv))
    for name, values, low, high in (
        ("z", z, 0.0, Z_MAX),
        ("sed_type", sed_type, 0.0, len(TEMPLATE_NAMES) - 1.0),
        ("ebv", ebv, 0.0, EBV_MAX),
    ):
        if not np.all((values >= low) & (values <= high)):
            raise LumosValueError(f"{name} must lie in [{low}, {high}]; got values from {values.min()} to {values.max()}")
    table = band_flux_ratios()

    def _split(values: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.interp(values, grid, np.arange(len(grid), dtype=np.float64))
        low = np.minimum(np.floor(pos).astype(np.int64), len(grid) - 2)
        return low, pos - low

    t0, wt = _split(sed_type, np.arange(len(TEMPLATE_NAMES), dtype=np.float64))
    e0, we = _split(ebv, _EBV_GRID)
    z0, wz = _split(z, _Z_GRID)
    ratio = np.zeros((len(z), len(NB_BANDS)))
    for dt, ft in ((0, 1.0 - wt), (1, wt)):
        for de, fe in ((0, 1.0 - we), (1, we)):
            for dz, fz in ((0, 1.0 - wz), (1, wz)):
                ratio += (ft * fe * fz)[:, None] * table[t0 + dt, e0 + de, z0 + dz]
    return mag_to_njy(i_auto)[:, None] * ratio
