"""Point-spread functions: Moffat (``psf_fwhm``, ``psf_beta``) and Gaussian (``psf_fwhm``)."""

from __future__ import annotations

import enum
import functools

import numpy as np
import scipy.special

from lumos_ops.render.tables import RadialTable, ln_k_grid, stored_table

__all__ = [
    "DEFAULT_MOFFAT_BETA",
    "MOFFAT_BETA_MIN",
    "MOFFAT_BETA_MAX",
    "PsfKind",
    "psf_scale_radius",
    "psf_log_surface_brightness",
    "moffat_fourier",
    "moffat_table",
]

DEFAULT_MOFFAT_BETA: float = 3.5
"""Default Moffat ``beta`` of the PAUS PSF model."""

MOFFAT_BETA_MIN: float = 1.5
"""Smallest supported Moffat ``beta`` (the untruncated profile needs ``beta > 1``)."""

MOFFAT_BETA_MAX: float = 10.0
"""Largest supported Moffat ``beta`` (beyond, use ``psf="gaussian"``)."""

_BETA_STEP = 0.02


class PsfKind(enum.StrEnum):
    """Radial PSF family."""

    MOFFAT = "moffat"
    GAUSSIAN = "gaussian"


def psf_scale_radius(kind: PsfKind, fwhm: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Scale radius from the FWHM: Moffat ``a`` of ``(1 + (r/a)**2)**-beta`` or Gaussian ``sigma``.

    Parameters
    ----------
    kind : PsfKind
    fwhm : ndarray
        Full width at half maximum (any length unit; the result has the same unit).
    beta : ndarray
        Moffat ``beta`` (ignored for the Gaussian), broadcasting with ``fwhm``.
    """
    fwhm = np.asarray(fwhm, dtype=np.float64)
    if kind is PsfKind.GAUSSIAN:
        return fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / np.asarray(beta, dtype=np.float64)) - 1.0))


def psf_log_surface_brightness(kind: PsfKind, r: np.ndarray, scale: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Natural log of the unit-flux PSF surface brightness at radius ``r`` (same unit as ``scale``)."""
    r = np.asarray(r, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    if kind is PsfKind.GAUSSIAN:
        return -0.5 * (r / scale) ** 2 - np.log(2.0 * np.pi * scale**2)
    beta = np.asarray(beta, dtype=np.float64)
    return np.log((beta - 1.0) / (np.pi * scale**2)) - beta * np.log1p((r / scale) ** 2)


def moffat_fourier(s: np.ndarray, beta: float) -> np.ndarray:
    """Fourier transform of the unit-flux untruncated Moffat profile at ``s = k * a``.

    ``F(s) = 2**(2 - beta) / Gamma(beta - 1) * s**(beta - 1) * K_{beta - 1}(s)``, 1 at s = 0.
    """
    s = np.asarray(s, dtype=np.float64)
    nu = beta - 1.0
    safe = np.maximum(s, 1e-300)
    log_f = (
        (2.0 - beta) * np.log(2.0)
        - scipy.special.gammaln(nu)
        + nu * np.log(safe)
        + np.log(scipy.special.kve(nu, safe))
        - safe
    )
    return np.where(s > 0.0, np.exp(log_f), 1.0)


@functools.cache
def moffat_table() -> RadialTable:
    """Table of :func:`moffat_fourier` for beta from 1.5 to 10 (step 0.02) on :func:`ln_k_grid` columns.

    Built once (about 0.25 CPU s) and kept per process and in the table directory
    (:func:`lumos_ops.render.tables.stored_table`).
    """
    return stored_table("moffat", _build_moffat_table, [__file__])


def _build_moffat_table() -> RadialTable:
    grid_beta = np.round(np.arange(MOFFAT_BETA_MIN - 2 * _BETA_STEP, MOFFAT_BETA_MAX + 2.5 * _BETA_STEP, _BETA_STEP), 10)
    s = np.exp(ln_k_grid())
    values = np.stack([moffat_fourier(s, float(beta)) for beta in grid_beta])
    values[:, 0] = 1.0
    return RadialTable(param=grid_beta, values=values)
